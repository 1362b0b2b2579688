//! The KVM VM: memory slots, in-kernel irqchip (PIC + IOAPIC + LAPICs) and PIT.

use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};

use crate::vmm::layout;

/// Why the VM could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A KVM ioctl failed.
    #[error("{what} failed: {source}")]
    Kvm {
        /// The step.
        what: &'static str,
        /// Cause.
        source: kvm_ioctls::Error,
    },
    /// Guest memory has no host address.
    #[error("guest memory region at {0:#x} has no host mapping")]
    NoHostAddress(u64),
}

fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

/// Host memory mapped into the guest outside RAM (e.g. the framebuffer).
#[derive(Debug, Clone, Copy)]
pub struct ExtraMemory {
    /// Guest physical address.
    pub guest_addr: u64,
    /// Size, bytes (whole pages).
    pub size: u64,
    /// Host address of a mapping that outlives the VM.
    pub host_addr: u64,
}

/// Memory slots from here on are extra memory (RAM uses slots 0..).
pub const EXTRA_SLOT_BASE: u32 = 16;

/// A VM with its interrupt controllers and timer.
pub struct Vm {
    /// The VM file descriptor.
    pub fd: VmFd,
}

impl Vm {
    /// Creates the VM with `mem` as its RAM and `extra` mapped beside it, the in-kernel
    /// irqchip and the PIT (before any vCPU exists). `mem` and the `extra` mappings must
    /// outlive the VM.
    pub fn new(
        kvm_handle: &Kvm,
        mem: &GuestMemoryMmap,
        extra: &[ExtraMemory],
    ) -> Result<Self, VmError> {
        let fd = kvm_handle.create_vm().map_err(kvm("KVM_CREATE_VM"))?;
        let vm = Self { fd };
        // Memory first: once the irqchip and PIT exist, every memslot change waits for an
        // SRCU grace period (measured ~5 ms under KVM PVM), before them it does not.
        vm.register_memory(mem, false)?;
        for (i, e) in extra.iter().enumerate() {
            let desc = kvm_userspace_memory_region {
                slot: EXTRA_SLOT_BASE + i as u32,
                flags: 0,
                guest_phys_addr: e.guest_addr,
                memory_size: e.size,
                userspace_addr: e.host_addr,
            };
            // SAFETY: the caller passes a live mapping of `size` bytes at `host_addr` that
            // outlives the VM (the VMM keeps its owner until the process exits); its guest
            // range lies in the MMIO hole, apart from RAM and from the other extra slots,
            // and slot numbers from EXTRA_SLOT_BASE are not used by RAM.
            unsafe { vm.fd.set_user_memory_region(desc) }
                .map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
        }
        let fd = &vm.fd;
        fd.set_tss_address(layout::KVM_TSS_ADDRESS as usize)
            .map_err(kvm("KVM_SET_TSS_ADDR"))?;
        fd.set_identity_map_address(layout::KVM_IDENTITY_MAP_ADDRESS)
            .map_err(kvm("KVM_SET_IDENTITY_MAP_ADDR"))?;
        fd.create_irq_chip().map_err(kvm("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(kvm("KVM_CREATE_PIT2"))?;
        Ok(vm)
    }

    /// Registers every region of `mem` as a memory slot (slot i = region i), with dirty-page
    /// logging when `log_dirty`. `mem` must outlive the VM.
    fn register_memory(&self, mem: &GuestMemoryMmap, log_dirty: bool) -> Result<(), VmError> {
        for (slot, region) in mem.iter().enumerate() {
            let start = region.start_addr().0;
            let host = region
                .get_host_address(MemoryRegionAddress(0))
                .map_err(|_| VmError::NoHostAddress(start))?;
            let desc = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: if log_dirty {
                    KVM_MEM_LOG_DIRTY_PAGES
                } else {
                    0
                },
                guest_phys_addr: start,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: `host..host + len` is the live anonymous mapping of this region, owned
            // by `mem`, which the VMM keeps until the process exits (the VM never outlives
            // it); the slot does not overlap another (regions are disjoint), and re-registering
            // a slot with the same range only changes its flags.
            unsafe { self.fd.set_user_memory_region(desc) }
                .map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(())
    }

    /// Switches dirty-page logging on or off for all of guest memory.
    pub fn set_dirty_logging(&self, mem: &GuestMemoryMmap, on: bool) -> Result<(), VmError> {
        self.register_memory(mem, on)
    }

    /// Pages written since the last call (or since logging was switched on), as page
    /// numbers from guest address 0 per region; KVM clears the log as it reads it.
    pub fn dirty_pages(&self, mem: &GuestMemoryMmap) -> Result<Vec<u64>, VmError> {
        let mut pages = Vec::new();
        for (slot, region) in mem.iter().enumerate() {
            let bitmap = self
                .fd
                .get_dirty_log(slot as u32, region.len() as usize)
                .map_err(kvm("KVM_GET_DIRTY_LOG"))?;
            let first = region.start_addr().0 >> 12;
            for (word_index, word) in bitmap.iter().enumerate() {
                let mut w = *word;
                while w != 0 {
                    let bit = u64::from(w.trailing_zeros());
                    pages.push(first + word_index as u64 * 64 + bit);
                    w &= w - 1;
                }
            }
        }
        Ok(pages)
    }
}
