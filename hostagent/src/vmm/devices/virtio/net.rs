//! virtio-net over a frame backend (a tap): queue 0 receives (backend → guest), queue 1
//! transmits (guest → backend). Offers `VIRTIO_NET_F_MAC` and `VIRTIO_NET_F_STATUS` (link
//! always up), no offloads: every frame carries the 12-byte virtio 1.x header, which the
//! device fills with zeros (num_buffers = 1) on receive and skips on transmit.
//!
//! Receive runs when the backend is readable (the event loop) and when the driver adds
//! receive buffers (a notify on queue 0): frames are read until the backend is empty or the
//! guest has no buffer left, in which case the frame read last waits in the device.
//! Transmit runs on a notify of queue 1, on the vCPU thread that wrote it.
//!
//! Every guest-supplied descriptor is checked: too many descriptors, a descriptor of the
//! wrong direction, lengths that overflow or exceed a frame, addresses outside guest memory
//! all drop the frame (the buffer is returned with length 0); nothing panics.

use virtio_queue::{desc::split::Descriptor, Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{VirtioDevice, VIRTIO_F_VERSION_1};
use crate::net::mac::MacAddr;
use crate::net::FrameIo;

/// Device type.
pub const TYPE_NET: u32 = 1;
/// `VIRTIO_NET_F_MAC`: the device has a MAC address in its config space.
pub const F_MAC: u64 = 1 << 5;
/// `VIRTIO_NET_F_STATUS`: the config space has a link status.
pub const F_STATUS: u64 = 1 << 16;
/// `VIRTIO_NET_S_LINK_UP`.
const S_LINK_UP: u16 = 1;
/// The virtio 1.x net header (`struct virtio_net_hdr_v1`), bytes.
pub const HDR_LEN: usize = 12;
/// Longest frame carried (without the header): no GSO is offered, so this is a jumbo
/// frame's worth plus room for VLAN tags.
pub const MAX_FRAME: usize = 65_535;
/// Receive queue index.
pub const RX: usize = 0;
/// Transmit queue index.
pub const TX: usize = 1;
/// Most descriptors one chain may have.
const MAX_DESCS: usize = 256;

/// Frame counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// Frames from the backend dropped (guest buffer unusable).
    pub rx_dropped: u64,
    /// Frames the guest sent out.
    pub tx_frames: u64,
    /// Guest frames dropped (bad descriptors, backend refused).
    pub tx_dropped: u64,
}

/// A virtio-net device.
pub struct Net {
    backend: Box<dyn FrameIo>,
    mac: MacAddr,
    /// Header + the frame read from the backend that waits for a guest buffer.
    rx_buf: Vec<u8>,
    /// Length of the waiting frame (0: none).
    rx_pending: usize,
    tx_buf: Vec<u8>,
    counters: NetCounters,
}

impl Net {
    /// A NIC with address `mac` whose frames go to and come from `backend`.
    pub fn new(backend: Box<dyn FrameIo>, mac: MacAddr) -> Self {
        Self {
            backend,
            mac,
            rx_buf: vec![0u8; HDR_LEN + MAX_FRAME],
            rx_pending: 0,
            tx_buf: vec![0u8; HDR_LEN + MAX_FRAME],
            counters: NetCounters::default(),
        }
    }

    /// The NIC's address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Frame counters so far.
    pub fn counters(&self) -> NetCounters {
        self.counters
    }

    /// Reads the next frame from the backend into `rx_buf` unless one is waiting; false
    /// when the backend has none.
    fn fill_pending(&mut self) -> bool {
        while self.rx_pending == 0 {
            match self.backend.recv_frame(&mut self.rx_buf[HDR_LEN..]) {
                Ok(0) => return false,
                // A backend never returns more than the buffer; clamp anyway.
                Ok(n) => self.rx_pending = n.min(MAX_FRAME),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        tracing::debug!(error = %e, "virtio-net: backend read failed");
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Moves frames from the backend into guest receive buffers; true when any buffer was
    /// used.
    fn receive(&mut self, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        let Some(queue) = queues.get_mut(RX) else {
            return false;
        };
        if !queue.ready() || !queue.is_valid(mem) {
            return false;
        }
        let mut used = false;
        while self.fill_pending() {
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                // No buffer: the frame waits for the driver's next notify of queue 0.
                break;
            };
            let head = chain.head_index();
            let descs: Vec<Descriptor> = chain.take(MAX_DESCS + 1).collect();
            // The header: all zero but num_buffers = 1.
            self.rx_buf[..HDR_LEN].fill(0);
            self.rx_buf[10] = 1;
            let frame = &self.rx_buf[..HDR_LEN + self.rx_pending];
            let written = match write_chain(mem, &descs, frame) {
                Some(n) => {
                    self.counters.rx_frames += 1;
                    n
                }
                None => {
                    tracing::debug!("virtio-net: receive buffer unusable; frame dropped");
                    self.counters.rx_dropped += 1;
                    0
                }
            };
            self.rx_pending = 0;
            if queue.add_used(mem, head, written).is_err() {
                tracing::debug!("virtio-net: add_used failed");
            }
            used = true;
        }
        used
    }

    /// Sends the frames the guest queued for transmission; true when any buffer was used.
    fn transmit(&mut self, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        let Some(queue) = queues.get_mut(TX) else {
            return false;
        };
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let descs: Vec<Descriptor> = chain.take(MAX_DESCS + 1).collect();
            match read_chain(mem, &descs, &mut self.tx_buf) {
                Some(len) if len > HDR_LEN => {
                    match self.backend.send_frame(&self.tx_buf[HDR_LEN..len]) {
                        Ok(()) => self.counters.tx_frames += 1,
                        Err(e) => {
                            tracing::debug!(error = %e, "virtio-net: backend write failed");
                            self.counters.tx_dropped += 1;
                        }
                    }
                }
                _ => {
                    tracing::debug!("virtio-net: transmit buffer unusable; frame dropped");
                    self.counters.tx_dropped += 1;
                }
            }
            if queue.add_used(mem, head, 0).is_err() {
                tracing::debug!("virtio-net: add_used failed");
            }
            used = true;
        }
        used
    }
}

/// Writes `data` into a chain of device-writable descriptors; returns the bytes written, or
/// None when the chain is too long, has a driver-readable descriptor, is too small for
/// `data`, or points outside guest memory.
fn write_chain(mem: &GuestMemoryMmap, descs: &[Descriptor], data: &[u8]) -> Option<u32> {
    if descs.is_empty() || descs.len() > MAX_DESCS || descs.iter().any(|d| !d.is_write_only()) {
        return None;
    }
    let room = descs
        .iter()
        .try_fold(0u64, |acc, d| acc.checked_add(u64::from(d.len())))?;
    if room < data.len() as u64 {
        return None;
    }
    let mut at = 0usize;
    for d in descs {
        if at == data.len() {
            break;
        }
        let n = (d.len() as usize).min(data.len() - at);
        mem.write_slice(&data[at..at + n], d.addr()).ok()?;
        at += n;
    }
    u32::try_from(at).ok()
}

/// Gathers a chain of driver-readable descriptors into `buf`; returns the length, or None
/// when the chain is too long, has a device-writable descriptor, does not fit `buf`, or
/// points outside guest memory.
fn read_chain(mem: &GuestMemoryMmap, descs: &[Descriptor], buf: &mut [u8]) -> Option<usize> {
    if descs.is_empty() || descs.len() > MAX_DESCS || descs.iter().any(|d| d.is_write_only()) {
        return None;
    }
    let total = descs
        .iter()
        .try_fold(0usize, |acc, d| acc.checked_add(d.len() as usize))?;
    if total > buf.len() {
        return None;
    }
    let mut at = 0usize;
    for d in descs {
        let n = d.len() as usize;
        mem.read_slice(&mut buf[at..at + n], GuestAddress(d.addr().0))
            .ok()?;
        at += n;
    }
    Some(total)
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | F_MAC | F_STATUS
    }

    fn queue_count(&self) -> usize {
        2
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_net_config: mac[6], status (le16).
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&self.mac.0);
        config[6..8].copy_from_slice(&S_LINK_UP.to_le_bytes());
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| config.get(o).copied())
                .unwrap_or(0);
        }
    }

    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        match index {
            RX => self.receive(queues, mem),
            TX => self.transmit(queues, mem),
            _ => false,
        }
    }

    fn process_backend(&mut self, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        self.receive(queues, mem)
    }

    fn reset(&mut self) {
        self.rx_pending = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;
    const QSIZE: u16 = 16;

    /// A datagram socket pair stands in for the tap: one datagram, one frame.
    struct Dgram(UnixDatagram);

    impl FrameIo for Dgram {
        fn recv_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.recv(buf)
        }
        fn send_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
            self.0.send(frame).map(|_| ())
        }
    }

    fn device() -> (Net, UnixDatagram) {
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let mac = MacAddr([0x52, 0x54, 0, 1, 2, 3]);
        (Net::new(Box::new(Dgram(a)), mac), b)
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    /// A split ring in guest memory: descriptor table at `base`, avail ring at +0x200,
    /// used ring at +0x400.
    struct Ring {
        base: u64,
        next_desc: u16,
        avail_idx: u16,
    }

    impl Ring {
        fn new(base: u64) -> Self {
            Self {
                base,
                next_desc: 0,
                avail_idx: 0,
            }
        }

        fn queue(&self) -> Queue {
            let mut q = Queue::new(QSIZE).unwrap();
            q.set_size(QSIZE);
            q.set_desc_table_address(Some(self.base as u32), Some(0));
            q.set_avail_ring_address(Some(self.base as u32 + 0x200), Some(0));
            q.set_used_ring_address(Some(self.base as u32 + 0x400), Some(0));
            q.set_ready(true);
            q
        }

        /// Chains `descs` (address, length, device-writable) and makes it available.
        fn push(&mut self, m: &GuestMemoryMmap, descs: &[(u64, u32, bool)]) {
            let head = self.next_desc;
            for (i, (addr, len, write)) in descs.iter().enumerate() {
                let idx = (self.next_desc + i as u16) % QSIZE;
                let last = i + 1 == descs.len();
                let flags = if last { 0 } else { F_NEXT } | if *write { F_WRITE } else { 0 };
                let at = self.base + 16 * u64::from(idx);
                m.write_obj(*addr, GuestAddress(at)).unwrap();
                m.write_obj(*len, GuestAddress(at + 8)).unwrap();
                m.write_obj(flags, GuestAddress(at + 12)).unwrap();
                m.write_obj((idx + 1) % QSIZE, GuestAddress(at + 14))
                    .unwrap();
            }
            self.next_desc = (self.next_desc + descs.len() as u16) % QSIZE;
            let slot = self.base + 0x200 + 4 + 2 * u64::from(self.avail_idx % QSIZE);
            m.write_obj(head, GuestAddress(slot)).unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
            m.write_obj(self.avail_idx, GuestAddress(self.base + 0x202))
                .unwrap();
        }

        /// The used ring's index and entry `i` (id, len).
        fn used(&self, m: &GuestMemoryMmap, i: u16) -> (u16, u32, u32) {
            let idx: u16 = m.read_obj(GuestAddress(self.base + 0x402)).unwrap();
            let e = self.base + 0x404 + 8 * u64::from(i % QSIZE);
            (
                idx,
                m.read_obj(GuestAddress(e)).unwrap(),
                m.read_obj(GuestAddress(e + 4)).unwrap(),
            )
        }
    }

    fn frame(tag: u8, len: usize) -> Vec<u8> {
        let mut f = vec![tag; len];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        f
    }

    #[test]
    fn config_space_has_the_mac_and_link_up() {
        let (n, _peer) = device();
        let mut b = [0u8; 8];
        n.read_config(0, &mut b);
        assert_eq!(b, [0x52, 0x54, 0, 1, 2, 3, 1, 0]);
        let mut far = [9u8; 4];
        n.read_config(u64::MAX, &mut far);
        assert_eq!(far, [0; 4]);
        assert_ne!(n.features() & F_MAC, 0);
        assert_eq!(n.queue_count(), 2);
    }

    #[test]
    fn transmits_frames_split_over_descriptors() {
        let (mut n, peer) = device();
        let m = mem();
        let (rx, mut tx) = (Ring::new(0x1000), Ring::new(0x2000));
        let mut queues = vec![rx.queue(), tx.queue()];
        let f = frame(0xaa, 60);
        m.write_slice(&[0u8; HDR_LEN], GuestAddress(0x8000))
            .unwrap();
        m.write_slice(&f[..20], GuestAddress(0x9000)).unwrap();
        m.write_slice(&f[20..], GuestAddress(0xa000)).unwrap();
        tx.push(
            &m,
            &[
                (0x8000, 12, false),
                (0x9000, 20, false),
                (0xa000, 40, false),
            ],
        );
        // The header and frame in one buffer works too.
        m.write_slice(&[0u8; HDR_LEN], GuestAddress(0xb000))
            .unwrap();
        m.write_slice(&f, GuestAddress(0xb000 + HDR_LEN as u64))
            .unwrap();
        tx.push(&m, &[(0xb000, 72, false)]);
        assert!(n.process_queue(TX, &mut queues, &m));
        let mut got = [0u8; 2048];
        for _ in 0..2 {
            let len = peer.recv(&mut got).unwrap();
            assert_eq!(&got[..len], &f[..]);
        }
        assert_eq!(tx.used(&m, 1).0, 2);
        assert_eq!(n.counters().tx_frames, 2);
    }

    #[test]
    fn receives_when_buffers_come_and_keeps_the_frame_until_then() {
        let (mut n, peer) = device();
        let m = mem();
        let (mut rx, tx) = (Ring::new(0x1000), Ring::new(0x2000));
        let mut queues = vec![rx.queue(), tx.queue()];
        let f = frame(0x11, 100);
        peer.send(&f).unwrap();
        // No buffers yet: nothing used, the frame waits.
        assert!(!n.process_backend(&mut queues, &m));
        // A buffer in two pieces: header + start, then the rest.
        rx.push(&m, &[(0x8000, 50, true), (0x9000, 1514, true)]);
        assert!(n.process_queue(RX, &mut queues, &m));
        let (idx, id, len) = rx.used(&m, 0);
        assert_eq!((idx, id, len), (1, 0, (HDR_LEN + f.len()) as u32));
        let mut got = vec![0u8; HDR_LEN + f.len()];
        m.read_slice(&mut got[..50], GuestAddress(0x8000)).unwrap();
        m.read_slice(&mut got[50..], GuestAddress(0x9000)).unwrap();
        assert_eq!(&got[..HDR_LEN], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(&got[HDR_LEN..], &f[..]);
        // The backend is empty now.
        assert!(!n.process_backend(&mut queues, &m));
        assert_eq!(n.counters().rx_frames, 1);
    }

    #[test]
    fn unusable_receive_buffers_drop_the_frame_not_the_device() {
        let (mut n, peer) = device();
        let m = mem();
        let (mut rx, tx) = (Ring::new(0x1000), Ring::new(0x2000));
        let mut queues = vec![rx.queue(), tx.queue()];
        // Too small, driver-readable, outside guest memory, then a good one.
        rx.push(&m, &[(0x8000, 20, true)]);
        rx.push(&m, &[(0x8000, 2048, false)]);
        rx.push(&m, &[(0xfff_0000, 2048, true)]);
        rx.push(&m, &[(0x9000, 2048, true)]);
        for tag in 1..=4u8 {
            peer.send(&frame(tag, 64)).unwrap();
        }
        assert!(n.process_backend(&mut queues, &m));
        let lens: Vec<u32> = (0..4).map(|i| rx.used(&m, i).2).collect();
        assert_eq!(lens, vec![0, 0, 0, (HDR_LEN + 64) as u32]);
        let mut b = [0u8; 1];
        m.read_slice(&mut b, GuestAddress(0x9000 + 20)).unwrap();
        assert_eq!(b, [4], "the fourth frame reached the good buffer");
        assert_eq!((n.counters().rx_frames, n.counters().rx_dropped), (1, 3));
    }

    #[test]
    fn hostile_transmit_chains_are_dropped() {
        let (mut n, peer) = device();
        let m = mem();
        let (rx, mut tx) = (Ring::new(0x1000), Ring::new(0x2000));
        let mut queues = vec![rx.queue(), tx.queue()];
        tx.push(&m, &[(0x8000, 12, false), (0x9000, 60, true)]); // writable
        tx.push(&m, &[(0x8000, u32::MAX, false)]); // huge
        tx.push(&m, &[(0x8000, 12, false), (u64::MAX - 4, 60, false)]); // wraps
        tx.push(&m, &[(0x8000, 8, false)]); // shorter than the header
        assert!(n.process_queue(TX, &mut queues, &m));
        let mut b = [0u8; 64];
        assert!(peer.recv(&mut b).is_err(), "nothing was sent");
        assert_eq!(n.counters().tx_dropped, 4);
        assert_eq!(tx.used(&m, 0).0, 4, "every chain was returned");
    }

    /// Random descriptor tables and avail rings (loops, wild addresses, lengths and flags,
    /// out-of-range heads) on both queues, with frames waiting: the device never panics and
    /// never sends more frames than the guest offered chains.
    #[test]
    fn random_queues_are_survived() {
        use rand::{Rng, SeedableRng};
        let (mut n, peer) = device();
        let m = mem();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x4e37);
        let mut offered = 0u64;
        for _ in 0..3000 {
            for base in [0x1000u64, 0x2000] {
                for i in 0..QSIZE {
                    let addr: u64 = match rng.gen_range(0..4) {
                        0 => 0x8000,
                        1 => rng.gen_range(0x8000u64..0x10_0000),
                        2 => rng.gen(),
                        _ => 0xf_fff0,
                    };
                    let len: u32 = match rng.gen_range(0..4) {
                        0 => 1526,
                        1 => 12,
                        2 => rng.gen(),
                        _ => rng.gen_range(0..4096),
                    };
                    let at = base + 16 * u64::from(i);
                    m.write_obj(addr, GuestAddress(at)).unwrap();
                    m.write_obj(len, GuestAddress(at + 8)).unwrap();
                    m.write_obj(rng.gen_range(0u16..8), GuestAddress(at + 12))
                        .unwrap();
                    m.write_obj(rng.gen_range(0u16..20), GuestAddress(at + 14))
                        .unwrap();
                }
                let heads = rng.gen_range(0u16..5);
                for i in 0..heads {
                    m.write_obj(
                        rng.gen_range(0u16..20),
                        GuestAddress(base + 0x204 + 2 * u64::from(i)),
                    )
                    .unwrap();
                }
                m.write_obj(0u16, GuestAddress(base + 0x200)).unwrap();
                // Sometimes an avail index far ahead of the ring.
                let idx = if rng.gen_ratio(1, 10) {
                    rng.gen()
                } else {
                    heads
                };
                m.write_obj(idx, GuestAddress(base + 0x202)).unwrap();
                if base == 0x2000 && idx <= QSIZE {
                    offered += u64::from(idx);
                }
            }
            let mut queues = vec![Ring::new(0x1000).queue(), Ring::new(0x2000).queue()];
            if rng.gen_bool(0.5) {
                let len = rng.gen_range(1..2000);
                let _ = peer.send(&frame(1, len.max(14)));
            }
            n.process_backend(&mut queues, &m);
            n.process_queue(RX, &mut queues, &m);
            n.process_queue(TX, &mut queues, &m);
            n.process_queue(7, &mut queues, &m);
            n.process_queue(TX, &mut queues[..1], &m);
        }
        let mut sent = 0u64;
        let mut b = vec![0u8; 70_000];
        while peer.recv(&mut b).is_ok() {
            sent += 1;
        }
        let c = n.counters();
        assert_eq!(sent, c.tx_frames);
        assert!(c.tx_frames <= offered, "{c:?} from {offered} chains");
    }
}
