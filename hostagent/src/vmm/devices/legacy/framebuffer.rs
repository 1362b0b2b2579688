//! The linear framebuffer: host memory (an anonymous mapping) the VMM maps into the guest
//! as its own KVM memory slot at [`layout::FRAMEBUFFER_START`], so guest stores land in it
//! without exits, and the VMM reads it for screen dumps and the VNC console.
//!
//! The register block remembers whether the guest ever read it ([`Framebuffer::driver_seen`]):
//! until a driver has, the VNC console shows the serial console instead (see `vmm::vnc`).
//!
//! The guest discovers it through a small read-only register block at
//! [`layout::DISPLAY_REGS_START`] (32-bit little-endian registers):
//!
//! | offset | register                                   |
//! |--------|--------------------------------------------|
//! | 0x00   | magic `0x31424653` ("SFB1")                |
//! | 0x04   | framebuffer guest address, low 32 bits     |
//! | 0x08   | framebuffer guest address, high 32 bits    |
//! | 0x0c   | width, pixels                              |
//! | 0x10   | height, pixels                             |
//! | 0x14   | stride, bytes per line                     |
//! | 0x18   | format: 1 = XRGB8888 (bytes B, G, R, X)    |
//! | 0x1c   | size of the framebuffer memory, bytes      |

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vm_memory::mmap::MmapRegion;
use vm_memory::VolatileMemory;

use crate::vmm::devices::MmioDevice;
use crate::vmm::layout;

/// Register block magic, "SFB1".
pub const MAGIC: u32 = 0x3142_4653;
/// Pixel format XRGB8888.
pub const FORMAT_XRGB8888: u32 = 1;
/// Size of the register block.
pub const REGS_LEN: u64 = 0x1000;
/// Largest width or height.
pub const MAX_SIDE: u32 = 4096;

/// Why a framebuffer could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum FramebufferError {
    /// The geometry is out of range.
    #[error("a {width}x{height} framebuffer is not possible (1..={MAX_SIDE} pixels a side, at most {} MiB)", layout::FRAMEBUFFER_MAX >> 20)]
    Geometry {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
    },
    /// The mapping failed.
    #[error("cannot map the framebuffer: {0}")]
    Map(String),
    /// Reading or writing its contents failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_geometry(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?} is not a size like 640x480");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w = w.trim().parse().map_err(|_| bad())?;
    let h = h.trim().parse().map_err(|_| bad())?;
    Ok((w, h))
}

/// The framebuffer's memory and geometry.
pub struct Framebuffer {
    region: MmapRegion<()>,
    width: u32,
    height: u32,
    /// Set when the guest first reads the register block.
    driver_seen: Arc<AtomicBool>,
}

impl Framebuffer {
    /// Maps a black `width` × `height` XRGB8888 framebuffer (memory is taken lazily, as the
    /// guest touches it).
    pub fn new(width: u32, height: u32) -> Result<Self, FramebufferError> {
        let bytes = u64::from(width) * u64::from(height) * 4;
        if width == 0
            || height == 0
            || width > MAX_SIDE
            || height > MAX_SIDE
            || bytes > layout::FRAMEBUFFER_MAX
        {
            return Err(FramebufferError::Geometry { width, height });
        }
        // Whole pages: KVM memory slots are page-granular.
        let size = bytes.div_ceil(4096) * 4096;
        let size =
            usize::try_from(size).map_err(|_| FramebufferError::Geometry { width, height })?;
        let region = MmapRegion::new(size).map_err(|e| FramebufferError::Map(e.to_string()))?;
        Ok(Self {
            region,
            width,
            height,
            driver_seen: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Width, pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height, pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes per line.
    pub fn stride(&self) -> u32 {
        self.width * 4
    }

    /// Size of the mapping (whole pages), bytes.
    pub fn size(&self) -> u64 {
        self.region.size() as u64
    }

    /// Host address of the mapping (for the KVM memory slot). It stays valid for as long
    /// as `self` lives.
    pub fn host_address(&self) -> u64 {
        self.region.as_ptr() as u64
    }

    /// A copy of the visible pixels, XRGB8888 (stride = width × 4).
    pub fn pixels(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.read_pixels(&mut out);
        out
    }

    /// Copies the visible pixels into `out` (resized to fit; its allocation is reused).
    pub fn read_pixels(&self, out: &mut Vec<u8>) {
        let len = self.stride() as usize * self.height as usize;
        out.resize(len, 0);
        if let Ok(slice) = self.region.get_slice(0, len) {
            slice.copy_to(&mut out[..]);
        }
    }

    /// True once the guest has read the display registers (a driver looked for the
    /// display).
    pub fn driver_seen(&self) -> bool {
        self.driver_seen.load(Ordering::Relaxed)
    }

    /// Writes the screen as a binary PPM (P6, 8-bit RGB).
    pub fn write_ppm(&self, out: &mut impl Write) -> std::io::Result<()> {
        let px = self.pixels();
        write!(out, "P6\n{} {}\n255\n", self.width, self.height)?;
        let mut rgb = Vec::with_capacity(px.len() / 4 * 3);
        for p in px.chunks_exact(4) {
            rgb.extend_from_slice(&[p[2], p[1], p[0]]);
        }
        out.write_all(&rgb)
    }

    /// The whole mapping, for a snapshot.
    pub fn contents(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.region.size()];
        if let Ok(slice) = self.region.get_slice(0, out.len()) {
            slice.copy_to(&mut out[..]);
        }
        out
    }

    /// Loads a snapshot's contents (which must be exactly the mapping's size).
    pub fn load(&self, data: &[u8]) -> Result<(), FramebufferError> {
        if data.len() != self.region.size() {
            return Err(FramebufferError::Io {
                what: "restoring the framebuffer".into(),
                source: std::io::Error::other(format!(
                    "{} bytes saved, {} expected",
                    data.len(),
                    self.region.size()
                )),
            });
        }
        let slice = self
            .region
            .get_slice(0, data.len())
            .map_err(|e| FramebufferError::Map(e.to_string()))?;
        slice.copy_from(data);
        Ok(())
    }

    /// The register block that describes this framebuffer to the guest.
    pub fn registers(&self) -> DisplayRegisters {
        DisplayRegisters {
            driver_seen: self.driver_seen.clone(),
            values: [
                MAGIC,
                layout::FRAMEBUFFER_START as u32,
                (layout::FRAMEBUFFER_START >> 32) as u32,
                self.width,
                self.height,
                self.stride(),
                FORMAT_XRGB8888,
                self.size() as u32,
            ],
        }
    }
}

/// The read-only display registers on the MMIO bus.
pub struct DisplayRegisters {
    values: [u32; 8],
    driver_seen: Arc<AtomicBool>,
}

impl MmioDevice for DisplayRegisters {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.driver_seen.store(true, Ordering::Relaxed);
        data.fill(0);
        let bytes: Vec<u8> = self.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        for (i, b) in data.iter_mut().enumerate() {
            if let Some(v) = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| bytes.get(o))
            {
                *b = *v;
            }
        }
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_checked() {
        assert_eq!(parse_geometry("640x480"), Ok((640, 480)));
        assert!(parse_geometry("640").is_err());
        assert!(parse_geometry("ax4").is_err());
        assert!(Framebuffer::new(0, 10).is_err());
        assert!(Framebuffer::new(MAX_SIDE + 1, 10).is_err());
        assert!(Framebuffer::new(4096, 4096).is_err(), "64 MiB is too much");
        let fb = Framebuffer::new(3, 2).unwrap();
        assert_eq!((fb.stride(), fb.size()), (12, 4096));
    }

    #[test]
    fn registers_describe_it_and_ignore_writes() {
        let fb = Framebuffer::new(640, 480).unwrap();
        let mut regs = fb.registers();
        assert!(!fb.driver_seen());
        let r = |regs: &mut DisplayRegisters, off: u64| {
            let mut b = [0u8; 4];
            regs.read(off, &mut b);
            u32::from_le_bytes(b)
        };
        assert_eq!(r(&mut regs, 0), MAGIC);
        assert!(fb.driver_seen(), "a read is remembered");
        assert_eq!(r(&mut regs, 4), layout::FRAMEBUFFER_START as u32);
        assert_eq!(r(&mut regs, 0x0c), 640);
        assert_eq!(r(&mut regs, 0x10), 480);
        assert_eq!(r(&mut regs, 0x14), 2560);
        assert_eq!(r(&mut regs, 0x18), FORMAT_XRGB8888);
        regs.write(0x0c, &[1, 0, 0, 0]);
        assert_eq!(r(&mut regs, 0x0c), 640);
        assert_eq!(r(&mut regs, 0x1000), 0);
        assert_eq!(r(&mut regs, u64::MAX), 0);
    }

    #[test]
    fn ppm_has_the_pixels_in_rgb_and_contents_round_trip() {
        let fb = Framebuffer::new(2, 2).unwrap();
        let mut data = fb.contents();
        // Pixel (1, 0) red, pixel (0, 1) blue: bytes B, G, R, X.
        data[4..8].copy_from_slice(&[0, 0, 0xff, 0]);
        data[8..12].copy_from_slice(&[0xff, 0, 0, 0]);
        fb.load(&data).unwrap();
        let mut ppm = Vec::new();
        fb.write_ppm(&mut ppm).unwrap();
        let header = b"P6\n2 2\n255\n";
        assert_eq!(&ppm[..header.len()], header);
        assert_eq!(
            &ppm[header.len()..],
            &[0, 0, 0, 0xff, 0, 0, 0, 0, 0xff, 0, 0, 0]
        );
        assert_eq!(fb.contents(), data);
        assert!(fb.load(&data[..10]).is_err());
    }
}
