//! A fuzz driver for the virtio-mmio transport with virtio-net behind it: arbitrary bytes
//! become a sequence of guest actions (register reads and writes, stores into guest memory
//! where the rings and buffers live, queue notifies) and backend events (frames arriving on
//! the "tap", the tap becoming readable). Whatever the bytes, the VMM must not panic, and
//! no frame longer than a virtio-net frame may leave the device.
//!
//! Used by a unit test (a fixed-seed run of many thousands of inputs on the stable
//! toolchain) and by the libFuzzer target in `fuzz/` (feature `fuzz`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::mmio::MmioTransport;
use super::net::{Net, HDR_LEN, MAX_FRAME};
use crate::net::mac::MacAddr;
use crate::net::FrameIo;
use crate::vmm::devices::MmioDevice;

/// Guest memory size of a fuzz run (small, so random addresses often hit it).
const MEM: u64 = 0x1_0000;

/// Registers worth hitting (random offsets are tried too).
const REGS: [u64; 20] = [
    0x000, 0x010, 0x014, 0x020, 0x024, 0x030, 0x034, 0x038, 0x044, 0x050, 0x060, 0x064, 0x070,
    0x080, 0x084, 0x090, 0x094, 0x0a0, 0x0a4, 0x100,
];

/// A backend that hands out queued frames and checks what it is given.
#[derive(Clone, Default)]
struct Backend(Arc<Mutex<(VecDeque<Vec<u8>>, u64)>>);

impl FrameIo for Backend {
    fn recv_frame(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match s.0.pop_front() {
            Some(f) => {
                let n = f.len().min(buf.len());
                buf[..n].copy_from_slice(&f[..n]);
                Ok(n)
            }
            None => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }

    fn send_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        assert!(
            frame.len() <= MAX_FRAME,
            "a {} byte frame left",
            frame.len()
        );
        self.0.lock().unwrap_or_else(|p| p.into_inner()).1 += 1;
        Ok(())
    }
}

/// Reads the fuzz input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
}

fn write_reg(t: &mut MmioTransport, offset: u64, v: u32) {
    t.write(offset, &v.to_le_bytes());
}

/// Runs one input; returns the frames the device sent to the backend.
pub fn run(data: &[u8]) -> u64 {
    let Ok(mem) = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]) else {
        return 0;
    };
    let Ok(irq) = EventFd::new(libc::EFD_NONBLOCK) else {
        return 0;
    };
    let backend = Backend::default();
    let net = Net::new(Box::new(backend.clone()), MacAddr([0x52, 0x54, 0, 0, 0, 1]));
    let mut t = MmioTransport::new(Box::new(net), Arc::new(mem.clone()), irq);
    let mut input = Input(data);
    while let Some(op) = input.byte() {
        match op % 8 {
            0 => {
                let Some(sel) = input.byte() else { break };
                let offset = if sel & 0x80 == 0 {
                    REGS[usize::from(sel) % REGS.len()]
                } else {
                    u64::from(input.u16().unwrap_or(0))
                };
                let v = input.u32().unwrap_or(0);
                write_reg(&mut t, offset, v);
            }
            1 => {
                let offset = u64::from(input.u16().unwrap_or(0));
                let len = usize::from(input.byte().unwrap_or(4) % 9);
                let mut b = vec![0u8; len];
                t.read(offset, &mut b);
            }
            2 => {
                let addr = u64::from(input.u16().unwrap_or(0));
                let len = usize::from(input.byte().unwrap_or(0));
                let b = input.bytes(len).to_vec();
                let _ = mem.write_slice(&b, GuestAddress(addr));
            }
            3 => {
                let len = usize::from(input.u16().unwrap_or(0)) % (MAX_FRAME + 100);
                let mut f = input.bytes(len).to_vec();
                f.resize(len, 0xab);
                backend
                    .0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .0
                    .push_back(f);
            }
            4 => t.backend_ready(),
            5 => {
                // The whole driver set-up at once, with fuzzed ring addresses and sizes.
                write_reg(&mut t, 0x070, 0);
                write_reg(&mut t, 0x070, 1 | 2 | 8);
                for q in 0..2u32 {
                    write_reg(&mut t, 0x030, q);
                    write_reg(&mut t, 0x038, u32::from(input.byte().unwrap_or(8)));
                    for reg in [0x080, 0x090, 0x0a0] {
                        write_reg(&mut t, reg, u32::from(input.u16().unwrap_or(0)));
                    }
                    write_reg(&mut t, 0x044, 1);
                }
                write_reg(&mut t, 0x070, 1 | 2 | 8 | 4);
            }
            6 => {
                // A well-formed descriptor at a fuzzed place (so chains get deep often).
                let at = u64::from(input.u16().unwrap_or(0)) & !0xf;
                let addr = u64::from(input.u16().unwrap_or(0));
                let len = u32::from(input.u16().unwrap_or(HDR_LEN as u16));
                let flags = u16::from(input.byte().unwrap_or(0) % 8);
                let next = u16::from(input.byte().unwrap_or(0));
                let _ = mem.write_obj(addr, GuestAddress(at));
                let _ = mem.write_obj(len, GuestAddress(at + 8));
                let _ = mem.write_obj(flags, GuestAddress(at + 12));
                let _ = mem.write_obj(next, GuestAddress(at + 14));
            }
            _ => {
                let q = u32::from(input.byte().unwrap_or(0) % 3);
                write_reg(&mut t, 0x050, q);
            }
        }
    }
    let sent = backend.0.lock().unwrap_or_else(|p| p.into_inner()).1;
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Inputs a fuzzer would take a while to find: a proper set-up with the rings at fixed
    /// places, then random traffic.
    fn structured(rng: &mut rand::rngs::StdRng) -> Vec<u8> {
        let mut d = vec![5u8];
        for base in [0x1000u16, 0x2000] {
            d.push(8);
            for off in [0u16, 0x200, 0x400] {
                d.extend_from_slice(&(base + off).to_le_bytes());
            }
        }
        if rng.gen() {
            // One good transmit chain and one good receive buffer, then a frame arrives.
            let good = |d: &mut Vec<u8>, table: u16, flags: u8| {
                d.push(6);
                d.extend_from_slice(&table.to_le_bytes());
                d.extend_from_slice(&0x8000u16.to_le_bytes());
                d.extend_from_slice(&72u16.to_le_bytes());
                d.extend_from_slice(&[flags, 0]);
                for (at, v) in [(table + 0x204, 0u16), (table + 0x202, 1)] {
                    d.extend_from_slice(&[2]);
                    d.extend_from_slice(&at.to_le_bytes());
                    d.push(2);
                    d.extend_from_slice(&v.to_le_bytes());
                }
            };
            good(&mut d, 0x2000, 0);
            d.extend_from_slice(&[7, 1]);
            good(&mut d, 0x1000, 2);
            d.extend_from_slice(&[3, 60, 0]);
            d.push(4);
        }
        let n = rng.gen_range(0..64);
        for _ in 0..n {
            let mut op = vec![rng.gen_range(0u8..8)];
            let len = rng.gen_range(0..12);
            op.extend((0..len).map(|_| rng.gen::<u8>()));
            if op[0] == 2 && op.len() >= 4 {
                // Aim stores at the avail rings (flags, idx, entries).
                let at: u16 = if rng.gen() { 0x1200 } else { 0x2200 } + 2 * rng.gen_range(0..6);
                op[1..3].copy_from_slice(&at.to_le_bytes());
                op[3] = (op.len() - 4) as u8;
            }
            if op[0] == 6 && op.len() >= 3 {
                // Aim descriptors at the two tables.
                let at: u16 = if rng.gen() { 0x1000 } else { 0x2000 } + 16 * rng.gen_range(0..8);
                op[1..3].copy_from_slice(&at.to_le_bytes());
            }
            d.extend(op);
        }
        d
    }

    /// The stable-toolchain fuzz run: 20,000 inputs (half raw bytes, half structured) from a
    /// fixed seed; `STRATA_FUZZ_ITERS` raises the count.
    #[test]
    fn survives_arbitrary_inputs() {
        let iters: usize = std::env::var("STRATA_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x57a7a);
        let mut sent = 0;
        for i in 0..iters {
            let data = if i % 2 == 0 {
                let len = rng.gen_range(0..512);
                (0..len).map(|_| rng.gen::<u8>()).collect()
            } else {
                structured(&mut rng)
            };
            sent += run(&data);
        }
        assert!(
            sent > 0,
            "some inputs got frames out: the driver path was reached"
        );
    }
}
