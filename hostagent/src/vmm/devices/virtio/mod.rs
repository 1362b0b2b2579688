//! virtio devices over the virtio-mmio transport (virtio 1.x, split queues via virtio-queue).
//!
//! Device slots in the 32-bit MMIO hole: slot `n` is the window at
//! `MMIO_BASE + n * MMIO_SIZE` with IRQ line `IRQ_BASE + n`. Slot 0 is virtio-blk, slot 1
//! virtio-net, slot 4 the hot-add virtio-blk slot (always present, empty until a disk is
//! attached at run time); slots 2 and 3 stay free because their IRQs (8 and 9) are the
//! RTC's and, by convention, ACPI's. Fixed, so a guest finds each device at a known address.

pub mod block;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod mmio;
pub mod net;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

/// `VIRTIO_F_VERSION_1`: the device speaks virtio 1.x.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Where virtio-mmio devices go, in the 32-bit MMIO hole.
pub const MMIO_BASE: u64 = 0xd000_0000;
/// Each device's window.
pub const MMIO_SIZE: u64 = 0x1000;
/// The first virtio device's IRQ line.
pub const IRQ_BASE: u32 = 6;
/// The virtio-blk slot.
pub const SLOT_BLOCK: u32 = 0;
/// The virtio-net slot.
pub const SLOT_NET: u32 = 1;
/// The hot-add virtio-blk slot.
pub const SLOT_HOT_BLOCK: u32 = 4;

/// The MMIO window of device slot `slot`.
pub fn slot_base(slot: u32) -> u64 {
    MMIO_BASE + u64::from(slot) * MMIO_SIZE
}

/// The IRQ line of device slot `slot`.
pub fn slot_irq(slot: u32) -> u32 {
    IRQ_BASE + slot
}

/// A virtio device behind a transport.
pub trait VirtioDevice: Send {
    /// Device type (1 = net, 2 = block).
    fn device_type(&self) -> u32;
    /// Feature bits offered.
    fn features(&self) -> u64;
    /// Number of virtqueues.
    fn queue_count(&self) -> usize {
        1
    }
    /// Reads `data.len()` bytes of the device's config space at `offset` (out-of-range bytes
    /// read as zero).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// The driver notified queue `index` (an index of `queues`, which is set up and valid);
    /// true when any buffers were used.
    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool;
    /// The device's backend has work (its fd became ready); true when any buffers were
    /// used. Devices without a backend ignore it.
    fn process_backend(&mut self, _queues: &mut [Queue], _mem: &GuestMemoryMmap) -> bool {
        false
    }
    /// The driver reset the device.
    fn reset(&mut self) {}
    /// Hot-plug: gives the device its backend while the guest runs (a disk into an empty
    /// block slot). Devices that take none refuse.
    fn attach(&mut self, _backend: Box<dyn std::any::Any + Send>) -> Result<(), String> {
        Err("this device takes no backend at run time".into())
    }
}
