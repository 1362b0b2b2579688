//! What one strata-vmx process runs: the VM's resources and the host paths it serves on.

use std::path::PathBuf;

use super::layout;
use crate::net::mac::MacAddr;

/// A virtio-net NIC on a host tap device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The tap interface (created beforehand, or created non-persistent on open).
    pub tap: String,
    /// The NIC's MAC address.
    pub mac: MacAddr,
}

/// Smallest guest RAM, MiB (the kernel loads at 1 MiB; boot structures live below it).
pub const MIN_MEMORY_MIB: u64 = 4;

/// Configuration of one VM process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmmConfig {
    /// VM name, for logs.
    pub name: String,
    /// PVH ELF kernel (the test guest or a vmlinux with a PVH note).
    pub kernel: PathBuf,
    /// Initial ramdisk (Linux boot only).
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest RAM, MiB.
    pub memory_mib: u64,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest serial output is appended here.
    pub serial_log: PathBuf,
    /// Unix socket whose input is typed into the serial port.
    pub serial_socket: Option<PathBuf>,
    /// Unix socket of the control protocol.
    pub control_socket: Option<PathBuf>,
    /// Unix socket of the VNC console (RFB 3.8, security None: whoever can open the socket
    /// sees the screen and types; the host agent authenticates in front of it).
    pub vnc_socket: Option<PathBuf>,
    /// Pid file, written once the VM is built.
    pub pid_file: Option<PathBuf>,
    /// Restore this snapshot directory instead of booting `kernel` (memory and vCPUs come
    /// from the snapshot).
    pub restore: Option<PathBuf>,
    /// A raw disk image served as virtio-blk (virtio-mmio at 0xd0000000, IRQ 6).
    pub disk: Option<PathBuf>,
    /// Serve the disk read-only.
    pub disk_read_only: bool,
    /// A raw disk image in the hot-add slot (virtio-mmio at 0xd0004000, IRQ 10; the slot is
    /// there, empty, when this is none).
    pub hot_disk: Option<PathBuf>,
    /// Serve the hot-add slot's disk read-only.
    pub hot_disk_read_only: bool,
    /// A NIC: virtio-net on a tap (virtio-mmio at 0xd0001000, IRQ 7).
    pub net: Option<NetConfig>,
    /// A linear framebuffer of this width × height (XRGB8888 at 0xe0000000, registers at
    /// 0xd0100000).
    pub framebuffer: Option<(u32, u32)>,
    /// Confine the process with the seccomp filter once the VM is built.
    pub seccomp: bool,
}

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The kernel file is missing.
    #[error("kernel {0} does not exist or is not a file")]
    NoKernel(PathBuf),
    /// The initrd file is missing.
    #[error("initrd {0} does not exist or is not a file")]
    NoInitrd(PathBuf),
    /// Memory is below the minimum.
    #[error("{0} MiB of memory is too little (at least {MIN_MEMORY_MIB} MiB)")]
    MemoryTooSmall(u64),
    /// Memory exceeds what the host has.
    #[error("{asked} MiB of memory is more than this host has ({host} MiB)")]
    MemoryTooLarge {
        /// Requested MiB.
        asked: u64,
        /// Host RAM, MiB.
        host: u64,
    },
    /// Zero vCPUs.
    #[error("a VM needs at least one vCPU")]
    NoVcpus,
    /// More vCPUs than KVM allows.
    #[error("{asked} vCPUs is more than KVM allows on this host ({max})")]
    TooManyVcpus {
        /// Requested.
        asked: u32,
        /// KVM's limit.
        max: u32,
    },
    /// The command line does not fit its slot.
    #[error("the kernel command line is longer than {} bytes", layout::CMDLINE_MAX - 1)]
    CmdlineTooLong,
    /// The NIC's settings are invalid.
    #[error("{0}")]
    Net(String),
}

impl VmmConfig {
    /// Checks the configuration against the host (`host_mib` RAM, `max_vcpus` from KVM),
    /// before anything is built.
    pub fn validate(&self, host_mib: u64, max_vcpus: u32) -> Result<(), ConfigError> {
        if self.restore.is_none() && !self.kernel.is_file() {
            return Err(ConfigError::NoKernel(self.kernel.clone()));
        }
        if let Some(i) = &self.initrd {
            if !i.is_file() {
                return Err(ConfigError::NoInitrd(i.clone()));
            }
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(ConfigError::MemoryTooSmall(self.memory_mib));
        }
        if host_mib > 0 && self.memory_mib > host_mib {
            return Err(ConfigError::MemoryTooLarge {
                asked: self.memory_mib,
                host: host_mib,
            });
        }
        if self.vcpus == 0 {
            return Err(ConfigError::NoVcpus);
        }
        if self.vcpus > max_vcpus {
            return Err(ConfigError::TooManyVcpus {
                asked: self.vcpus,
                max: max_vcpus,
            });
        }
        if self.cmdline.len() >= layout::CMDLINE_MAX {
            return Err(ConfigError::CmdlineTooLong);
        }
        if let Some(n) = &self.net {
            crate::net::check_ifname(&n.tap).map_err(ConfigError::Net)?;
            if n.mac.is_multicast() {
                return Err(ConfigError::Net(format!(
                    "{} is a multicast address, not a NIC's",
                    n.mac
                )));
            }
        }
        Ok(())
    }

    /// Guest RAM in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib << 20
    }
}

/// Host RAM from /proc/meminfo, MiB (0 when unknown).
pub fn host_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(0)
}

/// The arguments a reset re-executes strata-vmx with: `args` (without the program name)
/// minus any hot-add slot flags, plus the slot's current disk (path, read-only), if any.
pub fn reset_args(
    args: Vec<std::ffi::OsString>,
    hot_disk: Option<&(PathBuf, bool)>,
) -> Vec<std::ffi::OsString> {
    let mut out = Vec::with_capacity(args.len() + 3);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let text = a.to_string_lossy();
        if text == "--hot-disk" {
            it.next();
        } else if !(text.starts_with("--hot-disk=") || text == "--hot-disk-read-only") {
            out.push(a);
        }
    }
    if let Some((path, read_only)) = hot_disk {
        out.push("--hot-disk".into());
        out.push(path.clone().into_os_string());
        if *read_only {
            out.push("--hot-disk-read-only".into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kernel: PathBuf) -> VmmConfig {
        VmmConfig {
            name: "t".into(),
            kernel,
            initrd: None,
            cmdline: String::new(),
            memory_mib: 64,
            vcpus: 1,
            serial_log: "/dev/null".into(),
            serial_socket: None,
            control_socket: None,
            vnc_socket: None,
            pid_file: None,
            restore: None,
            disk: None,
            disk_read_only: false,
            hot_disk: None,
            hot_disk_read_only: false,
            net: None,
            framebuffer: None,
            seccomp: true,
        }
    }

    #[test]
    fn refuses_bad_configs_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("k");
        std::fs::write(&k, b"x").unwrap();
        assert!(config(k.clone()).validate(1024, 4).is_ok());
        let e = config(dir.path().join("none"))
            .validate(1024, 4)
            .unwrap_err();
        assert!(matches!(e, ConfigError::NoKernel(_)), "{e}");
        let c = VmmConfig {
            memory_mib: 4096,
            ..config(k.clone())
        };
        assert_eq!(
            c.validate(1024, 4).unwrap_err().to_string(),
            "4096 MiB of memory is more than this host has (1024 MiB)"
        );
        let c = VmmConfig {
            vcpus: 9,
            ..config(k.clone())
        };
        assert!(matches!(
            c.validate(1024, 8),
            Err(ConfigError::TooManyVcpus { asked: 9, max: 8 })
        ));
        let c = VmmConfig {
            vcpus: 0,
            ..config(k.clone())
        };
        assert_eq!(c.validate(1024, 8), Err(ConfigError::NoVcpus));
        let c = VmmConfig {
            memory_mib: 1,
            ..config(k.clone())
        };
        assert_eq!(c.validate(1024, 8), Err(ConfigError::MemoryTooSmall(1)));
        let c = VmmConfig {
            cmdline: "x".repeat(layout::CMDLINE_MAX),
            ..config(k.clone())
        };
        assert_eq!(c.validate(1024, 8), Err(ConfigError::CmdlineTooLong));
        let net = |tap: &str, mac: [u8; 6]| VmmConfig {
            net: Some(NetConfig {
                tap: tap.into(),
                mac: MacAddr(mac),
            }),
            ..config(k.clone())
        };
        assert!(net("tap0", [0x52, 0x54, 0, 0, 0, 1])
            .validate(1024, 8)
            .is_ok());
        assert!(matches!(
            net("a/b", [0x52, 0x54, 0, 0, 0, 1]).validate(1024, 8),
            Err(ConfigError::Net(_))
        ));
        assert!(matches!(
            net("tap0", [0x01, 0, 0x5e, 0, 0, 1]).validate(1024, 8),
            Err(ConfigError::Net(_))
        ));
    }

    #[test]
    fn a_reset_carries_the_hot_added_disk_over() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let base = args(&["--name", "a", "--disk", "/d0"]);
        assert_eq!(reset_args(base.clone(), None), base);
        assert_eq!(
            reset_args(base.clone(), Some(&("/d1".into(), true))),
            args(&[
                "--name",
                "a",
                "--disk",
                "/d0",
                "--hot-disk",
                "/d1",
                "--hot-disk-read-only"
            ])
        );
        // An earlier slot disk (either spelling) is replaced, not repeated.
        let before = args(&[
            "--hot-disk",
            "/old",
            "--name",
            "a",
            "--hot-disk=/x",
            "--hot-disk-read-only",
        ]);
        assert_eq!(
            reset_args(before, Some(&("/d1".into(), false))),
            args(&["--name", "a", "--hot-disk", "/d1"])
        );
    }
}
