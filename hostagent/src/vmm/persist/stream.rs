//! A snapshot as one byte stream, written to any [`Write`] and read from any [`Read`]: a file
//! today, a socket for live migration later. Layout (integers little-endian):
//!
//! ```text
//! "STRATA-S" magic, u32 format version, u32 chunk size
//! u64 length, the state as JSON ([`Snapshot`]: vCPUs, interrupt controllers, devices)
//! u64 length, the framebuffer's contents (0 when the VM has none)
//! u64 guest memory size, then per chunk of guest memory in address order:
//!     0x00 (all zero: nothing follows) or 0x01 + the chunk's bytes
//! "END!" trailer
//! ```
//!
//! Zero chunks cost one byte, so the stream of a mostly untouched guest is small.

use std::io::{Read, Write};

use vm_memory::{
    Bytes, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress,
};

use super::{PersistError, Snapshot, SNAPSHOT_VERSION};

/// The first bytes of a stream.
pub const MAGIC: &[u8; 8] = b"STRATA-S";
/// The last bytes of a stream.
pub const TRAILER: &[u8; 4] = b"END!";
/// Stream format version.
pub const STREAM_VERSION: u32 = 1;
/// Bytes of guest memory per chunk.
pub const CHUNK: usize = 64 << 10;
/// Largest state JSON accepted, bytes.
pub const MAX_STATE: u64 = 64 << 20;
/// Largest framebuffer accepted, bytes.
pub const MAX_FRAMEBUFFER: u64 = 256 << 20;

const ZERO: u8 = 0;
const DATA: u8 = 1;

fn io(what: &'static str) -> impl Fn(std::io::Error) -> PersistError {
    move |source| PersistError::Io {
        what: what.to_string(),
        source,
    }
}

/// Writes a whole snapshot; returns the bytes written.
pub fn write<W: Write>(
    out: &mut W,
    snapshot: &Snapshot,
    framebuffer: Option<&[u8]>,
    mem: &GuestMemoryMmap,
) -> Result<u64, PersistError> {
    let mut out = Counting { inner: out, n: 0 };
    let err = io("writing the snapshot stream");
    out.write_all(MAGIC).map_err(&err)?;
    out.write_all(&STREAM_VERSION.to_le_bytes()).map_err(&err)?;
    out.write_all(&(CHUNK as u32).to_le_bytes()).map_err(&err)?;
    let state = serde_json::to_vec(snapshot).map_err(|e| PersistError::Format(e.to_string()))?;
    out.write_all(&(state.len() as u64).to_le_bytes())
        .map_err(&err)?;
    out.write_all(&state).map_err(&err)?;
    let fb = framebuffer.unwrap_or(&[]);
    out.write_all(&(fb.len() as u64).to_le_bytes())
        .map_err(&err)?;
    out.write_all(fb).map_err(&err)?;
    let total: u64 = mem.iter().map(|r| r.len()).sum();
    out.write_all(&total.to_le_bytes()).map_err(&err)?;
    let mut buf = vec![0u8; CHUNK];
    let zeros = vec![0u8; CHUNK];
    for region in mem.iter() {
        let len = region.len() as usize;
        let mut at = 0;
        while at < len {
            let n = CHUNK.min(len - at);
            region.read_slice(&mut buf[..n], MemoryRegionAddress(at as u64))?;
            // A slice comparison is a memcmp: fast even in a debug build.
            if buf[..n] == zeros[..n] {
                out.write_all(&[ZERO]).map_err(&err)?;
            } else {
                out.write_all(&[DATA]).map_err(&err)?;
                out.write_all(&buf[..n]).map_err(&err)?;
            }
            at += n;
        }
    }
    out.write_all(TRAILER).map_err(&err)?;
    out.flush().map_err(&err)?;
    Ok(out.n)
}

/// Reads a stream's state and framebuffer (everything before guest memory), so the caller
/// can build a VM of the right size before [`read_memory`] fills it.
pub fn read_state<R: Read>(input: &mut R) -> Result<(Snapshot, Vec<u8>), PersistError> {
    let err = io("reading the snapshot stream (is it complete?)");
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic).map_err(&err)?;
    if &magic != MAGIC {
        return Err(PersistError::Format(
            "not a strata-vmx snapshot stream".into(),
        ));
    }
    let version = read_u32(input).map_err(&err)?;
    if version != STREAM_VERSION {
        return Err(PersistError::Format(format!(
            "snapshot stream version {version} is not {STREAM_VERSION}"
        )));
    }
    let chunk = read_u32(input).map_err(&err)?;
    if chunk as usize != CHUNK {
        return Err(PersistError::Format(format!(
            "snapshot stream chunk size {chunk} is not {CHUNK}"
        )));
    }
    let len = read_u64(input).map_err(&err)?;
    if len > MAX_STATE {
        return Err(PersistError::Format(format!(
            "snapshot state of {len} bytes is larger than {MAX_STATE}"
        )));
    }
    let mut state = vec![0u8; len as usize];
    input.read_exact(&mut state).map_err(&err)?;
    let snapshot: Snapshot = serde_json::from_slice(&state)
        .map_err(|e| PersistError::Format(format!("snapshot state: {e}")))?;
    if snapshot.version != SNAPSHOT_VERSION {
        return Err(PersistError::Format(format!(
            "snapshot version {} is not {SNAPSHOT_VERSION}",
            snapshot.version
        )));
    }
    if snapshot.vcpus.is_empty() {
        return Err(PersistError::Format("the snapshot has no vCPUs".into()));
    }
    let fb_len = read_u64(input).map_err(&err)?;
    if fb_len > MAX_FRAMEBUFFER {
        return Err(PersistError::Format(format!(
            "snapshot framebuffer of {fb_len} bytes is larger than {MAX_FRAMEBUFFER}"
        )));
    }
    let mut fb = vec![0u8; fb_len as usize];
    input.read_exact(&mut fb).map_err(&err)?;
    Ok((snapshot, fb))
}

/// Fills guest memory from the rest of the stream (after [`read_state`]) and checks the
/// trailer; the memory size must match the stream's.
pub fn read_memory<R: Read>(input: &mut R, mem: &GuestMemoryMmap) -> Result<(), PersistError> {
    let err = io("reading guest memory from the snapshot stream (is it complete?)");
    let total = read_u64(input).map_err(&err)?;
    let have: u64 = mem.iter().map(|r| r.len()).sum();
    if total != have {
        return Err(PersistError::Format(format!(
            "the snapshot holds {total} bytes of guest memory, the VM has {have}"
        )));
    }
    let mut buf = vec![0u8; CHUNK];
    let zeros = vec![0u8; CHUNK];
    for region in mem.iter() {
        let len = region.len() as usize;
        let mut at = 0;
        while at < len {
            let n = CHUNK.min(len - at);
            let mut tag = [0u8; 1];
            input.read_exact(&mut tag).map_err(&err)?;
            match tag[0] {
                ZERO => {
                    // Reading fresh anonymous memory maps the shared zero page; writing
                    // would allocate it. Write only where something is there.
                    region.read_slice(&mut buf[..n], MemoryRegionAddress(at as u64))?;
                    if buf[..n] != zeros[..n] {
                        region.write_slice(&zeros[..n], MemoryRegionAddress(at as u64))?;
                    }
                }
                DATA => {
                    input.read_exact(&mut buf[..n]).map_err(&err)?;
                    region.write_slice(&buf[..n], MemoryRegionAddress(at as u64))?;
                }
                other => {
                    return Err(PersistError::Format(format!(
                        "bad memory chunk tag {other:#x} at offset {at} of a region"
                    )))
                }
            }
            at += n;
        }
    }
    let mut end = [0u8; 4];
    input.read_exact(&mut end).map_err(&err)?;
    if &end != TRAILER {
        return Err(PersistError::Format(
            "the snapshot stream does not end where it should".into(),
        ));
    }
    Ok(())
}

fn read_u32<R: Read>(r: &mut R) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64<R: Read>(r: &mut R) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Counts what passes through a writer.
struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{SerialSnapshot, VcpuState, VmState};
    use super::*;
    use vm_memory::GuestAddress;

    fn snapshot(memory_mib: u64) -> Snapshot {
        Snapshot {
            version: SNAPSHOT_VERSION,
            name: "s".into(),
            memory_mib,
            vm: VmState {
                pic_master: Default::default(),
                pic_slave: Default::default(),
                ioapic: Default::default(),
                pit: Default::default(),
                clock: Default::default(),
            },
            vcpus: vec![VcpuState {
                regs: kvm_bindings::kvm_regs {
                    rip: 0x1234_5678,
                    ..Default::default()
                },
                sregs: Default::default(),
                xsave: Default::default(),
                xcrs: None,
                debugregs: Default::default(),
                lapic: Default::default(),
                msrs: vec![kvm_bindings::kvm_msr_entry {
                    index: 0x10,
                    data: 99,
                    ..Default::default()
                }],
                mp_state: Default::default(),
                events: Default::default(),
            }],
            serial: SerialSnapshot {
                baud_divisor_low: 1,
                baud_divisor_high: 0,
                interrupt_enable: 0,
                interrupt_identification: 1,
                line_control: 3,
                line_status: 0x60,
                modem_control: 0,
                modem_status: 0,
                scratch: 0,
                in_buffer: b"typed".to_vec(),
            },
            power_pending: 0,
            disk: None,
            hot_disk: None,
            net: None,
            display: None,
            keyboard: None,
        }
    }

    fn memory() -> GuestMemoryMmap {
        let m = crate::vmm::vstate::memory::create_guest_memory(4 << 20).unwrap();
        m.write_slice(b"hello", GuestAddress(0x1234)).unwrap();
        m.write_slice(b"end", GuestAddress((4 << 20) - 3)).unwrap();
        m
    }

    #[test]
    fn a_snapshot_round_trips_through_a_buffer() {
        let a = memory();
        let mut buf = Vec::new();
        let n = write(&mut buf, &snapshot(4), Some(b"pixels"), &a).unwrap();
        assert_eq!(n, buf.len() as u64);
        assert!(
            buf.len() < (1 << 20),
            "zero chunks are one byte each: {} bytes for 4 MiB",
            buf.len()
        );
        let mut input = buf.as_slice();
        let (s, fb) = read_state(&mut input).unwrap();
        assert_eq!(s.vcpus[0].regs.rip, 0x1234_5678);
        assert_eq!(s.vcpus[0].msrs[0].data, 99);
        assert_eq!(s.serial.in_buffer, b"typed");
        assert_eq!(fb, b"pixels");
        let b = crate::vmm::vstate::memory::create_guest_memory(4 << 20).unwrap();
        b.write_slice(b"stale", GuestAddress(0x8000)).unwrap();
        read_memory(&mut input, &b).unwrap();
        assert!(input.is_empty());
        let mut got = [0u8; 5];
        b.read_slice(&mut got, GuestAddress(0x1234)).unwrap();
        assert_eq!(&got, b"hello");
        b.read_slice(&mut got, GuestAddress(0x8000)).unwrap();
        assert_eq!(got, [0; 5], "zero chunks clear what was there");
        let mut end = [0u8; 3];
        b.read_slice(&mut end, GuestAddress((4 << 20) - 3)).unwrap();
        assert_eq!(&end, b"end");
    }

    #[test]
    fn a_snapshot_round_trips_through_a_pipe() {
        let (mut rx, mut tx) = std::io::pipe().unwrap();
        let writer = std::thread::spawn(move || {
            let a = memory();
            write(&mut tx, &snapshot(4), None, &a).unwrap()
        });
        let (s, fb) = read_state(&mut rx).unwrap();
        assert_eq!(s.memory_mib, 4);
        assert!(fb.is_empty());
        let b = crate::vmm::vstate::memory::create_guest_memory(4 << 20).unwrap();
        read_memory(&mut rx, &b).unwrap();
        writer.join().unwrap();
        let mut got = [0u8; 5];
        b.read_slice(&mut got, GuestAddress(0x1234)).unwrap();
        assert_eq!(&got, b"hello");
    }

    #[test]
    fn damaged_streams_are_refused() {
        let a = memory();
        let mut buf = Vec::new();
        write(&mut buf, &snapshot(4), None, &a).unwrap();
        let b = crate::vmm::vstate::memory::create_guest_memory(4 << 20).unwrap();
        // Truncated anywhere.
        for cut in [4, 20, buf.len() / 2, buf.len() - 1] {
            let mut input = &buf[..cut];
            let r = read_state(&mut input).and_then(|_| read_memory(&mut input, &b));
            assert!(r.is_err(), "cut at {cut}");
        }
        // Wrong magic.
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert!(read_state(&mut bad.as_slice()).is_err());
        // A different memory size.
        let mut input = buf.as_slice();
        read_state(&mut input).unwrap();
        let small = crate::vmm::vstate::memory::create_guest_memory(2 << 20).unwrap();
        let e = read_memory(&mut input, &small).unwrap_err().to_string();
        assert!(e.contains("guest memory"), "{e}");
        // A bad chunk tag.
        let mut bad = buf.clone();
        let state_len = u64::from_le_bytes(bad[16..24].try_into().unwrap()) as usize;
        let first_tag = 24 + state_len + 8 + 8;
        bad[first_tag] = 7;
        let mut input = bad.as_slice();
        read_state(&mut input).unwrap();
        assert!(read_memory(&mut input, &b).is_err());
    }
}
