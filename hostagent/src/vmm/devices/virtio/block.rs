//! virtio-blk on a raw image file: read, write, flush and get-id requests; an optional
//! read-only mode. Every guest-supplied length, sector and address is checked: a bad request
//! gets an error status, never a panic or an access outside the image or guest memory.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use virtio_queue::{desc::split::Descriptor, Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{VirtioDevice, VIRTIO_F_VERSION_1};

/// Sector size.
pub const SECTOR: u64 = 512;
/// Device type.
pub const TYPE_BLOCK: u32 = 2;
/// `VIRTIO_BLK_F_RO`.
pub const F_RO: u64 = 1 << 5;
/// `VIRTIO_BLK_F_FLUSH`.
pub const F_FLUSH: u64 = 1 << 9;
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
/// Most descriptors one request may chain.
const MAX_DESCS: usize = 130;
/// Copy granularity (bounds host buffers whatever lengths the guest claims).
const CHUNK: usize = 64 << 10;

/// Why a disk could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// Open failed.
    #[error("cannot open disk {path}: {source}")]
    Open {
        /// The image.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Another process (VM) holds it.
    #[error("disk {0} is in use by another VM")]
    InUse(PathBuf),
    /// Not a whole number of sectors.
    #[error("disk {0} is not a whole number of 512-byte sectors")]
    Size(PathBuf),
}

/// A virtio-blk device: a disk, or an empty slot (capacity 0) that a disk can be attached
/// to while the guest runs (hot-add: the guest is told by a configuration-change interrupt).
pub struct Block {
    file: Option<File>,
    read_only: bool,
    capacity: u64,
    id: [u8; 20],
}

impl Block {
    /// Opens `path` (locked against other VMs: exclusive, or shared when read-only).
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let open_err = |source| BlockError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(open_err)?;
        let lock = if read_only {
            nix::fcntl::FlockArg::LockSharedNonblock
        } else {
            nix::fcntl::FlockArg::LockExclusiveNonblock
        };
        #[allow(deprecated)]
        nix::fcntl::flock(std::os::fd::AsRawFd::as_raw_fd(&file), lock)
            .map_err(|_| BlockError::InUse(path.to_path_buf()))?;
        // The end offset, not the metadata's length: a mapped block device has length 0.
        let len = std::io::Seek::seek(&mut &file, std::io::SeekFrom::End(0)).map_err(open_err)?;
        if len % SECTOR != 0 {
            return Err(BlockError::Size(path.to_path_buf()));
        }
        let mut id = [0u8; 20];
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (d, s) in id.iter_mut().zip(name.bytes()) {
            *d = s;
        }
        Ok(Self {
            file: Some(file),
            read_only,
            capacity: len / SECTOR,
            id,
        })
    }

    /// An empty slot: no disk, capacity 0; every read or write fails.
    pub fn empty() -> Self {
        Self {
            file: None,
            read_only: false,
            capacity: 0,
            id: [0; 20],
        }
    }

    /// True when no disk is attached.
    pub fn is_empty(&self) -> bool {
        self.file.is_none()
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Executes one request (descriptors in chain order); returns the status and the bytes
    /// written into guest buffers (the status byte not included).
    fn execute(&mut self, mem: &GuestMemoryMmap, descs: &[Descriptor]) -> (u8, u32) {
        let (Some(header), Some(_status)) = (descs.first(), descs.last()) else {
            return (S_IOERR, 0);
        };
        if descs.len() < 2 || header.is_write_only() || header.len() < 16 {
            return (S_IOERR, 0);
        }
        let (Ok(kind), Ok(sector)) = (
            mem.read_obj::<u32>(header.addr()),
            mem.read_obj::<u64>(GuestAddress(header.addr().0.wrapping_add(8))),
        ) else {
            return (S_IOERR, 0);
        };
        let data = &descs[1..descs.len() - 1];
        let Some(file) = &self.file else {
            // An empty slot has nothing to read, write or flush.
            return (if kind == T_GET_ID { S_UNSUPP } else { S_IOERR }, 0);
        };
        match kind {
            T_IN | T_OUT => {
                let writing = kind == T_OUT;
                if writing && self.read_only {
                    return (S_IOERR, 0);
                }
                // Device-writable buffers for reads, driver-readable ones for writes.
                if data.iter().any(|d| d.is_write_only() == writing) {
                    return (S_IOERR, 0);
                }
                let total: u64 = data.iter().map(|d| u64::from(d.len())).sum();
                let end = sector
                    .checked_mul(SECTOR)
                    .and_then(|start| start.checked_add(total));
                if !total.is_multiple_of(SECTOR) || end.is_none_or(|e| e > self.capacity * SECTOR) {
                    return (S_IOERR, 0);
                }
                let mut offset = sector * SECTOR;
                let mut buf = vec![0u8; CHUNK];
                for d in data {
                    let mut done = 0usize;
                    let len = d.len() as usize;
                    while done < len {
                        let n = CHUNK.min(len - done);
                        let at = GuestAddress(d.addr().0.wrapping_add(done as u64));
                        let ok = if writing {
                            mem.read_slice(&mut buf[..n], at).is_ok()
                                && file.write_all_at(&buf[..n], offset).is_ok()
                        } else {
                            file.read_exact_at(&mut buf[..n], offset).is_ok()
                                && mem.write_slice(&buf[..n], at).is_ok()
                        };
                        if !ok {
                            return (S_IOERR, 0);
                        }
                        done += n;
                        offset += n as u64;
                    }
                }
                (S_OK, if writing { 0 } else { total as u32 })
            }
            T_FLUSH => match file.sync_all() {
                Ok(()) => (S_OK, 0),
                Err(_) => (S_IOERR, 0),
            },
            T_GET_ID => match data.first() {
                Some(d) if d.is_write_only() => {
                    let n = (d.len() as usize).min(self.id.len());
                    match mem.write_slice(&self.id[..n], d.addr()) {
                        Ok(()) => (S_OK, n as u32),
                        Err(_) => (S_IOERR, 0),
                    }
                }
                _ => (S_IOERR, 0),
            },
            _ => (S_UNSUPP, 0),
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | F_FLUSH | if self.read_only { F_RO } else { 0 }
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = self.capacity.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| config.get(o).copied())
                .unwrap_or(0);
        }
    }

    fn attach(&mut self, backend: Box<dyn std::any::Any + Send>) -> Result<(), String> {
        if !self.is_empty() {
            return Err("the slot already holds a disk".into());
        }
        let disk = backend
            .downcast::<Block>()
            .map_err(|_| "a block slot takes a disk".to_string())?;
        *self = *disk;
        Ok(())
    }

    fn process_queue(&mut self, index: usize, queues: &mut [Queue], mem: &GuestMemoryMmap) -> bool {
        let Some(queue) = queues.get_mut(index).filter(|_| index == 0) else {
            return false;
        };
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let descs: Vec<Descriptor> = chain.take(MAX_DESCS + 1).collect();
            let (status, written) = if descs.len() > MAX_DESCS {
                (S_IOERR, 0)
            } else {
                self.execute(mem, &descs)
            };
            let mut len = written;
            if let Some(s) = descs.last() {
                if descs.len() >= 2
                    && s.is_write_only()
                    && s.len() >= 1
                    && mem.write_obj(status, s.addr()).is_ok()
                {
                    len += 1;
                }
            }
            if queue.add_used(mem, head, len).is_err() {
                tracing::debug!("virtio-blk: add_used failed");
            }
            used = true;
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;

    fn disk(sectors: u64) -> (tempfile::TempDir, Block) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.raw");
        let mut data = vec![0u8; (sectors * SECTOR) as usize];
        data[..5].copy_from_slice(b"hello");
        std::fs::write(&p, &data).unwrap();
        let b = Block::open(&p, false).unwrap();
        (dir, b)
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    /// Queues one request (header, data…, status) and runs the device; returns the status.
    fn request(
        b: &mut Block,
        m: &GuestMemoryMmap,
        kind: u32,
        sector: u64,
        data: &[(u64, u32, bool)],
    ) -> u8 {
        let q = MockSplitQueue::new(m, 16);
        m.write_obj(kind, GuestAddress(0x8000)).unwrap();
        m.write_obj(sector, GuestAddress(0x8008)).unwrap();
        let mut descs = vec![Descriptor::new(0x8000, 16, F_NEXT, 0)];
        for (addr, len, write) in data {
            descs.push(Descriptor::new(
                *addr,
                *len,
                F_NEXT | if *write { F_WRITE } else { 0 },
                0,
            ));
        }
        descs.push(Descriptor::new(0x9000, 1, F_WRITE, 0));
        m.write_obj(0xffu8, GuestAddress(0x9000)).unwrap();
        let raw: Vec<virtio_queue::desc::RawDescriptor> =
            descs.into_iter().map(Into::into).collect();
        q.build_desc_chain(&raw).unwrap();
        let mut queue: Queue = q.create_queue().unwrap();
        assert!(b.process_queue(0, std::slice::from_mut(&mut queue), m));
        m.read_obj(GuestAddress(0x9000)).unwrap()
    }

    #[test]
    fn reads_and_writes_sectors() {
        let (_d, mut b) = disk(8);
        let m = mem();
        assert_eq!(request(&mut b, &m, T_IN, 0, &[(0xa000, 512, true)]), S_OK);
        let mut got = [0u8; 5];
        m.read_slice(&mut got, GuestAddress(0xa000)).unwrap();
        assert_eq!(&got, b"hello");
        m.write_slice(b"world", GuestAddress(0xb000)).unwrap();
        assert_eq!(request(&mut b, &m, T_OUT, 3, &[(0xb000, 512, false)]), S_OK);
        assert_eq!(request(&mut b, &m, T_IN, 3, &[(0xc000, 512, true)]), S_OK);
        m.read_slice(&mut got, GuestAddress(0xc000)).unwrap();
        assert_eq!(&got, b"world");
        assert_eq!(request(&mut b, &m, T_FLUSH, 0, &[]), S_OK);
        assert_eq!(
            request(&mut b, &m, T_GET_ID, 0, &[(0xd000, 20, true)]),
            S_OK
        );
        assert_eq!(request(&mut b, &m, 99, 0, &[]), S_UNSUPP);
    }

    #[test]
    fn an_empty_slot_fails_io_until_a_disk_is_attached() {
        let (_d, first) = disk(8);
        let m = mem();
        let mut slot = Block::empty();
        assert!(slot.is_empty());
        assert_eq!(
            request(&mut slot, &m, T_IN, 0, &[(0xa000, 512, true)]),
            S_IOERR
        );
        assert_eq!(
            request(&mut slot, &m, T_OUT, 0, &[(0xa000, 512, false)]),
            S_IOERR
        );
        assert_eq!(request(&mut slot, &m, T_FLUSH, 0, &[]), S_IOERR);
        slot.attach(Box::new(first)).unwrap();
        assert!(!slot.is_empty());
        assert_eq!(slot.capacity(), 8);
        assert_eq!(
            request(&mut slot, &m, T_IN, 0, &[(0xa000, 512, true)]),
            S_OK
        );
        let mut got = [0u8; 5];
        m.read_slice(&mut got, GuestAddress(0xa000)).unwrap();
        assert_eq!(&got, b"hello");
        let (_d2, second) = disk(8);
        assert!(slot.attach(Box::new(second)).is_err(), "one disk a slot");
    }

    #[test]
    fn hostile_requests_get_an_error_status() {
        let (_d, mut b) = disk(8);
        let m = mem();
        // Past the end of the disk, and an overflowing sector number.
        assert_eq!(
            request(&mut b, &m, T_IN, 8, &[(0xa000, 512, true)]),
            S_IOERR
        );
        assert_eq!(
            request(&mut b, &m, T_IN, u64::MAX / 256, &[(0xa000, 512, true)]),
            S_IOERR
        );
        // A huge length, and a buffer outside guest memory.
        assert_eq!(
            request(&mut b, &m, T_IN, 0, &[(0xa000, u32::MAX - 511, true)]),
            S_IOERR
        );
        assert_eq!(
            request(&mut b, &m, T_IN, 0, &[(0xfff_0000, 512, true)]),
            S_IOERR
        );
        // Not whole sectors; a read into a driver-readable buffer.
        assert_eq!(
            request(&mut b, &m, T_IN, 0, &[(0xa000, 100, true)]),
            S_IOERR
        );
        assert_eq!(
            request(&mut b, &m, T_IN, 0, &[(0xa000, 512, false)]),
            S_IOERR
        );
    }

    #[test]
    fn read_only_disks_refuse_writes_and_are_locked() {
        let (d, _rw) = disk(8);
        let p = d.path().join("disk.raw");
        assert!(matches!(Block::open(&p, true), Err(BlockError::InUse(_))));
        drop(_rw);
        let mut ro = Block::open(&p, true).unwrap();
        let also_ro = Block::open(&p, true);
        assert!(also_ro.is_ok(), "read-only users share a disk");
        assert!(matches!(Block::open(&p, false), Err(BlockError::InUse(_))));
        let m = mem();
        assert_eq!(
            request(&mut ro, &m, T_OUT, 0, &[(0xb000, 512, false)]),
            S_IOERR
        );
        assert_ne!(ro.features() & F_RO, 0);
        let mut cap = [0u8; 8];
        ro.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);
    }

    /// Random descriptor tables (loops, wild addresses and lengths, random flags and
    /// headers) never panic the device, never grow the image, and always complete.
    #[test]
    fn random_queues_are_survived() {
        use rand::{Rng, SeedableRng};
        use virtio_queue::desc::RawDescriptor;
        let (d, mut b) = disk(16);
        let m = mem();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for _ in 0..2000 {
            let q = MockSplitQueue::new(&m, 16);
            // Headers and data the descriptors may point at.
            let mut junk = [0u8; 64];
            rng.fill(&mut junk[..]);
            m.write_slice(&junk, GuestAddress(0x8000)).unwrap();
            m.write_obj(rng.gen_range(0u32..10), GuestAddress(0x8000))
                .unwrap();
            for i in 0..16u16 {
                let addr = match rng.gen_range(0..4) {
                    0 => 0x8000,
                    1 => rng.gen_range(0x8000u64..0x10_0000),
                    2 => rng.gen::<u64>(),
                    _ => 0xf_fff0,
                };
                let len = match rng.gen_range(0..4) {
                    0 => 512,
                    1 => 16,
                    2 => rng.gen::<u32>(),
                    _ => rng.gen_range(0..2048),
                };
                let flags = rng.gen_range(0u16..8);
                let next = rng.gen_range(0u16..20);
                q.desc_table()
                    .store(
                        i,
                        RawDescriptor::from(Descriptor::new(addr, len, flags, next)),
                    )
                    .unwrap();
            }
            let heads = rng.gen_range(0u16..4);
            for i in 0..heads {
                q.avail()
                    .ring()
                    .ref_at(i as usize)
                    .unwrap()
                    .store(u16::to_le(rng.gen_range(0u16..18)));
            }
            q.avail().idx().store(u16::to_le(heads));
            let mut queue: Queue = q.create_queue().unwrap();
            b.process_queue(0, std::slice::from_mut(&mut queue), &m);
        }
        let len = std::fs::metadata(d.path().join("disk.raw")).unwrap().len();
        assert_eq!(len, 16 * SECTOR, "the image never grows");
    }
}
