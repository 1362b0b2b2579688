//! Snapshots: the VM's state (vCPUs, interrupt controllers, PIT, clock, devices) as one
//! serialisable struct, written with the framebuffer and guest memory as one stream
//! ([`stream`]) while the vCPUs are parked; a new strata-vmx process restores it and the
//! guest continues where it was.
//!
//! A snapshot directory holds that stream in one file, [`SNAPSHOT_FILE`].

pub mod stream;

use std::path::Path;

use kvm_bindings::{
    kvm_clock_data, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
    kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs,
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use serde::{Deserialize, Serialize};
use vm_memory::GuestMemoryMmap;

/// Snapshot format version.
pub const SNAPSHOT_VERSION: u32 = 1;
/// The snapshot stream's file in a snapshot directory.
pub const SNAPSHOT_FILE: &str = "vm.snap";

/// Why a snapshot could not be taken or restored.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A KVM ioctl failed.
    #[error("{what} failed: {source}")]
    Kvm {
        /// The step.
        what: &'static str,
        /// Cause.
        source: kvm_ioctls::Error,
    },
    /// A snapshot file.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The state file is not a snapshot this version can restore.
    #[error("{0}")]
    Format(String),
    /// Guest memory.
    #[error("guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> PersistError {
    move |source| PersistError::Kvm { what, source }
}

/// One vCPU's architectural state.
#[derive(Debug, Serialize, Deserialize)]
pub struct VcpuState {
    /// General registers.
    pub regs: kvm_regs,
    /// Segment and control registers.
    pub sregs: kvm_sregs,
    /// x87/SSE/AVX state.
    pub xsave: kvm_xsave,
    /// Extended control registers (absent where KVM has none).
    pub xcrs: Option<kvm_xcrs>,
    /// Debug registers.
    pub debugregs: kvm_debugregs,
    /// Local APIC.
    pub lapic: kvm_lapic_state,
    /// Model-specific registers KVM could read.
    pub msrs: Vec<kvm_msr_entry>,
    /// Run state (running, halted, waiting for SIPI…).
    pub mp_state: kvm_mp_state,
    /// Pending exceptions, interrupts and NMIs.
    pub events: kvm_vcpu_events,
}

impl VcpuState {
    /// Reads the state of a vCPU that is not running; `msr_index` lists the MSRs to save.
    pub fn save(fd: &VcpuFd, msr_index: &[u32]) -> Result<Self, PersistError> {
        let mut msrs = Vec::new();
        for &index in msr_index {
            let Ok(mut one) = Msrs::from_entries(&[kvm_msr_entry {
                index,
                ..Default::default()
            }]) else {
                continue;
            };
            if matches!(fd.get_msrs(&mut one), Ok(1)) {
                msrs.extend_from_slice(one.as_slice());
            }
        }
        Ok(Self {
            mp_state: fd.get_mp_state().map_err(kvm("KVM_GET_MP_STATE"))?,
            regs: fd.get_regs().map_err(kvm("KVM_GET_REGS"))?,
            sregs: fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?,
            xsave: fd.get_xsave().map_err(kvm("KVM_GET_XSAVE"))?,
            xcrs: fd.get_xcrs().ok(),
            debugregs: fd.get_debug_regs().map_err(kvm("KVM_GET_DEBUGREGS"))?,
            lapic: fd.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?,
            msrs,
            events: fd.get_vcpu_events().map_err(kvm("KVM_GET_VCPU_EVENTS"))?,
        })
    }

    /// Loads the state into a fresh vCPU (CPUID already set).
    pub fn restore(&self, fd: &VcpuFd) -> Result<(), PersistError> {
        fd.set_sregs(&self.sregs).map_err(kvm("KVM_SET_SREGS"))?;
        fd.set_regs(&self.regs).map_err(kvm("KVM_SET_REGS"))?;
        // SAFETY: the buffer is a `kvm_xsave` that KVM_GET_XSAVE filled on this host, so
        // its size is the legacy 4 KiB area KVM_SET_XSAVE reads; nothing beyond it is read.
        unsafe { fd.set_xsave(&self.xsave) }.map_err(kvm("KVM_SET_XSAVE"))?;
        if let Some(x) = &self.xcrs {
            fd.set_xcrs(x).map_err(kvm("KVM_SET_XCRS"))?;
        }
        fd.set_debug_regs(&self.debugregs)
            .map_err(kvm("KVM_SET_DEBUGREGS"))?;
        fd.set_lapic(&self.lapic).map_err(kvm("KVM_SET_LAPIC"))?;
        let msrs = Msrs::from_entries(&self.msrs)
            .map_err(|e| PersistError::Format(format!("too many MSRs: {e:?}")))?;
        let set = fd.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
        if set != self.msrs.len() {
            return Err(PersistError::Format(format!(
                "KVM took {set} of {} MSRs (MSR {:#x} refused)",
                self.msrs.len(),
                self.msrs.get(set).map(|m| m.index).unwrap_or(0)
            )));
        }
        fd.set_mp_state(self.mp_state)
            .map_err(kvm("KVM_SET_MP_STATE"))?;
        fd.set_vcpu_events(&self.events)
            .map_err(kvm("KVM_SET_VCPU_EVENTS"))?;
        Ok(())
    }
}

/// The VM-wide KVM state: PICs, IOAPIC, PIT and the guest clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmState {
    /// Master 8259.
    pub pic_master: kvm_irqchip,
    /// Slave 8259.
    pub pic_slave: kvm_irqchip,
    /// IOAPIC.
    pub ioapic: kvm_irqchip,
    /// PIT.
    pub pit: kvm_pit_state2,
    /// kvmclock.
    pub clock: kvm_clock_data,
}

fn irqchip(fd: &VmFd, chip_id: u32) -> Result<kvm_irqchip, PersistError> {
    let mut c = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    fd.get_irqchip(&mut c).map_err(kvm("KVM_GET_IRQCHIP"))?;
    Ok(c)
}

impl VmState {
    /// Reads the VM's state (vCPUs parked).
    pub fn save(fd: &VmFd) -> Result<Self, PersistError> {
        Ok(Self {
            pic_master: irqchip(fd, KVM_IRQCHIP_PIC_MASTER)?,
            pic_slave: irqchip(fd, KVM_IRQCHIP_PIC_SLAVE)?,
            ioapic: irqchip(fd, KVM_IRQCHIP_IOAPIC)?,
            pit: fd.get_pit2().map_err(kvm("KVM_GET_PIT2"))?,
            clock: fd.get_clock().map_err(kvm("KVM_GET_CLOCK"))?,
        })
    }

    /// Loads it into a fresh VM that has its irqchip and PIT.
    pub fn restore(&self, fd: &VmFd) -> Result<(), PersistError> {
        for chip in [&self.pic_master, &self.pic_slave, &self.ioapic] {
            fd.set_irqchip(chip).map_err(kvm("KVM_SET_IRQCHIP"))?;
        }
        fd.set_pit2(&self.pit).map_err(kvm("KVM_SET_PIT2"))?;
        // Only the clock value carries over; the flags describe the source host's clock.
        let clock = kvm_clock_data {
            clock: self.clock.clock,
            ..Default::default()
        };
        fd.set_clock(&clock).map_err(kvm("KVM_SET_CLOCK"))?;
        Ok(())
    }
}

/// The 16550's registers and queued input (vm-superio's `SerialState`, serialisable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialSnapshot {
    /// DLL.
    pub baud_divisor_low: u8,
    /// DLM.
    pub baud_divisor_high: u8,
    /// IER.
    pub interrupt_enable: u8,
    /// IIR.
    pub interrupt_identification: u8,
    /// LCR.
    pub line_control: u8,
    /// LSR.
    pub line_status: u8,
    /// MCR.
    pub modem_control: u8,
    /// MSR.
    pub modem_status: u8,
    /// SCR.
    pub scratch: u8,
    /// Input not yet read by the guest.
    pub in_buffer: Vec<u8>,
}

impl From<vm_superio::serial::SerialState> for SerialSnapshot {
    fn from(s: vm_superio::serial::SerialState) -> Self {
        Self {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }
}

impl From<&SerialSnapshot> for vm_superio::serial::SerialState {
    fn from(s: &SerialSnapshot) -> Self {
        Self {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer.clone(),
        }
    }
}

/// Everything but guest memory.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// VM name.
    pub name: String,
    /// Guest RAM, MiB.
    pub memory_mib: u64,
    /// VM-wide KVM state.
    pub vm: VmState,
    /// One per vCPU, in id order.
    pub vcpus: Vec<VcpuState>,
    /// COM1.
    pub serial: SerialSnapshot,
    /// The power port's pending events.
    pub power_pending: u8,
    /// The virtio-blk disk, when the VM has one.
    #[serde(default)]
    pub disk: Option<DiskSnapshot>,
    /// The hot-add block slot (absent in snapshots from before it existed).
    #[serde(default)]
    pub hot_disk: Option<HotDiskSnapshot>,
    /// The NIC, when the VM has one.
    #[serde(default)]
    pub net: Option<NetSnapshot>,
    /// The display's geometry (its contents are in [`FRAMEBUFFER_FILE`]).
    #[serde(default)]
    pub display: Option<DisplaySnapshot>,
    /// The keyboard controller (absent in snapshots from before it had state).
    #[serde(default)]
    pub keyboard: Option<crate::vmm::devices::legacy::i8042::I8042State>,
}

/// The framebuffer's geometry in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplaySnapshot {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
}

/// A virtio-net NIC in a snapshot: its tap, address and transport (frames in flight are
/// not kept: a NIC may drop frames).
#[derive(Debug, Serialize, Deserialize)]
pub struct NetSnapshot {
    /// The tap interface.
    pub tap: String,
    /// The MAC address.
    pub mac: [u8; 6],
    /// virtio-mmio registers and queues.
    pub transport: crate::vmm::devices::virtio::mmio::MmioTransportState,
}

/// A VM's disk in a snapshot: which image, how, and the transport's state. The image
/// itself is not copied (it stays where it is, as on shared storage).
#[derive(Debug, Serialize, Deserialize)]
pub struct DiskSnapshot {
    /// The image file.
    pub path: std::path::PathBuf,
    /// Served read-only.
    pub read_only: bool,
    /// virtio-mmio registers and queue.
    pub transport: crate::vmm::devices::virtio::mmio::MmioTransportState,
}

/// The hot-add block slot in a snapshot: the disk in it (path, read-only), if any, and the
/// transport's state.
#[derive(Debug, Serialize, Deserialize)]
pub struct HotDiskSnapshot {
    /// The disk attached at run time.
    pub disk: Option<(std::path::PathBuf, bool)>,
    /// virtio-mmio registers and queue.
    pub transport: crate::vmm::devices::virtio::mmio::MmioTransportState,
}

impl Snapshot {
    /// Writes the snapshot stream (this state, the framebuffer, guest memory) into
    /// `dir/`[`SNAPSHOT_FILE`], synced to disk; returns its size.
    pub fn write_file(
        &self,
        dir: &Path,
        framebuffer: Option<&[u8]>,
        mem: &GuestMemoryMmap,
    ) -> Result<u64, PersistError> {
        let path = dir.join(SNAPSHOT_FILE);
        let io_err = |source| PersistError::Io {
            what: format!("writing {}", path.display()),
            source,
        };
        let file = std::fs::File::create(&path).map_err(io_err)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let n = stream::write(&mut out, self, framebuffer, mem)?;
        let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        Ok(n)
    }

    /// Opens `dir/`[`SNAPSHOT_FILE`] and reads its state and framebuffer; the returned
    /// reader is positioned at guest memory (for [`stream::read_memory`]).
    pub fn open_file(
        dir: &Path,
    ) -> Result<(Self, Vec<u8>, std::io::BufReader<std::fs::File>), PersistError> {
        let path = dir.join(SNAPSHOT_FILE);
        let file = std::fs::File::open(&path).map_err(|source| PersistError::Io {
            what: format!("opening {}", path.display()),
            source,
        })?;
        let mut input = std::io::BufReader::with_capacity(1 << 20, file);
        let (s, fb) = stream::read_state(&mut input)
            .map_err(|e| PersistError::Format(format!("{}: {e}", path.display())))?;
        Ok((s, fb, input))
    }
}

/// The MSRs KVM can save on this host.
pub fn msr_index_list(kvm_handle: &Kvm) -> Vec<u32> {
    kvm_handle
        .get_msr_index_list()
        .map(|l| l.as_slice().to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_state_converts_both_ways() {
        let snap = SerialSnapshot {
            baud_divisor_low: 1,
            baud_divisor_high: 0,
            interrupt_enable: 1,
            interrupt_identification: 0xc1,
            line_control: 3,
            line_status: 0x60,
            modem_control: 0xb,
            modem_status: 0xb0,
            scratch: 7,
            in_buffer: b"ab".to_vec(),
        };
        let state: vm_superio::serial::SerialState = (&snap).into();
        assert_eq!(SerialSnapshot::from(state), snap);
        let text = serde_json::to_string(&snap).unwrap();
        assert_eq!(serde_json::from_str::<SerialSnapshot>(&text).unwrap(), snap);
    }
}
