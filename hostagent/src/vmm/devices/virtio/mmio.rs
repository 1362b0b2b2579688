//! The virtio-mmio transport (virtio 1.2 §4.2, version 2 registers) for one device with
//! one queue. Queue processing runs on the vCPU thread that writes QueueNotify.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::VirtioDevice;
use crate::vmm::devices::MmioDevice;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR: u32 = 0x5354_5241; // "STRA"
/// Largest queue offered.
pub const QUEUE_MAX: u16 = 256;
const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
const INT_USED_BUFFER: u32 = 1;

/// The transport's registers and its queue, for snapshots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MmioTransportState {
    /// DeviceFeaturesSel.
    pub device_features_sel: u32,
    /// DriverFeaturesSel.
    pub driver_features_sel: u32,
    /// Features the driver accepted.
    pub driver_features: u64,
    /// QueueSel.
    pub queue_sel: u32,
    /// Device status.
    pub status: u32,
    /// InterruptStatus.
    pub interrupt_status: u32,
    /// Queue: largest size offered.
    pub queue_max_size: u16,
    /// Queue: next available index to read.
    pub queue_next_avail: u16,
    /// Queue: next used index to write.
    pub queue_next_used: u16,
    /// Queue: event index negotiated.
    pub queue_event_idx: bool,
    /// Queue: size the driver chose.
    pub queue_size: u16,
    /// Queue: ready.
    pub queue_ready: bool,
    /// Queue: descriptor table address.
    pub queue_desc_table: u64,
    /// Queue: available ring address.
    pub queue_avail_ring: u64,
    /// Queue: used ring address.
    pub queue_used_ring: u64,
}

/// A virtio device on the MMIO bus.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: Arc<GuestMemoryMmap>,
    irq: EventFd,
    queue: Queue,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    interrupt_status: u32,
}

fn new_queue() -> Queue {
    // QUEUE_MAX is a power of two, which is all Queue::new checks.
    Queue::new(QUEUE_MAX).unwrap_or_else(|_| unreachable!("256 is a valid queue size"))
}

impl MmioTransport {
    /// Puts `device` behind the transport; used buffers raise `irq`.
    pub fn new(device: Box<dyn VirtioDevice>, mem: Arc<GuestMemoryMmap>, irq: EventFd) -> Self {
        Self {
            device,
            mem,
            irq,
            queue: new_queue(),
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            interrupt_status: 0,
        }
    }

    /// The registers and queue state.
    pub fn state(&self) -> MmioTransportState {
        let q = self.queue.state();
        MmioTransportState {
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            status: self.status,
            interrupt_status: self.interrupt_status,
            queue_max_size: q.max_size,
            queue_next_avail: q.next_avail,
            queue_next_used: q.next_used,
            queue_event_idx: q.event_idx_enabled,
            queue_size: q.size,
            queue_ready: q.ready,
            queue_desc_table: q.desc_table,
            queue_avail_ring: q.avail_ring,
            queue_used_ring: q.used_ring,
        }
    }

    /// Takes over the registers and queue of a snapshot.
    pub fn restore(&mut self, s: &MmioTransportState) -> Result<(), String> {
        let q = virtio_queue::QueueState {
            max_size: s.queue_max_size,
            next_avail: s.queue_next_avail,
            next_used: s.queue_next_used,
            event_idx_enabled: s.queue_event_idx,
            size: s.queue_size,
            ready: s.queue_ready,
            desc_table: s.queue_desc_table,
            avail_ring: s.queue_avail_ring,
            used_ring: s.queue_used_ring,
        };
        self.queue = Queue::try_from(q).map_err(|e| format!("bad virtio queue state: {e}"))?;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features & self.device.features();
        self.queue_sel = s.queue_sel;
        self.status = s.status;
        self.interrupt_status = s.interrupt_status;
        Ok(())
    }

    fn reset(&mut self) {
        self.queue = new_queue();
        self.driver_features = 0;
        self.status = 0;
        self.interrupt_status = 0;
    }

    fn register(&self, offset: u64) -> u32 {
        let q0 = self.queue_sel == 0;
        match offset {
            0x000 => MAGIC,
            0x004 => VERSION,
            0x008 => self.device.device_type(),
            0x00c => VENDOR,
            0x010 => {
                let f = self.device.features();
                match self.device_features_sel {
                    0 => f as u32,
                    1 => (f >> 32) as u32,
                    _ => 0,
                }
            }
            0x034 if q0 => u32::from(QUEUE_MAX),
            0x044 if q0 => u32::from(self.queue.ready()),
            0x060 => self.interrupt_status,
            0x070 => self.status,
            0x0fc => 0, // config generation
            _ => 0,
        }
    }

    fn set_register(&mut self, offset: u64, v: u32) {
        let q0 = self.queue_sel == 0;
        match offset {
            0x014 => self.device_features_sel = v,
            0x020 => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                // Only what the device offers can be accepted.
                let offered = self.device.features();
                self.driver_features = (self.driver_features & !(0xffff_ffffu64 << shift))
                    | ((u64::from(v) << shift) & offered);
            }
            0x024 => self.driver_features_sel = v,
            0x030 => self.queue_sel = v,
            0x038 if q0 => self.queue.set_size(v.min(u32::from(u16::MAX)) as u16),
            0x044 if q0 => self.queue.set_ready(v == 1),
            0x050 => self.notify(),
            0x064 => self.interrupt_status &= !v,
            0x070 => {
                if v == 0 {
                    self.reset();
                } else {
                    // The driver may set FEATURES_OK only for features we offered (masked
                    // above); a status the device cannot accept is simply stored.
                    self.status = v;
                }
            }
            0x080 if q0 => self.queue.set_desc_table_address(Some(v), None),
            0x084 if q0 => self.queue.set_desc_table_address(None, Some(v)),
            0x090 if q0 => self.queue.set_avail_ring_address(Some(v), None),
            0x094 if q0 => self.queue.set_avail_ring_address(None, Some(v)),
            0x0a0 if q0 => self.queue.set_used_ring_address(Some(v), None),
            0x0a4 if q0 => self.queue.set_used_ring_address(None, Some(v)),
            _ => {}
        }
    }

    fn notify(&mut self) {
        let live = self.status & (STATUS_DRIVER_OK | STATUS_FEATURES_OK)
            == (STATUS_DRIVER_OK | STATUS_FEATURES_OK);
        if !live || !self.queue.ready() || !self.queue.is_valid(&*self.mem) {
            tracing::debug!("virtio: notify on a queue that is not set up");
            return;
        }
        if self.device.process_queue(&mut self.queue, &self.mem) {
            self.interrupt_status |= INT_USED_BUFFER;
            if let Err(e) = self.irq.write(1) {
                tracing::warn!(error = %e, "virtio interrupt lost");
            }
        }
    }
}

impl MmioDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= 0x100 {
            self.device.read_config(offset - 0x100, data);
        } else if data.len() == 4 {
            data.copy_from_slice(&self.register(offset).to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset < 0x100 {
            if let Ok(bytes) = <[u8; 4]>::try_from(data) {
                self.set_register(offset, u32::from_le_bytes(bytes));
            }
        }
    }
}
