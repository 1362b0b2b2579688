//! vCPUs: CPUID and boot register state, and the thread that runs one and dispatches its
//! exits (port I/O to the bus; power events and crashes to the VMM loop).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use kvm_bindings::{kvm_fpu, kvm_regs, CpuId, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use vm_memory::GuestAddress;

use crate::vmm::boot::gdt::{segment_from_gdt, BOOT_GDT};
use crate::vmm::devices::{MmioBus, PioBus};
use crate::vmm::layout;
use crate::vmm::persist::VcpuState;
use crate::vmm::VmmEvent;

/// Why a vCPU could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("vCPU {id}: {what} failed: {source}")]
pub struct VcpuError {
    /// vCPU index.
    pub id: u32,
    /// The step.
    pub what: &'static str,
    /// Cause.
    pub source: kvm_ioctls::Error,
}

/// CR0.PE.
const X86_CR0_PE: u64 = 0x1;
/// CR0.ET.
const X86_CR0_ET: u64 = 0x10;
/// CR0.PG.
const X86_CR0_PG: u64 = 0x8000_0000;
/// CR4.PAE.
const X86_CR4_PAE: u64 = 0x20;
/// EFER.LME.
const EFER_LME: u64 = 0x100;
/// EFER.LMA.
const EFER_LMA: u64 = 0x400;
/// LAPIC LVT0 / LVT1 register offsets.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
/// LVT delivery modes.
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_MODE_NMI: u32 = 0x4;

/// Patches KVM's supported CPUID for vCPU `id` of `count`: the APIC id in leaf 1 and the
/// x2APIC id in leaves 0xb / 0x1f, and the logical processor count.
pub fn patch_cpuid(cpuid: &mut CpuId, id: u32, count: u32) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | (id << 24) | ((count.min(255)) << 16);
                if count > 1 {
                    e.edx |= 1 << 28; // HTT: more than one logical processor
                }
            }
            0xb | 0x1f => e.edx = id,
            _ => {}
        }
    }
}

/// Sets the delivery mode bits (8..11) of an LVT entry.
pub fn lvt_with_mode(lvt: u32, mode: u32) -> u32 {
    (lvt & !0x700) | (mode << 8)
}

/// What one KVM_RUN exit means, decided while the exit still borrows the vCPU.
enum Outcome {
    Continue,
    Event(VmmEvent),
    TripleFault,
    InternalError,
    Crash(String),
}

/// What the VMM loop asks of a parked vCPU thread.
pub enum VcpuRequest {
    /// Save the vCPU's state (the MSRs listed) and send it back.
    Save(Arc<Vec<u32>>, SyncSender<Result<VcpuState, String>>),
}

/// Parks and releases the vCPU threads (pause/resume).
#[derive(Default)]
pub struct PauseControl {
    paused: Mutex<bool>,
    wake: Condvar,
    parked: AtomicUsize,
}

impl PauseControl {
    /// Asks vCPUs to park (they do when they next leave KVM_RUN) or releases them.
    pub fn set_paused(&self, paused: bool) {
        *self.paused.lock().unwrap_or_else(|p| p.into_inner()) = paused;
        self.wake.notify_all();
    }

    /// vCPU threads parked right now.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }

    fn is_paused(&self) -> bool {
        *self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits up to `d` for a change of the pause flag; true while still paused.
    fn wait(&self, d: Duration) -> bool {
        let paused = self.paused.lock().unwrap_or_else(|p| p.into_inner());
        if !*paused {
            return false;
        }
        let (paused, _) = self
            .wake
            .wait_timeout(paused, d)
            .unwrap_or_else(|p| p.into_inner());
        *paused
    }
}

/// One vCPU.
pub struct Vcpu {
    /// Index (also the APIC id).
    pub id: u32,
    /// KVM handle.
    pub fd: VcpuFd,
}

impl Vcpu {
    /// Creates vCPU `id` with CPUID from `cpuid` (KVM's supported set) patched for it.
    pub fn new(vm: &VmFd, id: u32, count: u32, cpuid: &CpuId) -> Result<Self, VcpuError> {
        let err = |what| move |source| VcpuError { id, what, source };
        let fd = vm
            .create_vcpu(u64::from(id))
            .map_err(err("KVM_CREATE_VCPU"))?;
        let mut cpuid = cpuid.clone();
        patch_cpuid(&mut cpuid, id, count);
        fd.set_cpuid2(&cpuid).map_err(err("KVM_SET_CPUID2"))?;
        // LINT0 = ExtINT (the 8259 PIC reaches the CPU through it), LINT1 = NMI.
        let mut lapic = fd.get_lapic().map_err(err("KVM_GET_LAPIC"))?;
        for (reg, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
            let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
            let v = lvt_with_mode(u32::from_le_bytes(bytes), mode).to_le_bytes();
            for (i, b) in v.iter().enumerate() {
                lapic.regs[reg + i] = *b as _;
            }
        }
        fd.set_lapic(&lapic).map_err(err("KVM_SET_LAPIC"))?;
        Ok(Self { id, fd })
    }

    /// Puts the vCPU in the PVH entry state: 32-bit protected mode, paging off, flat
    /// segments from the boot GDT, %ebx = start info, at `entry`.
    pub fn setup_pvh(
        &self,
        entry: GuestAddress,
        start_info: GuestAddress,
    ) -> Result<(), VcpuError> {
        let id = self.id;
        let err = |what| move |source| VcpuError { id, what, source };
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        self.fd.set_fpu(&fpu).map_err(err("KVM_SET_FPU"))?;
        let mut sregs = self.fd.get_sregs().map_err(err("KVM_GET_SREGS"))?;
        let code = segment_from_gdt(BOOT_GDT[1], 1);
        let data = segment_from_gdt(BOOT_GDT[2], 2);
        sregs.cs = code;
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        sregs.tr = segment_from_gdt(BOOT_GDT[3], 3);
        sregs.gdt.base = layout::BOOT_GDT_START;
        sregs.gdt.limit = (std::mem::size_of_val(&BOOT_GDT) - 1) as u16;
        sregs.idt.base = layout::BOOT_IDT_START;
        sregs.idt.limit = 7;
        sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
        sregs.cr3 = 0;
        sregs.cr4 = 0;
        sregs.efer = 0;
        self.fd.set_sregs(&sregs).map_err(err("KVM_SET_SREGS"))?;
        let regs = kvm_regs {
            rflags: 0x2,
            rip: entry.0,
            rbx: start_info.0,
            ..Default::default()
        };
        self.fd.set_regs(&regs).map_err(err("KVM_SET_REGS"))?;
        Ok(())
    }

    /// Puts the vCPU in the state of the Linux 64-bit boot protocol: long mode on the boot
    /// page tables, flat 64-bit segments from the 64-bit GDT, %rsi = zero page, at `entry`.
    pub fn setup_linux64(&self, entry: GuestAddress) -> Result<(), VcpuError> {
        use crate::vmm::boot::linux::{BOOT_STACK_POINTER, GDT64, PML4_START, ZERO_PAGE_START};
        let id = self.id;
        let err = |what| move |source| VcpuError { id, what, source };
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        self.fd.set_fpu(&fpu).map_err(err("KVM_SET_FPU"))?;
        let mut sregs = self.fd.get_sregs().map_err(err("KVM_GET_SREGS"))?;
        let code = segment_from_gdt(GDT64[1], 1);
        let data = segment_from_gdt(GDT64[2], 2);
        sregs.cs = code;
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.ss = data;
        sregs.tr = segment_from_gdt(GDT64[3], 3);
        sregs.gdt.base = layout::BOOT_GDT_START;
        sregs.gdt.limit = (std::mem::size_of_val(&GDT64) - 1) as u16;
        sregs.idt.base = layout::BOOT_IDT_START;
        sregs.idt.limit = 7;
        sregs.cr3 = PML4_START;
        sregs.cr4 = X86_CR4_PAE;
        sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
        sregs.efer = EFER_LME | EFER_LMA;
        self.fd.set_sregs(&sregs).map_err(err("KVM_SET_SREGS"))?;
        let regs = kvm_regs {
            rflags: 0x2,
            rip: entry.0,
            rsp: BOOT_STACK_POINTER,
            rbp: BOOT_STACK_POINTER,
            rsi: ZERO_PAGE_START,
            ..Default::default()
        };
        self.fd.set_regs(&regs).map_err(err("KVM_SET_REGS"))?;
        Ok(())
    }

    /// Runs the vCPU until the VM ends (the process exits from the VMM loop), dispatching
    /// port I/O to `bus` and reporting power events and crashes on `events`.
    pub fn run(
        mut self,
        bus: Arc<PioBus>,
        mmio: Arc<MmioBus>,
        pause: Arc<PauseControl>,
        events: SyncSender<VmmEvent>,
        requests: Receiver<VcpuRequest>,
    ) {
        loop {
            if pause.is_paused() {
                self.parked(&pause, &requests);
            }
            let exit = match self.fd.run() {
                Ok(VcpuExit::IoIn(port, data)) => {
                    bus.read(port, data);
                    Outcome::Continue
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    bus.write(port, data);
                    Outcome::Continue
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    mmio.read(addr, data);
                    Outcome::Continue
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    mmio.write(addr, data);
                    Outcome::Continue
                }
                Ok(VcpuExit::Hlt) => Outcome::Continue,
                Ok(VcpuExit::Shutdown) => Outcome::TripleFault,
                Ok(VcpuExit::InternalError) => Outcome::InternalError,
                Ok(VcpuExit::FailEntry(reason, cpu)) => Outcome::Crash(format!(
                    "VM entry failed (hardware reason {reason:#x} on CPU {cpu})"
                )),
                Ok(VcpuExit::SystemEvent(kind, _)) => match kind {
                    KVM_SYSTEM_EVENT_SHUTDOWN => Outcome::Event(VmmEvent::PowerOff),
                    KVM_SYSTEM_EVENT_RESET => Outcome::Event(VmmEvent::Reset),
                    other => Outcome::Crash(format!("system event {other}")),
                },
                Ok(other) => Outcome::Crash(format!("unexpected exit {other:?}")),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    Outcome::Continue
                }
                Err(e) => Outcome::Crash(format!("KVM_RUN failed: {e}")),
            };
            let event = match exit {
                Outcome::Continue => None,
                Outcome::Event(ev) => Some(ev),
                Outcome::TripleFault => Some(VmmEvent::Crashed(format!(
                    "vCPU {}: triple fault (KVM_EXIT_SHUTDOWN){}",
                    self.id,
                    self.where_()
                ))),
                Outcome::InternalError => {
                    let detail = self.internal_error();
                    Some(VmmEvent::Crashed(format!(
                        "vCPU {}: KVM internal error ({detail}){}",
                        self.id,
                        self.where_()
                    )))
                }
                Outcome::Crash(why) => Some(VmmEvent::Crashed(format!("vCPU {}: {why}", self.id))),
            };
            if let Some(ev) = event {
                let fatal = !matches!(ev, VmmEvent::PowerOff | VmmEvent::Reset);
                if events.send(ev).is_err() || fatal {
                    // The VMM loop ends the process; this vCPU must not run on.
                    loop {
                        std::thread::park();
                    }
                }
            }
        }
    }

    /// Stays out of KVM_RUN while the VM is paused, serving the VMM loop's requests.
    fn parked(&self, pause: &PauseControl, requests: &Receiver<VcpuRequest>) {
        pause.parked.fetch_add(1, Ordering::SeqCst);
        loop {
            while let Ok(req) = requests.try_recv() {
                match req {
                    VcpuRequest::Save(msrs, reply) => {
                        let state = VcpuState::save(&self.fd, &msrs).map_err(|e| e.to_string());
                        let _ = reply.send(state);
                    }
                }
            }
            if !pause.wait(Duration::from_millis(2)) {
                break;
            }
        }
        pause.parked.fetch_sub(1, Ordering::SeqCst);
    }

    fn where_(&self) -> String {
        match self.fd.get_regs() {
            Ok(r) => format!(" at rip {:#x}", r.rip),
            Err(_) => String::new(),
        }
    }

    fn internal_error(&mut self) -> String {
        let run = self.fd.get_kvm_run();
        // SAFETY: the exit reason is KVM_EXIT_INTERNAL_ERROR, for which KVM fills the
        // `internal` member of the kvm_run union; reading it is reading plain integers.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let kind = match internal.suberror {
            1 => "instruction emulation failed",
            2 => "exception while injecting an exception",
            3 => "event delivery failed",
            4 => "unexpected exit reason",
            _ => "unknown suberror",
        };
        let n = (internal.ndata as usize).min(internal.data.len());
        format!(
            "suberror {}: {kind}; data {:x?}",
            internal.suberror,
            &internal.data[..n]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn cpuid_carries_the_apic_id() {
        let mut c = CpuId::from_entries(&[
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xff00_0800,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                edx: 7,
                ..Default::default()
            },
        ])
        .unwrap();
        patch_cpuid(&mut c, 3, 4);
        let e = c.as_slice();
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_eq!(e[0].ebx & 0xffff, 0x0800, "other fields kept");
        assert_ne!(e[0].edx & (1 << 28), 0);
        assert_eq!(e[1].edx, 3);
    }

    #[test]
    fn lvt_modes() {
        assert_eq!(lvt_with_mode(0x0001_0000, APIC_MODE_EXTINT), 0x0001_0700);
        assert_eq!(lvt_with_mode(0x0000_0700, APIC_MODE_NMI), 0x0000_0400);
    }
}
