//! The virtio-mmio transport (virtio 1.2 §4.2, version 2 registers) for one device with
//! one or more queues. Queue processing runs on the vCPU thread that writes QueueNotify, or
//! on the event loop thread when the device's backend has work (a tap became readable).

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
/// InterruptStatus bit: the device configuration changed.
const INT_CONFIG_CHANGE: u32 = 2;

/// One queue's registers and ring positions, for snapshots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueSnapshot {
    /// Largest size offered.
    pub max_size: u16,
    /// Next available index to read.
    pub next_avail: u16,
    /// Next used index to write.
    pub next_used: u16,
    /// Event index negotiated.
    pub event_idx: bool,
    /// Size the driver chose.
    pub size: u16,
    /// Ready.
    pub ready: bool,
    /// Descriptor table address.
    pub desc_table: u64,
    /// Available ring address.
    pub avail_ring: u64,
    /// Used ring address.
    pub used_ring: u64,
}

impl From<virtio_queue::QueueState> for QueueSnapshot {
    fn from(q: virtio_queue::QueueState) -> Self {
        Self {
            max_size: q.max_size,
            next_avail: q.next_avail,
            next_used: q.next_used,
            event_idx: q.event_idx_enabled,
            size: q.size,
            ready: q.ready,
            desc_table: q.desc_table,
            avail_ring: q.avail_ring,
            used_ring: q.used_ring,
        }
    }
}

impl QueueSnapshot {
    fn to_queue(&self) -> Result<Queue, String> {
        let q = virtio_queue::QueueState {
            max_size: self.max_size,
            next_avail: self.next_avail,
            next_used: self.next_used,
            event_idx_enabled: self.event_idx,
            size: self.size,
            ready: self.ready,
            desc_table: self.desc_table,
            avail_ring: self.avail_ring,
            used_ring: self.used_ring,
        };
        Queue::try_from(q).map_err(|e| format!("bad virtio queue state: {e}"))
    }
}

/// The transport's registers and its queues, for snapshots. Queue 0 is kept in flat fields
/// (the layout of snapshots taken when the transport had one queue); further queues follow
/// in `extra_queues`.
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
    /// Queue 0: largest size offered.
    pub queue_max_size: u16,
    /// Queue 0: next available index to read.
    pub queue_next_avail: u16,
    /// Queue 0: next used index to write.
    pub queue_next_used: u16,
    /// Queue 0: event index negotiated.
    pub queue_event_idx: bool,
    /// Queue 0: size the driver chose.
    pub queue_size: u16,
    /// Queue 0: ready.
    pub queue_ready: bool,
    /// Queue 0: descriptor table address.
    pub queue_desc_table: u64,
    /// Queue 0: available ring address.
    pub queue_avail_ring: u64,
    /// Queue 0: used ring address.
    pub queue_used_ring: u64,
    /// Queues 1 and up.
    #[serde(default)]
    pub extra_queues: Vec<QueueSnapshot>,
    /// ConfigGeneration (bumped on each configuration change).
    #[serde(default)]
    pub config_generation: u32,
}

/// A virtio device on the MMIO bus.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: Arc<GuestMemoryMmap>,
    irq: EventFd,
    queues: Vec<Queue>,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    interrupt_status: u32,
    config_generation: u32,
}

fn new_queue() -> Queue {
    // QUEUE_MAX is a power of two, which is all Queue::new checks.
    Queue::new(QUEUE_MAX).unwrap_or_else(|_| unreachable!("256 is a valid queue size"))
}

impl MmioTransport {
    /// Puts `device` behind the transport; used buffers raise `irq`.
    pub fn new(device: Box<dyn VirtioDevice>, mem: Arc<GuestMemoryMmap>, irq: EventFd) -> Self {
        let queues = (0..device.queue_count().max(1))
            .map(|_| new_queue())
            .collect();
        Self {
            device,
            mem,
            irq,
            queues,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            interrupt_status: 0,
            config_generation: 0,
        }
    }

    /// The registers and queue state.
    pub fn state(&self) -> MmioTransportState {
        let mut queues = self.queues.iter().map(|q| QueueSnapshot::from(q.state()));
        let q0 = queues
            .next()
            .unwrap_or_else(|| QueueSnapshot::from(new_queue().state()));
        MmioTransportState {
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            queue_sel: self.queue_sel,
            status: self.status,
            interrupt_status: self.interrupt_status,
            queue_max_size: q0.max_size,
            queue_next_avail: q0.next_avail,
            queue_next_used: q0.next_used,
            queue_event_idx: q0.event_idx,
            queue_size: q0.size,
            queue_ready: q0.ready,
            queue_desc_table: q0.desc_table,
            queue_avail_ring: q0.avail_ring,
            queue_used_ring: q0.used_ring,
            extra_queues: queues.collect(),
            config_generation: self.config_generation,
        }
    }

    /// Takes over the registers and queues of a snapshot.
    pub fn restore(&mut self, s: &MmioTransportState) -> Result<(), String> {
        let q0 = QueueSnapshot {
            max_size: s.queue_max_size,
            next_avail: s.queue_next_avail,
            next_used: s.queue_next_used,
            event_idx: s.queue_event_idx,
            size: s.queue_size,
            ready: s.queue_ready,
            desc_table: s.queue_desc_table,
            avail_ring: s.queue_avail_ring,
            used_ring: s.queue_used_ring,
        };
        if s.extra_queues.len() + 1 != self.queues.len() {
            return Err(format!(
                "the snapshot has {} virtio queues, the device {}",
                s.extra_queues.len() + 1,
                self.queues.len()
            ));
        }
        let queues = std::iter::once(&q0)
            .chain(&s.extra_queues)
            .map(QueueSnapshot::to_queue)
            .collect::<Result<Vec<_>, _>>()?;
        self.queues = queues;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features & self.device.features();
        self.queue_sel = s.queue_sel;
        self.status = s.status;
        self.interrupt_status = s.interrupt_status;
        self.config_generation = s.config_generation;
        Ok(())
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            *q = new_queue();
        }
        self.driver_features = 0;
        self.status = 0;
        self.interrupt_status = 0;
        self.device.reset();
    }

    fn selected(&self) -> Option<&Queue> {
        self.queues.get(self.queue_sel as usize)
    }

    fn selected_mut(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn register(&self, offset: u64) -> u32 {
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
            0x034 => self.selected().map_or(0, |_| u32::from(QUEUE_MAX)),
            0x044 => self.selected().map_or(0, |q| u32::from(q.ready())),
            0x060 => self.interrupt_status,
            0x070 => self.status,
            0x0fc => self.config_generation,
            _ => 0,
        }
    }

    fn set_register(&mut self, offset: u64, v: u32) {
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
            0x050 => self.notify(v as usize),
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
            _ => {
                if let Some(q) = self.selected_mut() {
                    match offset {
                        0x038 => q.set_size(v.min(u32::from(u16::MAX)) as u16),
                        0x044 => q.set_ready(v == 1),
                        0x080 => q.set_desc_table_address(Some(v), None),
                        0x084 => q.set_desc_table_address(None, Some(v)),
                        0x090 => q.set_avail_ring_address(Some(v), None),
                        0x094 => q.set_avail_ring_address(None, Some(v)),
                        0x0a0 => q.set_used_ring_address(Some(v), None),
                        0x0a4 => q.set_used_ring_address(None, Some(v)),
                        _ => {}
                    }
                }
            }
        }
    }

    /// True once the driver has finished setting the device up.
    fn live(&self) -> bool {
        self.status & (STATUS_DRIVER_OK | STATUS_FEATURES_OK)
            == (STATUS_DRIVER_OK | STATUS_FEATURES_OK)
    }

    /// Hands the device its backend while the guest runs (see [`VirtioDevice::attach`]) and
    /// tells the driver its configuration changed (ConfigGeneration bumped, the
    /// configuration-change interrupt raised).
    pub fn attach(&mut self, backend: Box<dyn std::any::Any + Send>) -> Result<(), String> {
        self.device.attach(backend)?;
        self.config_generation = self.config_generation.wrapping_add(1);
        self.interrupt_status |= INT_CONFIG_CHANGE;
        if let Err(e) = self.irq.write(1) {
            tracing::warn!(error = %e, "virtio interrupt lost");
        }
        Ok(())
    }

    fn signal_used(&mut self) {
        self.interrupt_status |= INT_USED_BUFFER;
        if let Err(e) = self.irq.write(1) {
            tracing::warn!(error = %e, "virtio interrupt lost");
        }
    }

    fn notify(&mut self, index: usize) {
        let usable = self
            .queues
            .get(index)
            .is_some_and(|q| q.ready() && q.is_valid(&*self.mem));
        if !self.live() || !usable {
            tracing::debug!(
                queue = index,
                "virtio: notify on a queue that is not set up"
            );
            return;
        }
        if self
            .device
            .process_queue(index, &mut self.queues, &self.mem)
        {
            self.signal_used();
        }
    }

    /// Lets the device serve its backend (called by the event loop when the backend's fd is
    /// ready); raises the interrupt when buffers were used. Does nothing before the driver
    /// has set the device up.
    pub fn backend_ready(&mut self) {
        if !self.live() {
            return;
        }
        if self.device.process_backend(&mut self.queues, &self.mem) {
            self.signal_used();
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

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    /// A device with three queues that records which queue was notified.
    struct Probe(Vec<usize>);

    impl VirtioDevice for Probe {
        fn device_type(&self) -> u32 {
            99
        }
        fn features(&self) -> u64 {
            super::super::VIRTIO_F_VERSION_1
        }
        fn queue_count(&self) -> usize {
            3
        }
        fn read_config(&self, _offset: u64, data: &mut [u8]) {
            data.fill(7);
        }
        fn process_queue(&mut self, index: usize, _q: &mut [Queue], _m: &GuestMemoryMmap) -> bool {
            self.0.push(index);
            true
        }
    }

    fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn queues_are_selected_and_out_of_range_selections_are_ignored() {
        let mem = Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap());
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut t = MmioTransport::new(Box::new(Probe(Vec::new())), mem, irq);
        assert_eq!(r(&mut t, 0x000), MAGIC);
        for (sel, base) in [(0u32, 0x1000u32), (2, 0x4000)] {
            w(&mut t, 0x030, sel);
            assert_eq!(r(&mut t, 0x034), u32::from(QUEUE_MAX));
            w(&mut t, 0x038, 16);
            w(&mut t, 0x080, base);
            w(&mut t, 0x090, base + 0x400);
            w(&mut t, 0x0a0, base + 0x800);
            w(&mut t, 0x044, 1);
            assert_eq!(r(&mut t, 0x044), 1);
        }
        w(&mut t, 0x030, 3);
        assert_eq!(r(&mut t, 0x034), 0, "no queue 3");
        w(&mut t, 0x044, 1); // ignored
        w(&mut t, 0x070, 1 | 2 | 8 | 4);
        w(&mut t, 0x050, 2);
        w(&mut t, 0x050, 1); // not ready: ignored
        w(&mut t, 0x050, 77); // no such queue: ignored
        assert_eq!(r(&mut t, 0x060), INT_USED_BUFFER);
        let s = t.state();
        assert_eq!(s.extra_queues.len(), 2);
        assert!(s.queue_ready && !s.extra_queues[0].ready && s.extra_queues[1].ready);
        let mut b = [0u8; 2];
        t.read(0x104, &mut b);
        assert_eq!(b, [7, 7]);
        // A snapshot restores into a transport with the same queues, not another.
        let mem2 = Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap());
        let irq2 = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut t2 = MmioTransport::new(Box::new(Probe(Vec::new())), mem2, irq2);
        t2.restore(&s).unwrap();
        assert_eq!(t2.state(), s);
        let mut short = s.clone();
        short.extra_queues.pop();
        assert!(t2.restore(&short).is_err());
    }

    #[test]
    fn attaching_a_disk_to_an_empty_slot_raises_a_configuration_change() {
        use crate::vmm::devices::virtio::block::Block;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.raw");
        std::fs::write(&p, vec![0u8; 8 * 512]).unwrap();
        let mem = Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap());
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let probe = irq.try_clone().unwrap();
        let mut t = MmioTransport::new(Box::new(Block::empty()), mem, irq);
        assert_eq!(r(&mut t, 0x008), 2, "an empty slot is still a block device");
        assert_eq!(r(&mut t, 0x100), 0, "of capacity 0");
        assert!(probe.read().is_err(), "no interrupt yet");
        let generation = r(&mut t, 0x0fc);
        t.attach(Box::new(Block::open(&p, false).unwrap())).unwrap();
        assert_eq!(r(&mut t, 0x100), 8, "the capacity is the disk's");
        assert_eq!(r(&mut t, 0x060) & INT_CONFIG_CHANGE, INT_CONFIG_CHANGE);
        assert_ne!(r(&mut t, 0x0fc), generation);
        assert_eq!(probe.read().unwrap(), 1, "the interrupt was raised");
        // The state (generation included) survives a snapshot.
        assert_eq!(t.state().config_generation, generation.wrapping_add(1));
        // A slot holds one disk; anything but a disk is refused; neither changes it.
        assert!(t.attach(Box::new(Block::empty())).is_err());
        w(&mut t, 0x064, INT_CONFIG_CHANGE);
        assert_eq!(r(&mut t, 0x060), 0, "the driver acknowledged it");
        let mut other = MmioTransport::new(
            Box::new(Block::empty()),
            Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()),
            EventFd::new(libc::EFD_NONBLOCK).unwrap(),
        );
        assert!(other.attach(Box::new(42u32)).is_err());
        assert_eq!(r(&mut other, 0x060), 0);
        assert_eq!(r(&mut other, 0x0fc), 0);
        let mut probe_dev = MmioTransport::new(
            Box::new(Probe(Vec::new())),
            Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()),
            EventFd::new(libc::EFD_NONBLOCK).unwrap(),
        );
        assert!(probe_dev.attach(Box::new(Block::empty())).is_err());
    }
}
