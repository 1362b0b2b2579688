//! Pixel conversion from the framebuffer's XRGB8888 (bytes B, G, R, X) to the client's
//! true-colour format: 8, 16 or 32 bits a pixel, either byte order, any maximum and shift
//! per channel (a shift past the pixel's width just drops that channel's bits). Each channel
//! goes through a 256-entry table, so a pixel costs three lookups and two ORs.

use super::protocol::PixelFormat;

/// Why a pixel format is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A colour-map format.
    #[error("the client asked for a colour-map pixel format; only true colour is served")]
    ColourMap,
    /// Not 8, 16 or 32 bits a pixel.
    #[error("{0} bits per pixel is not an RFB pixel size (8, 16 or 32)")]
    BitsPerPixel(u8),
}

/// Converts framebuffer pixels into one client format.
#[derive(Clone)]
pub struct Converter {
    format: PixelFormat,
    red: [u32; 256],
    green: [u32; 256],
    blue: [u32; 256],
    /// The client's format is the framebuffer's own: pixels are copied as they are.
    native: bool,
    /// ZRLE's CPIXEL: 3 bytes (Some(true): the low three, Some(false): the high three) or a
    /// whole pixel (None).
    compact: Option<bool>,
}

fn channel_table(max: u16, shift: u8) -> [u32; 256] {
    let mut t = [0u32; 256];
    for (c, v) in t.iter_mut().enumerate() {
        // Rounded scaling of 0..=255 onto 0..=max.
        let scaled = (c as u32 * u32::from(max) + 127) / 255;
        *v = scaled.checked_shl(u32::from(shift)).unwrap_or(0);
    }
    t
}

impl Converter {
    /// A converter into `format`; colour maps and odd pixel sizes are refused.
    pub fn new(format: PixelFormat) -> Result<Self, FormatError> {
        if !format.true_colour {
            return Err(FormatError::ColourMap);
        }
        if !matches!(format.bits_per_pixel, 8 | 16 | 32) {
            return Err(FormatError::BitsPerPixel(format.bits_per_pixel));
        }
        Ok(Self::build(format))
    }

    /// The converter into the framebuffer's own format (a copy).
    pub fn native() -> Self {
        Self::build(PixelFormat::NATIVE)
    }

    fn build(format: PixelFormat) -> Self {
        let mask = |max: u16, shift: u8| (u64::from(max) << shift.min(40)) & 0xffff_ffff;
        let all = mask(format.red_max, format.red_shift)
            | mask(format.green_max, format.green_shift)
            | mask(format.blue_max, format.blue_shift);
        let compact = if format.bits_per_pixel == 32 && format.depth <= 24 {
            if all & 0xff00_0000 == 0 {
                Some(true)
            } else if all & 0xff == 0 {
                Some(false)
            } else {
                None
            }
        } else {
            None
        };
        Self {
            format,
            red: channel_table(format.red_max, format.red_shift),
            green: channel_table(format.green_max, format.green_shift),
            blue: channel_table(format.blue_max, format.blue_shift),
            native: format == PixelFormat::NATIVE,
            compact,
        }
    }

    /// The client's format.
    pub fn format(&self) -> &PixelFormat {
        &self.format
    }

    /// The pixel value (in the client's format, not yet in its byte order) of one
    /// framebuffer pixel (4 bytes B, G, R, X).
    #[inline]
    pub fn value(&self, bgrx: &[u8]) -> u32 {
        self.red[usize::from(bgrx[2])]
            | self.green[usize::from(bgrx[1])]
            | self.blue[usize::from(bgrx[0])]
    }

    /// Bytes of one pixel on the wire.
    pub fn pixel_len(&self) -> usize {
        self.format.bytes_per_pixel()
    }

    /// Bytes of one ZRLE CPIXEL.
    pub fn cpixel_len(&self) -> usize {
        if self.compact.is_some() {
            3
        } else {
            self.pixel_len()
        }
    }

    /// Appends one pixel value in the client's size and byte order.
    #[inline]
    pub fn put_pixel(&self, v: u32, out: &mut Vec<u8>) {
        match (self.format.bits_per_pixel, self.format.big_endian) {
            (8, _) => out.push(v as u8),
            (16, false) => out.extend_from_slice(&(v as u16).to_le_bytes()),
            (16, true) => out.extend_from_slice(&(v as u16).to_be_bytes()),
            (_, false) => out.extend_from_slice(&v.to_le_bytes()),
            (_, true) => out.extend_from_slice(&v.to_be_bytes()),
        }
    }

    /// Appends one ZRLE CPIXEL.
    #[inline]
    pub fn put_cpixel(&self, v: u32, out: &mut Vec<u8>) {
        match (self.compact, self.format.big_endian) {
            (None, _) => self.put_pixel(v, out),
            (Some(true), false) => out.extend_from_slice(&v.to_le_bytes()[..3]),
            (Some(true), true) => out.extend_from_slice(&v.to_be_bytes()[1..]),
            (Some(false), false) => out.extend_from_slice(&v.to_le_bytes()[1..]),
            (Some(false), true) => out.extend_from_slice(&v.to_be_bytes()[..3]),
        }
    }

    /// Appends a row of framebuffer pixels (4 bytes each) as Raw pixels.
    pub fn put_row(&self, row: &[u8], out: &mut Vec<u8>) {
        if self.native {
            out.extend_from_slice(row);
            return;
        }
        out.reserve(row.len() / 4 * self.pixel_len());
        for p in row.chunks_exact(4) {
            self.put_pixel(self.value(p), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(bpp: u8, depth: u8, be: bool, max: [u16; 3], shift: [u8; 3]) -> PixelFormat {
        PixelFormat {
            bits_per_pixel: bpp,
            depth,
            big_endian: be,
            true_colour: true,
            red_max: max[0],
            green_max: max[1],
            blue_max: max[2],
            red_shift: shift[0],
            green_shift: shift[1],
            blue_shift: shift[2],
        }
    }

    fn raw(c: &Converter, px: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        c.put_row(px, &mut out);
        out
    }

    // An orange-ish pixel: R 0xff, G 0x80, B 0x00 (bytes B, G, R, X).
    const ORANGE: [u8; 4] = [0x00, 0x80, 0xff, 0x00];

    #[test]
    fn native_is_copied_and_32_bit_formats_convert_in_either_order() {
        let c = Converter::new(PixelFormat::NATIVE).unwrap();
        assert_eq!(raw(&c, &[1, 2, 3, 4]), vec![1, 2, 3, 4]);
        assert_eq!(c.cpixel_len(), 3);
        // RGBX big-endian: R in the top byte.
        let c = Converter::new(fmt(32, 24, true, [255; 3], [24, 16, 8])).unwrap();
        assert_eq!(raw(&c, &ORANGE), vec![0xff, 0x80, 0x00, 0x00]);
        // ...so the colour lives in the high three bytes: CPIXEL is those.
        let mut cp = Vec::new();
        c.put_cpixel(c.value(&ORANGE), &mut cp);
        assert_eq!(cp, vec![0xff, 0x80, 0x00]);
        // Native layout but big-endian.
        let c = Converter::new(fmt(32, 24, true, [255; 3], [16, 8, 0])).unwrap();
        assert_eq!(raw(&c, &ORANGE), vec![0x00, 0xff, 0x80, 0x00]);
        let mut cp = Vec::new();
        c.put_cpixel(c.value(&ORANGE), &mut cp);
        assert_eq!(cp, vec![0xff, 0x80, 0x00]);
        // Depth 32: CPIXEL is the whole pixel.
        let c = Converter::new(fmt(32, 32, false, [255; 3], [16, 8, 0])).unwrap();
        assert_eq!(c.cpixel_len(), 4);
    }

    #[test]
    fn sixteen_and_eight_bit_formats_scale_each_channel() {
        // RGB565 little-endian: R 31, G 32 (0x80 * 63 / 255 rounded), B 0.
        let c = Converter::new(fmt(16, 16, false, [31, 63, 31], [11, 5, 0])).unwrap();
        let v: u16 = (31 << 11) | (32 << 5);
        assert_eq!(raw(&c, &ORANGE), v.to_le_bytes().to_vec());
        let c = Converter::new(fmt(16, 16, true, [31, 63, 31], [11, 5, 0])).unwrap();
        assert_eq!(raw(&c, &ORANGE), v.to_be_bytes().to_vec());
        assert_eq!(c.cpixel_len(), 2);
        // BGR233: B in the top two bits.
        let c = Converter::new(fmt(8, 8, false, [7, 7, 3], [0, 3, 6])).unwrap();
        assert_eq!(raw(&c, &ORANGE), vec![7 | (4 << 3)]);
        assert_eq!(raw(&c, &[0xff, 0xff, 0xff, 0]), vec![0xff]);
        // Odd maxima and shifts past the pixel: no panic, the bits are dropped.
        let c = Converter::new(fmt(8, 8, false, [65535, 1, 0], [200, 7, 31])).unwrap();
        assert_eq!(raw(&c, &[0xff, 0xff, 0xff, 0]), vec![0x80]);
        let c = Converter::new(fmt(32, 8, false, [65535; 3], [16, 8, 0])).unwrap();
        assert_eq!(raw(&c, &[0xff, 0, 0, 0]).len(), 4);
    }

    #[test]
    fn colour_maps_and_odd_sizes_are_refused() {
        let mut f = PixelFormat::NATIVE;
        f.true_colour = false;
        assert_eq!(Converter::new(f).err(), Some(FormatError::ColourMap));
        for bpp in [0, 1, 24, 64, 255] {
            let f = fmt(bpp, 24, false, [255; 3], [16, 8, 0]);
            assert_eq!(
                Converter::new(f).err(),
                Some(FormatError::BitsPerPixel(bpp))
            );
        }
    }
}
