//! Emulated devices and the port-I/O bus the vCPUs dispatch to.

pub mod legacy;
pub mod virtio;

use std::sync::{Arc, Mutex};

/// A device on the port-I/O bus. Offsets are relative to the device's base port.
pub trait PioDevice: Send {
    /// A guest `in` at `offset`; fill `data`.
    fn read(&mut self, offset: u16, data: &mut [u8]);
    /// A guest `out` at `offset`.
    fn write(&mut self, offset: u16, data: &[u8]);
}

/// A device shared between the vCPU threads and the VMM's other threads.
pub type SharedDevice = Arc<Mutex<dyn PioDevice>>;

struct PioRange {
    base: u16,
    len: u16,
    device: SharedDevice,
}

/// Why a device could not be placed on the bus.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The range overlaps one already taken, or is empty, or wraps.
    #[error("bus range {base:#x}+{len:#x} is empty or overlaps another device")]
    Overlap {
        /// First port or address.
        base: u64,
        /// Number of ports or bytes.
        len: u64,
    },
}

/// The port-I/O bus: non-overlapping port ranges, each owned by one device.
#[derive(Default)]
pub struct PioBus {
    ranges: Vec<PioRange>,
}

impl PioBus {
    /// Places `device` at ports `base..base + len`.
    pub fn insert(&mut self, base: u16, len: u16, device: SharedDevice) -> Result<(), BusError> {
        let end = u32::from(base) + u32::from(len);
        let clash = self.ranges.iter().any(|r| {
            let r_end = u32::from(r.base) + u32::from(r.len);
            u32::from(base) < r_end && u32::from(r.base) < end
        });
        if len == 0 || end > 0x1_0000 || clash {
            return Err(BusError::Overlap {
                base: base.into(),
                len: len.into(),
            });
        }
        self.ranges.push(PioRange { base, len, device });
        Ok(())
    }

    fn find(&self, port: u16) -> Option<(&SharedDevice, u16)> {
        self.ranges
            .iter()
            .find(|r| port >= r.base && u32::from(port) < u32::from(r.base) + u32::from(r.len))
            .map(|r| (&r.device, port - r.base))
    }

    /// Dispatches a guest `in`; unknown ports read as all ones (floating bus). Returns
    /// whether a device answered.
    pub fn read(&self, port: u16, data: &mut [u8]) -> bool {
        match self.find(port) {
            Some((dev, offset)) => {
                dev.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches a guest `out`; writes to unknown ports are dropped. Returns whether a
    /// device took it.
    pub fn write(&self, port: u16, data: &[u8]) -> bool {
        match self.find(port) {
            Some((dev, offset)) => {
                dev.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// A device on the MMIO bus. Offsets are relative to the device's base address.
pub trait MmioDevice: Send {
    /// A guest read at `offset`; fill `data`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A guest write at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// An MMIO device shared between the vCPU threads.
pub type SharedMmioDevice = Arc<Mutex<dyn MmioDevice>>;

/// The MMIO bus: non-overlapping address ranges (base, length), each owned by one device.
#[derive(Default)]
pub struct MmioBus {
    ranges: Vec<(u64, u64, SharedMmioDevice)>,
}

impl MmioBus {
    /// Places `device` at `base..base + len`.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        device: SharedMmioDevice,
    ) -> Result<(), BusError> {
        let end = base.checked_add(len);
        let clash = self
            .ranges
            .iter()
            .any(|(b, l, _)| end.is_some_and(|e| base < b + l && *b < e));
        if len == 0 || end.is_none() || clash {
            return Err(BusError::Overlap { base, len });
        }
        self.ranges.push((base, len, device));
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(&SharedMmioDevice, u64)> {
        self.ranges
            .iter()
            .find(|(b, l, _)| addr >= *b && addr - b < *l)
            .map(|(b, _, d)| (d, addr - b))
    }

    /// Dispatches a guest read; unknown addresses read as all ones.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((d, off)) => {
                d.lock().unwrap_or_else(|p| p.into_inner()).read(off, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches a guest write; writes to unknown addresses are dropped.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((d, off)) => {
                d.lock().unwrap_or_else(|p| p.into_inner()).write(off, data);
                true
            }
            None => false,
        }
    }

    /// True when no device is on the bus.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u16, Vec<u8>)>,
    }

    impl PioDevice for Recorder {
        fn read(&mut self, offset: u16, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u16, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_range_and_refuses_overlaps() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = PioBus::default();
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        assert!(bus.insert(0x3ff, 1, dev.clone()).is_err());
        assert!(bus.insert(0x3f0, 9, dev.clone()).is_err());
        assert!(bus.insert(0x10, 0, dev.clone()).is_err());
        assert!(bus.insert(0xffff, 2, dev.clone()).is_err());
        bus.insert(0x400, 1, dev.clone()).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b, [5]);
        assert!(!bus.read(0x3f7, &mut b));
        assert_eq!(b, [0xff]);
        assert!(bus.write(0x3f8, b"a"));
        assert!(!bus.write(0x80, &[1]));
        assert_eq!(dev.lock().unwrap().writes, vec![(0, vec![b'a'])]);
    }

    struct Mem(Vec<u8>);

    impl MmioDevice for Mem {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = self.0.get(offset as usize + i).copied().unwrap_or(0);
            }
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            for (i, b) in data.iter().enumerate() {
                if let Some(slot) = self.0.get_mut(offset as usize + i) {
                    *slot = *b;
                }
            }
        }
    }

    #[test]
    fn mmio_bus_dispatches_and_refuses_overlaps() {
        let dev: SharedMmioDevice = Arc::new(Mutex::new(Mem(vec![0; 16])));
        let mut bus = MmioBus::default();
        assert!(bus.is_empty());
        bus.insert(0xd000_0000, 0x1000, dev.clone()).unwrap();
        assert!(bus.insert(0xd000_0fff, 1, dev.clone()).is_err());
        assert!(bus.insert(u64::MAX, 2, dev.clone()).is_err());
        assert!(bus.insert(0xd000_1000, 0, dev.clone()).is_err());
        assert!(bus.write(0xd000_0004, &[1, 2, 3, 4]));
        let mut b = [0u8; 4];
        assert!(bus.read(0xd000_0004, &mut b));
        assert_eq!(b, [1, 2, 3, 4]);
        assert!(!bus.read(0xd000_1000, &mut b));
        assert_eq!(b, [0xff; 4]);
    }
}
