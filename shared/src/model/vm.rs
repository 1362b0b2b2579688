//! Virtual machines: their specification, power state and what the API reports about them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which VMM runs a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Engine {
    /// Native where the host has hardware virtualization, qemu otherwise.
    #[default]
    Auto,
    /// Strata's own KVM VMM (strata-vmx).
    Native,
    /// qemu-system-x86_64 driven over QMP.
    Qemu,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Auto => "auto",
            Engine::Native => "native",
            Engine::Qemu => "qemu",
        })
    }
}

/// The virtual hardware platform (qemu engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Machine {
    /// Minimal virtio-mmio machine for direct kernel boot: fastest start.
    #[default]
    Microvm,
    /// PC with PCI and firmware: any guest OS.
    Q35,
}

/// Power state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PowerState {
    /// Not running.
    PoweredOff,
    /// Running.
    PoweredOn,
    /// Process alive, vCPUs stopped (`vm.pause`): still holds its memory and reservation.
    Paused,
    /// Not running; its full state (vCPUs, devices, memory) is saved in the VM's directory
    /// and `vm.powerOn` resumes it. Reserves nothing, like a powered-off VM.
    Suspended,
    /// State unknown: the host is not connected.
    Unknown,
}

impl PowerState {
    /// Whether a VM process exists (powered on or paused): it holds host resources.
    pub fn has_process(self) -> bool {
        matches!(self, PowerState::PoweredOn | PowerState::Paused)
    }
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PowerState::PoweredOff => "poweredOff",
            PowerState::PoweredOn => "poweredOn",
            PowerState::Paused => "paused",
            PowerState::Suspended => "suspended",
            PowerState::Unknown => "unknown",
        })
    }
}

/// How a VM boots: a kernel (with optional initramfs) loaded directly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BootSpec {
    /// Kernel image path on the host (absolute, or relative to the VM's datastore).
    pub kernel: String,
    /// Initramfs path on the host (absolute, or relative to the datastore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// Extra kernel command line; the engine adds the console and timer arguments it needs.
    #[serde(default)]
    pub cmdline: String,
}

/// A virtual NIC (virtio-net) whose host side is a tap interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NicSpec {
    /// Host tap interface the NIC is attached to (1..=15 bytes; created by the host's
    /// network configuration, or created by the VM process when missing).
    pub tap: String,
    /// MAC address (`52:54:00:12:34:56`); derived from the VM id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// Most NICs a VM may have.
pub const MAX_NICS: usize = 8;

impl NicSpec {
    /// Checks the tap name and the MAC address.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.tap;
        if t.is_empty() || t.len() > 15 || t == "." || t == ".." {
            return Err(format!(
                "nic tap {t:?} must be an interface name of 1 to 15 bytes"
            ));
        }
        if t.chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "nic tap {t:?} must not contain '/', ':', spaces or control characters"
            ));
        }
        if let Some(m) = &self.mac {
            let bytes: Vec<Option<u8>> = m
                .split(':')
                .map(|p| {
                    (p.len() == 2)
                        .then(|| u8::from_str_radix(p, 16).ok())
                        .flatten()
                })
                .collect();
            if bytes.len() != 6 || bytes.iter().any(Option::is_none) {
                return Err(format!("nic mac {m:?} is not like 52:54:00:12:34:56"));
            }
            if bytes[0].is_some_and(|b| b & 1 == 1) {
                return Err(format!("nic mac {m} is a multicast address"));
            }
        }
        Ok(())
    }
}

/// The configuration of a VM: what `vm.create` takes and `NAME.toml` stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmSpec {
    /// Number of virtual CPUs (1..=64).
    pub vcpus: u32,
    /// Guest memory in MiB (16..=1048576).
    pub memory_mib: u64,
    /// Which VMM runs it.
    #[serde(default)]
    pub engine: Engine,
    /// Virtual platform.
    #[serde(default)]
    pub machine: Machine,
    /// Boot source.
    pub boot: BootSpec,
    /// CPU and memory reservation, limit and shares.
    #[serde(default)]
    pub allocation: super::pool::ResourceAllocation,
    /// Virtual disks, in the order the guest sees them (vda, vdb, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<super::disk::DiskSpec>,
    /// A template: never powered on, only cloned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub template: bool,
    /// Virtual NICs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<NicSpec>,
}

/// Largest vCPU count a VM may have.
pub const MAX_VCPUS: u32 = 64;
/// Smallest guest memory, MiB.
pub const MIN_MEMORY_MIB: u64 = 16;
/// Largest guest memory, MiB (1 TiB).
pub const MAX_MEMORY_MIB: u64 = 1 << 20;

impl VmSpec {
    /// Checks the values that do not depend on the host.
    pub fn validate(&self) -> Result<(), String> {
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(format!(
                "vcpus must be between 1 and {MAX_VCPUS}, not {}",
                self.vcpus
            ));
        }
        if self.memory_mib < MIN_MEMORY_MIB || self.memory_mib > MAX_MEMORY_MIB {
            return Err(format!(
                "memoryMib must be between {MIN_MEMORY_MIB} and {MAX_MEMORY_MIB}, not {}",
                self.memory_mib
            ));
        }
        if self.boot.kernel.trim().is_empty() {
            return Err("boot.kernel must name a kernel image".into());
        }
        if self.boot.cmdline.len() > 2048 {
            return Err("boot.cmdline must be at most 2048 bytes".into());
        }
        if self.boot.cmdline.chars().any(|c| c.is_control()) {
            return Err("boot.cmdline must not contain control characters".into());
        }
        self.allocation.validate()?;
        if self.disks.len() > super::disk::MAX_DISKS {
            return Err(format!(
                "a VM may have at most {} disks, not {}",
                super::disk::MAX_DISKS,
                self.disks.len()
            ));
        }
        for (i, d) in self.disks.iter().enumerate() {
            d.validate()?;
            if self.disks[..i].iter().any(|o| o.file == d.file) {
                return Err(format!("disk file {:?} is listed twice", d.file));
            }
        }
        if self.nics.len() > MAX_NICS {
            return Err(format!("a VM may have at most {MAX_NICS} NICs"));
        }
        for (i, n) in self.nics.iter().enumerate() {
            n.validate()?;
            if self.nics[..i].iter().any(|o| o.tap == n.tap) {
                return Err(format!("nic tap {} is named twice", n.tap));
            }
        }
        if self.allocation.memory.reservation > self.memory_mib {
            return Err(format!(
                "memory reservation {} MiB is more than the VM's {} MiB",
                self.allocation.memory.reservation, self.memory_mib
            ));
        }
        Ok(())
    }
}

/// A VM as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmInfo {
    /// Stable id.
    pub id: Uuid,
    /// Name, unique within its datacenter (manager) or datastore (host agent).
    pub name: String,
    /// Host that runs it (manager only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Uuid>,
    /// Resource pool it is in; none = directly under the root (manager only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Uuid>,
    /// Datastore that holds its directory.
    pub datastore: String,
    /// Configuration.
    pub spec: VmSpec,
    /// Power state.
    pub power_state: PowerState,
    /// Engine actually used while powered on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_engine: Option<Engine>,
    /// VMM process id while powered on (host agent only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Creation time, Unix ms.
    pub created_ms: i64,
}

/// Why a VM's power state changed (pushed by host agents as `vm.powerStateChanged`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PowerStateChange {
    /// The VM.
    pub vm: Uuid,
    /// New state.
    pub power_state: PowerState,
    /// What happened, in words ("guest shut down", "process exited with status 1").
    pub reason: String,
}

/// A piece of a VM's serial console log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleChunk {
    /// Byte offset of `data` in the log.
    pub offset: u64,
    /// Offset to ask for next.
    pub next_offset: u64,
    /// Current size of the whole log.
    pub size: u64,
    /// The bytes, decoded as UTF-8 (invalid sequences replaced).
    pub data: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        serde_json::from_value(serde_json::json!({
            "vcpus": 1,
            "memoryMib": 64,
            "boot": {"kernel": "/k"}
        }))
        .unwrap()
    }

    #[test]
    fn nics_are_optional_and_omitted_when_empty() {
        let s = spec();
        assert!(s.nics.is_empty(), "a spec from before NICs still parses");
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("nics"), "{text}");
        let with: VmSpec = serde_json::from_value(serde_json::json!({
            "vcpus": 1,
            "memoryMib": 64,
            "boot": {"kernel": "/k"},
            "nics": [{"tap": "tap0", "mac": "52:54:00:12:34:56"}, {"tap": "tap1"}]
        }))
        .unwrap();
        assert_eq!(with.nics[1].mac, None);
        assert!(with.validate().is_ok());
    }

    #[test]
    fn bad_nics_are_refused() {
        let nic = |tap: &str, mac: Option<&str>| VmSpec {
            nics: vec![NicSpec {
                tap: tap.into(),
                mac: mac.map(Into::into),
            }],
            ..spec()
        };
        assert!(nic("tap0", Some("52:54:00:ab:cd:ef")).validate().is_ok());
        for (tap, mac) in [
            ("", None),
            ("0123456789abcdef", None),
            ("a/b", None),
            ("a b", None),
            ("tap0", Some("52:54:00:ab:cd")),
            ("tap0", Some("52:54:00:ab:cd:zz")),
            ("tap0", Some("01:00:5e:00:00:01")),
        ] {
            assert!(nic(tap, mac).validate().is_err(), "{tap:?} {mac:?}");
        }
        let mut twice = nic("tap0", None);
        twice.nics.push(twice.nics[0].clone());
        assert!(twice.validate().unwrap_err().contains("named twice"));
    }
}
