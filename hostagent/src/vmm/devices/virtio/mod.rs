//! virtio devices over the virtio-mmio transport (virtio 1.x, split queues via virtio-queue).

pub mod block;
pub mod mmio;

/// `VIRTIO_F_VERSION_1`: the device speaks virtio 1.x.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Where virtio-mmio devices go, in the 32-bit MMIO hole.
pub const MMIO_BASE: u64 = 0xd000_0000;
/// Each device's window.
pub const MMIO_SIZE: u64 = 0x1000;
/// The first virtio device's IRQ line.
pub const IRQ_BASE: u32 = 6;

/// A virtio device behind a transport.
pub trait VirtioDevice: Send {
    /// Device type (2 = block).
    fn device_type(&self) -> u32;
    /// Feature bits offered.
    fn features(&self) -> u64;
    /// Reads `data.len()` bytes of the device's config space at `offset` (out-of-range bytes
    /// read as zero).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Handles the available buffers of its (single) queue; true when any were used.
    fn process_queue(
        &mut self,
        queue: &mut virtio_queue::Queue,
        mem: &vm_memory::GuestMemoryMmap,
    ) -> bool;
}
