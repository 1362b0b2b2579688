//! `host.stats`: raw CPU-time and memory counters of each running VM's process, read from
//! /proc (the manager turns them into rates and keeps the history).

use strata_shared::model::{HostCounters, VmCounters};

use super::Agent;

/// CPU time (user + system, all threads) of a process, nanoseconds.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks.saturating_mul(1_000_000_000) / clock_ticks())
}

/// utime + stime from a /proc/PID/stat line (fields 14 and 15; the name in parentheses may
/// hold spaces, so count from the last ')').
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Resident memory of a process, bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Agent {
    /// Counters of every running VM.
    pub fn stats(&self) -> HostCounters {
        let running: Vec<(uuid::Uuid, u32)> = self
            .lock_vms()
            .values()
            .filter_map(|e| e.running().map(|r| (e.id, r.pid)))
            .collect();
        let vms = running
            .into_iter()
            .filter_map(|(vm, pid)| {
                Some(VmCounters {
                    vm,
                    cpu_ns: cpu_ns(pid)?,
                    rss_bytes: rss_bytes(pid).unwrap_or(0),
                })
            })
            .collect();
        HostCounters {
            time_ms: strata_shared::now_ms(),
            cpu_mhz_per_core: self.machine.cpu_mhz,
            vms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_process_names_parse() {
        let line =
            "4242 (qemu (vm) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_cpu_ticks(line), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn our_own_process_has_counters() {
        let me = std::process::id();
        // Burn a little CPU so the counter is above zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x != 1);
        assert!(cpu_ns(me).unwrap() > 0);
        assert!(rss_bytes(me).unwrap() > 1 << 20);
    }
}
