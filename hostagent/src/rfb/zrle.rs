//! ZRLE (RFC 6143 §7.7.6): a rectangle is cut into 64x64 tiles, left to right, top to
//! bottom; each tile is written in whichever subencoding is smallest — solid, packed
//! palette (2–16 colours), plain RLE, palette RLE (up to 127 colours) or raw CPIXELs — and
//! the tile data goes through one zlib stream that lives as long as the connection (the
//! client keeps the matching inflater), flushed at the end of each rectangle.

use flate2::{Compress, Compression, FlushCompress};

use super::pixel::Converter;
use super::protocol::Rect;

/// Tile side.
pub const TILE: u16 = 64;

/// Subencoding: raw CPIXELs.
const RAW: u8 = 0;
/// Subencoding: one colour.
const SOLID: u8 = 1;
/// Subencoding: plain RLE.
const PLAIN_RLE: u8 = 128;
/// Most palette entries of palette RLE.
const MAX_PALETTE: usize = 127;

/// Why a rectangle could not be compressed.
#[derive(Debug, thiserror::Error)]
#[error("zlib failed: {0}")]
pub struct ZrleError(String);

/// A small open-addressing set of pixel values, up to [`MAX_PALETTE`] of them.
struct Palette {
    slots: [u32; 256],
    index: [u8; 256],
    used: [bool; 256],
    colours: Vec<u32>,
}

impl Palette {
    fn new() -> Self {
        Self {
            slots: [0; 256],
            index: [0; 256],
            used: [false; 256],
            colours: Vec::with_capacity(MAX_PALETTE),
        }
    }

    fn clear(&mut self) {
        self.used = [false; 256];
        self.colours.clear();
    }

    fn slot(v: u32) -> usize {
        (v.wrapping_mul(0x9e37_79b1) >> 24) as usize
    }

    /// Adds `v`; false when the palette is full and `v` is new.
    fn insert(&mut self, v: u32) -> bool {
        let mut i = Self::slot(v);
        loop {
            if !self.used[i] {
                if self.colours.len() >= MAX_PALETTE {
                    return false;
                }
                self.used[i] = true;
                self.slots[i] = v;
                self.index[i] = self.colours.len() as u8;
                self.colours.push(v);
                return true;
            }
            if self.slots[i] == v {
                return true;
            }
            i = (i + 1) & 255;
        }
    }

    /// The index of a colour that was inserted.
    fn lookup(&self, v: u32) -> u8 {
        let mut i = Self::slot(v);
        // At most 127 of 256 slots are used, so an empty slot ends every probe.
        while self.used[i] {
            if self.slots[i] == v {
                return self.index[i];
            }
            i = (i + 1) & 255;
        }
        0
    }
}

/// Appends a ZRLE run length (length − 1 as 255s and a final byte below 255).
fn put_run(len: usize, out: &mut Vec<u8>) {
    let mut rest = len - 1;
    while rest >= 255 {
        out.push(255);
        rest -= 255;
    }
    out.push(rest as u8);
}

fn run_bytes(len: usize) -> usize {
    (len - 1) / 255 + 1
}

/// The per-connection ZRLE encoder.
pub struct ZrleEncoder {
    zlib: Compress,
    /// Uncompressed tile data of the rectangle being encoded.
    raw: Vec<u8>,
    /// Pixel values of the tile being encoded.
    tile: Vec<u32>,
    palette: Palette,
}

impl Default for ZrleEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ZrleEncoder {
    /// A fresh zlib stream (level 1: the CPU is shared with the guest; the tile
    /// subencodings have already taken out most of the redundancy).
    pub fn new() -> Self {
        Self {
            zlib: Compress::new(Compression::new(1), true),
            raw: Vec::new(),
            tile: Vec::with_capacity(usize::from(TILE) * usize::from(TILE)),
            palette: Palette::new(),
        }
    }

    /// Appends the rectangle's ZRLE data (u32 length + zlib bytes) to `out`. `pixels` is
    /// the XRGB8888 frame, `stride` bytes a line; `rect` must lie inside it.
    pub fn encode(
        &mut self,
        pixels: &[u8],
        stride: usize,
        rect: Rect,
        conv: &Converter,
        out: &mut Vec<u8>,
    ) -> Result<(), ZrleError> {
        self.raw.clear();
        let mut ty = 0;
        while ty < rect.h {
            let th = TILE.min(rect.h - ty);
            let mut tx = 0;
            while tx < rect.w {
                let tw = TILE.min(rect.w - tx);
                self.tile.clear();
                for y in 0..th {
                    let row =
                        (usize::from(rect.y + ty + y)) * stride + usize::from(rect.x + tx) * 4;
                    for p in pixels[row..row + usize::from(tw) * 4].chunks_exact(4) {
                        self.tile.push(conv.value(p));
                    }
                }
                Self::encode_tile(&self.tile, &mut self.palette, tw, th, conv, &mut self.raw);
                tx += tw;
            }
            ty += th;
        }
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        self.compress(out)?;
        let len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Deflates `self.raw` onto `out` with a sync flush: done once all input is in and a
    /// call left spare room in `out` (so the flush was written whole).
    fn compress(&mut self, out: &mut Vec<u8>) -> Result<(), ZrleError> {
        let mut input = &self.raw[..];
        loop {
            out.reserve(input.len() / 2 + 1024);
            let before = self.zlib.total_in();
            self.zlib
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| ZrleError(e.to_string()))?;
            let took = (self.zlib.total_in() - before) as usize;
            input = &input[took..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }

    fn encode_tile(
        tile: &[u32],
        palette: &mut Palette,
        w: u16,
        h: u16,
        conv: &Converter,
        out: &mut Vec<u8>,
    ) {
        let cp = conv.cpixel_len();
        let n = tile.len();
        palette.clear();
        let mut plain_rle = 1usize;
        let mut palette_rle = 1usize;
        let mut fits = true;
        let mut start = 0;
        for i in 0..=n {
            if i < n && i > start && tile[i] == tile[start] {
                continue;
            }
            if i > start {
                let len = i - start;
                plain_rle += cp + run_bytes(len);
                palette_rle += if len == 1 { 1 } else { 1 + run_bytes(len) };
                if fits && !palette.insert(tile[start]) {
                    fits = false;
                }
            }
            start = i;
        }
        let colours = palette.colours.len();
        if fits && colours == 1 {
            out.push(SOLID);
            conv.put_cpixel(tile[0], out);
            return;
        }
        let raw = 1 + n * cp;
        let mut best = (raw, RAW);
        if fits {
            palette_rle += colours * cp;
            if palette_rle < best.0 {
                best = (palette_rle, 128 + colours as u8);
            }
            if colours <= 16 {
                let bits = match colours {
                    2 => 1,
                    3..=4 => 2,
                    _ => 4,
                };
                let packed =
                    1 + colours * cp + usize::from(h) * (usize::from(w) * bits).div_ceil(8);
                if packed < best.0 {
                    best = (packed, colours as u8);
                }
            }
        }
        if plain_rle < best.0 {
            best = (plain_rle, PLAIN_RLE);
        }
        let sub = best.1;
        out.push(sub);
        match sub {
            RAW => {
                for v in tile {
                    conv.put_cpixel(*v, out);
                }
            }
            PLAIN_RLE => {
                for (v, len) in Runs::new(tile) {
                    conv.put_cpixel(v, out);
                    put_run(len, out);
                }
            }
            2..=16 => {
                for c in &palette.colours {
                    conv.put_cpixel(*c, out);
                }
                let bits = match sub {
                    2 => 1,
                    3..=4 => 2,
                    _ => 4,
                };
                for row in tile.chunks(usize::from(w)) {
                    let mut byte = 0u8;
                    let mut used = 0;
                    for v in row {
                        byte = (byte << bits) | palette.lookup(*v);
                        used += bits;
                        if used == 8 {
                            out.push(byte);
                            byte = 0;
                            used = 0;
                        }
                    }
                    if used > 0 {
                        out.push(byte << (8 - used));
                    }
                }
            }
            _ => {
                for c in &palette.colours {
                    conv.put_cpixel(*c, out);
                }
                for (v, len) in Runs::new(tile) {
                    let i = palette.lookup(v);
                    if len == 1 {
                        out.push(i);
                    } else {
                        out.push(i | 0x80);
                        put_run(len, out);
                    }
                }
            }
        }
    }
}

/// Runs of equal values: (value, length).
struct Runs<'a> {
    data: &'a [u32],
}

impl<'a> Runs<'a> {
    fn new(data: &'a [u32]) -> Self {
        Self { data }
    }
}

impl Iterator for Runs<'_> {
    type Item = (u32, usize);

    fn next(&mut self) -> Option<(u32, usize)> {
        let (&v, rest) = self.data.split_first()?;
        let len = 1 + rest.iter().take_while(|x| **x == v).count();
        self.data = &self.data[len..];
        Some((v, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfb::client::Decoder;
    use crate::rfb::protocol::PixelFormat;

    /// Encodes `rect` of a `w`-wide frame and decodes it back with the test client.
    fn round_trip(
        enc: &mut ZrleEncoder,
        dec: &mut Decoder,
        frame: &[u8],
        w: u16,
        rect: Rect,
    ) -> usize {
        let conv = Converter::new(PixelFormat::NATIVE).unwrap();
        let mut out = Vec::new();
        enc.encode(frame, usize::from(w) * 4, rect, &conv, &mut out)
            .unwrap();
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len + 4, out.len());
        dec.zrle(rect, &out[4..]).unwrap();
        out.len()
    }

    fn frame(w: u16, h: u16, f: impl Fn(u16, u16) -> u32) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..h {
            for x in 0..w {
                v.extend_from_slice(&f(x, y).to_le_bytes());
            }
        }
        v
    }

    #[test]
    fn every_subencoding_decodes_back_to_the_frame() {
        let (w, h) = (200u16, 150u16);
        let mut rng = 0x1234_5678u32;
        let mut noise = move || {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng
        };
        let noisy: Vec<u32> = (0..u32::from(w) * u32::from(h))
            .map(|_| noise() & 0xffffff)
            .collect();
        let pictures: Vec<(&str, Vec<u8>)> = vec![
            ("solid", frame(w, h, |_, _| 0x203040)),
            // Colour bars: solid and two-colour tiles.
            (
                "bars",
                frame(w, h, |x, _| {
                    [0xffffff, 0xffff00, 0x00ffff, 0xff0000][usize::from(x / 50)]
                }),
            ),
            // Text-like: 2 colours in small strokes (packed palette).
            (
                "text",
                frame(w, h, |x, y| {
                    if (x * 7 + y * 3) % 11 < 3 {
                        0xc0c0c0
                    } else {
                        0
                    }
                }),
            ),
            // 12 colours (4-bit packed palette).
            (
                "twelve",
                frame(w, h, |x, y| u32::from((x + y) % 12) * 0x101010),
            ),
            // 100 colours in long runs (palette RLE).
            (
                "runs",
                frame(w, h, |x, y| u32::from((y * w + x) / 37 % 100) * 0x010203),
            ),
            // Many colours in runs (plain RLE).
            (
                "gradient",
                frame(w, h, |x, y| u32::from(y) << 8 | u32::from(x / 8)),
            ),
            // Noise (raw).
            (
                "noise",
                frame(w, h, |x, y| {
                    noisy[usize::from(y) * usize::from(w) + usize::from(x)]
                }),
            ),
        ];
        let mut enc = ZrleEncoder::new();
        let mut dec = Decoder::new(w, h);
        for (name, pic) in &pictures {
            let size = round_trip(&mut enc, &mut dec, pic, w, Rect::new(0, 0, w, h));
            assert_eq!(dec.pixels(), &pic[..], "{name}");
            if *name == "solid" {
                assert!(size < 200, "solid tiles are tiny: {size}");
            }
        }
        // A rectangle not on tile boundaries, in the same stream.
        let last = &pictures[1].1;
        round_trip(&mut enc, &mut dec, last, w, Rect::new(13, 7, 101, 77));
        let mut expect = pictures[6].1.clone();
        for y in 7..84usize {
            let a = (y * usize::from(w) + 13) * 4;
            expect[a..a + 101 * 4].copy_from_slice(&last[a..a + 101 * 4]);
        }
        assert_eq!(dec.pixels(), &expect[..]);
    }

    #[test]
    fn subencodings_are_picked_by_size() {
        let conv = Converter::new(PixelFormat::NATIVE).unwrap();
        let mut p = Palette::new();
        let sub = |tile: &[u32], p: &mut Palette| {
            let mut out = Vec::new();
            ZrleEncoder::encode_tile(tile, p, 64, 64, &conv, &mut out);
            (out[0], out.len())
        };
        assert_eq!(sub(&[7; 4096], &mut p), (SOLID, 4));
        let two: Vec<u32> = (0..4096).map(|i| (i % 3 == 0) as u32).collect();
        assert_eq!(sub(&two, &mut p), (2, 1 + 6 + 64 * 8));
        let many: Vec<u32> = (0..4096).map(|i| i / 16).collect();
        assert_eq!(sub(&many, &mut p).0, PLAIN_RLE);
        let noise: Vec<u32> = (0..4096u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        assert_eq!(sub(&noise, &mut p), (RAW, 1 + 4096 * 3));
        let pal: Vec<u32> = (0..4096).map(|i| (i / 64) % 40).collect();
        assert_eq!(sub(&pal, &mut p).0, 128 + 40);
    }

    #[test]
    fn run_lengths_are_written_as_255s_and_a_rest() {
        let mut v = Vec::new();
        put_run(1, &mut v);
        put_run(255, &mut v);
        put_run(256, &mut v);
        put_run(4096, &mut v);
        assert_eq!(v[..4], [0, 254, 255, 0]);
        assert_eq!(v.len(), 4 + 17);
        assert_eq!(run_bytes(4096), 17);
    }
}
