//! Facts about the machine: CPUs, memory, hardware virtualization, host name.

/// What /proc says about this machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineFacts {
    /// Host name.
    pub hostname: String,
    /// Logical CPUs.
    pub cpu_count: u32,
    /// MHz per CPU.
    pub cpu_mhz: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// vmx or svm in the CPU flags.
    pub hardware_virtualization: bool,
}

impl MachineFacts {
    /// Reads /proc.
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Self::parse(&hostname, &cpuinfo, &meminfo)
    }

    /// Parses /proc/cpuinfo and /proc/meminfo text.
    pub fn parse(hostname: &str, cpuinfo: &str, meminfo: &str) -> Self {
        let field = |line: &str| line.split_once(':').map(|(_, v)| v.trim().to_string());
        let cpu_count = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count()
            .max(1) as u32;
        let cpu_mhz = cpuinfo
            .lines()
            .find(|l| l.starts_with("cpu MHz"))
            .and_then(field)
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v.round() as u32)
            .unwrap_or(1000);
        let hardware_virtualization = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        let memory_mib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(field)
            .and_then(|v| {
                v.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .map(|kib| kib / 1024)
            .unwrap_or(0);
        Self {
            hostname: hostname.to_string(),
            cpu_count,
            cpu_mhz,
            memory_mib,
            hardware_virtualization,
        }
    }

    /// TSC frequency hint for guests, kHz.
    pub fn cpu_khz(&self) -> u32 {
        self.cpu_mhz.saturating_mul(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpuinfo_and_meminfo() {
        let cpu =
            "processor\t: 0\ncpu MHz\t\t: 2596.152\nflags\t\t: fpu sse2 vmx\nprocessor\t: 1\n";
        let f = MachineFacts::parse("h", cpu, "MemTotal:       24684096 kB\n");
        assert_eq!(f.cpu_count, 2);
        assert_eq!(f.cpu_mhz, 2596);
        assert!(f.hardware_virtualization);
        assert_eq!(f.memory_mib, 24105);
        let f = MachineFacts::parse("h", "processor: 0\nflags: fpu svmx\n", "");
        assert!(
            !f.hardware_virtualization,
            "substring of a flag is not the flag"
        );
    }
}
