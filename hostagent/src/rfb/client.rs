//! A small RFB client: the handshake (3.3, 3.7 or 3.8 with security None), the messages a
//! viewer sends, and a decoder of what this server sends — FramebufferUpdate with Raw,
//! CopyRect, ZRLE and DesktopSize rectangles — for the pixel format
//! [`PixelFormat::NATIVE`] (which a client sets with [`Client::set_native_format`]).
//!
//! It exists to check the server: unit tests, the end-to-end console tests, the VNC bench
//! and the fuzz test use it. It is not a general viewer (no colour maps, no other formats).

use std::io::{Read, Write};

use flate2::{Decompress, FlushDecompress, Status};

use super::protocol::{encoding, PixelFormat, Rect, SECURITY_NONE};
/// RFB security type 2, VNC authentication.
const SECURITY_VNC_AUTH: u8 = 2;
use super::zrle::TILE;

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// The client's copy of the framebuffer (XRGB8888, bytes B, G, R, X) and its zlib stream.
pub struct Decoder {
    width: u16,
    height: u16,
    pixels: Vec<u8>,
    inflate: Decompress,
}

impl Decoder {
    /// A black framebuffer of `width` × `height`.
    pub fn new(width: u16, height: u16) -> Self {
        Self {
            width,
            height,
            pixels: vec![0; usize::from(width) * usize::from(height) * 4],
            inflate: Decompress::new(true),
        }
    }

    /// Width and height.
    pub fn size(&self) -> (u16, u16) {
        (self.width, self.height)
    }

    /// The pixels (stride = width × 4).
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The pixel at (x, y) as 0xRRGGBB.
    pub fn rgb(&self, x: u16, y: u16) -> u32 {
        let i = (usize::from(y) * usize::from(self.width) + usize::from(x)) * 4;
        u32::from_le_bytes([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2], 0])
    }

    /// A DesktopSize rectangle: a new, black framebuffer.
    pub fn resize(&mut self, width: u16, height: u16) {
        self.width = width;
        self.height = height;
        self.pixels = vec![0; usize::from(width) * usize::from(height) * 4];
    }

    fn check(&self, r: Rect) -> std::io::Result<()> {
        if u32::from(r.x) + u32::from(r.w) > u32::from(self.width)
            || u32::from(r.y) + u32::from(r.h) > u32::from(self.height)
        {
            return Err(bad(format!(
                "{r:?} is outside the {}x{} framebuffer",
                self.width, self.height
            )));
        }
        Ok(())
    }

    fn put(&mut self, x: usize, y: usize, bgrx: [u8; 4]) {
        let i = (y * usize::from(self.width) + x) * 4;
        self.pixels[i..i + 4].copy_from_slice(&bgrx);
    }

    /// A Raw rectangle (4 bytes a pixel).
    pub fn raw(&mut self, r: Rect, data: &[u8]) -> std::io::Result<()> {
        self.check(r)?;
        let w = usize::from(r.w) * 4;
        if data.len() != w * usize::from(r.h) {
            return Err(bad("a Raw rectangle of the wrong length"));
        }
        for (dy, row) in data.chunks_exact(w.max(1)).enumerate() {
            let at = ((usize::from(r.y) + dy) * usize::from(self.width) + usize::from(r.x)) * 4;
            self.pixels[at..at + w].copy_from_slice(row);
        }
        Ok(())
    }

    /// A CopyRect rectangle.
    pub fn copy_rect(&mut self, r: Rect, src_x: u16, src_y: u16) -> std::io::Result<()> {
        self.check(r)?;
        self.check(Rect::new(src_x, src_y, r.w, r.h))?;
        let old = self.pixels.clone();
        let w = usize::from(r.w) * 4;
        for dy in 0..usize::from(r.h) {
            let from =
                ((usize::from(src_y) + dy) * usize::from(self.width) + usize::from(src_x)) * 4;
            let to = ((usize::from(r.y) + dy) * usize::from(self.width) + usize::from(r.x)) * 4;
            self.pixels[to..to + w].copy_from_slice(&old[from..from + w]);
        }
        Ok(())
    }

    /// The zlib data of a ZRLE rectangle (without its length prefix).
    pub fn zrle(&mut self, r: Rect, zdata: &[u8]) -> std::io::Result<()> {
        self.check(r)?;
        // Inflate exactly what this rectangle brought (the stream goes on across rects).
        let mut data = Vec::with_capacity(zdata.len() * 4);
        let mut input = zdata;
        loop {
            data.reserve(64 * 1024);
            let before = self.inflate.total_in();
            let status = self
                .inflate
                .decompress_vec(input, &mut data, FlushDecompress::Sync)
                .map_err(|e| bad(format!("zlib: {e}")))?;
            input = &input[(self.inflate.total_in() - before) as usize..];
            if status == Status::StreamEnd {
                return Err(bad("the ZRLE zlib stream ended"));
            }
            if input.is_empty() && data.len() < data.capacity() {
                break;
            }
        }
        let mut rd = Bytes { data: &data, at: 0 };
        let cpixel = |b: &[u8]| [b[0], b[1], b[2], 0];
        let mut ty = 0;
        while ty < r.h {
            let th = TILE.min(r.h - ty);
            let mut tx = 0;
            while tx < r.w {
                let tw = TILE.min(r.w - tx);
                let (x0, y0) = (usize::from(r.x + tx), usize::from(r.y + ty));
                let (tw_, th_) = (usize::from(tw), usize::from(th));
                let n = tw_ * th_;
                let mut tile: Vec<[u8; 4]> = Vec::with_capacity(n);
                let sub = rd.take(1)?[0];
                match sub {
                    0 => {
                        for _ in 0..n {
                            tile.push(cpixel(rd.take(3)?));
                        }
                    }
                    1 => {
                        let c = cpixel(rd.take(3)?);
                        tile.resize(n, c);
                    }
                    2..=16 => {
                        let palette: Vec<[u8; 4]> = (0..sub)
                            .map(|_| rd.take(3).map(cpixel))
                            .collect::<Result<_, _>>()?;
                        let bits = match sub {
                            2 => 1,
                            3..=4 => 2,
                            _ => 4,
                        };
                        let row_bytes = (tw_ * bits).div_ceil(8);
                        for _ in 0..th_ {
                            let row = rd.take(row_bytes)?.to_vec();
                            for x in 0..tw_ {
                                let bit = x * bits;
                                let idx =
                                    (row[bit / 8] >> (8 - bits - bit % 8)) & ((1 << bits) - 1);
                                tile.push(
                                    *palette
                                        .get(usize::from(idx))
                                        .ok_or_else(|| bad("palette index out of range"))?,
                                );
                            }
                        }
                    }
                    128 => {
                        while tile.len() < n {
                            let c = cpixel(rd.take(3)?);
                            let len = rd.run()?;
                            if tile.len() + len > n {
                                return Err(bad("a run past the end of its tile"));
                            }
                            tile.resize(tile.len() + len, c);
                        }
                    }
                    130..=255 => {
                        let palette: Vec<[u8; 4]> = (0..sub - 128)
                            .map(|_| rd.take(3).map(cpixel))
                            .collect::<Result<_, _>>()?;
                        while tile.len() < n {
                            let i = rd.take(1)?[0];
                            let c = *palette
                                .get(usize::from(i & 0x7f))
                                .ok_or_else(|| bad("palette index out of range"))?;
                            let len = if i & 0x80 != 0 { rd.run()? } else { 1 };
                            if tile.len() + len > n {
                                return Err(bad("a run past the end of its tile"));
                            }
                            tile.resize(tile.len() + len, c);
                        }
                    }
                    s => return Err(bad(format!("ZRLE subencoding {s} is not defined"))),
                }
                for (i, px) in tile.iter().enumerate() {
                    self.put(x0 + i % tw_, y0 + i / tw_, *px);
                }
                tx += tw;
            }
            ty += th;
        }
        if rd.at != data.len() {
            return Err(bad("ZRLE data left over after the last tile"));
        }
        Ok(())
    }
}

/// Reads a decompressed ZRLE rectangle.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> std::io::Result<&'a [u8]> {
        let s = self
            .data
            .get(self.at..self.at + n)
            .ok_or_else(|| bad("ZRLE data ends inside a tile"))?;
        self.at += n;
        Ok(s)
    }

    /// A run length: 1 + the bytes up to and including the first below 255.
    fn run(&mut self) -> std::io::Result<usize> {
        let mut len = 1usize;
        loop {
            let b = self.take(1)?[0];
            len += usize::from(b);
            if b != 255 {
                return Ok(len);
            }
        }
    }
}

/// What one FramebufferUpdate carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// Each rectangle and its encoding.
    pub rects: Vec<(Rect, i32)>,
}

impl Update {
    /// True when the pixel rectangles (not pseudo-encodings) cover the whole `w` × `h`
    /// screen.
    pub fn covers(&self, w: u16, h: u16) -> bool {
        let mut rows = vec![0u32; usize::from(h)];
        for (r, e) in &self.rects {
            if *e == encoding::DESKTOP_SIZE {
                continue;
            }
            let clip = r.intersect(&Rect::new(0, 0, w, h));
            for row in &mut rows[usize::from(clip.y)..usize::from(clip.y) + usize::from(clip.h)] {
                *row += u32::from(clip.w);
            }
        }
        rows.iter().all(|c| *c >= u32::from(w))
    }
}

/// A connected client over any byte stream.
pub struct Client<S> {
    stream: S,
    /// The server's framebuffer as far as this client knows it.
    pub screen: Decoder,
    /// The desktop name from ServerInit.
    pub name: String,
    /// The server's pixel format from ServerInit.
    pub server_format: PixelFormat,
}

fn read_u8(s: &mut impl Read) -> std::io::Result<u8> {
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_u16(s: &mut impl Read) -> std::io::Result<u16> {
    let mut b = [0u8; 2];
    s.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

fn read_u32(s: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_vec(s: &mut impl Read, len: usize) -> std::io::Result<Vec<u8>> {
    let mut v = vec![0u8; len];
    s.read_exact(&mut v)?;
    Ok(v)
}

impl<S: Read + Write> Client<S> {
    /// Runs the handshake, announcing `version` (e.g. `b"RFB 003.008\n"`), choosing
    /// security None and asking for a shared session.
    pub fn handshake(stream: S, version: &[u8; 12]) -> std::io::Result<Self> {
        Self::handshake_as(stream, version, None)
    }

    /// Runs an RFB 3.8 handshake with VNC authentication using `password` (the host
    /// agent's console port and a ticket's one-time password).
    pub fn handshake_with_password(stream: S, password: &str) -> std::io::Result<Self> {
        Self::handshake_as(stream, b"RFB 003.008\n", Some(password))
    }

    fn handshake_as(
        mut stream: S,
        version: &[u8; 12],
        password: Option<&str>,
    ) -> std::io::Result<Self> {
        let mut server = [0u8; 12];
        stream.read_exact(&mut server)?;
        if &server[..4] != b"RFB " {
            return Err(bad(format!("the server said {server:?}")));
        }
        stream.write_all(version)?;
        let minor = &version[8..11];
        if minor == b"003" {
            let t = read_u32(&mut stream)?;
            if t != u32::from(SECURITY_NONE) {
                return Err(bad(format!("security type {t}")));
            }
        } else {
            let n = read_u8(&mut stream)?;
            let types = read_vec(&mut stream, usize::from(n))?;
            match password {
                Some(pw) if types.contains(&SECURITY_VNC_AUTH) => {
                    stream.write_all(&[SECURITY_VNC_AUTH])?;
                    let mut challenge = [0u8; 16];
                    stream.read_exact(&mut challenge)?;
                    stream.write_all(&crate::console::vnc_auth::response(pw, &challenge))?;
                }
                _ if types.contains(&SECURITY_NONE) => stream.write_all(&[SECURITY_NONE])?,
                _ => return Err(bad(format!("security types {types:?}"))),
            }
            if minor == b"008" {
                let result = read_u32(&mut stream)?;
                if result != 0 {
                    return Err(bad(format!("security result {result}")));
                }
            }
        }
        stream.write_all(&[1])?;
        let w = read_u16(&mut stream)?;
        let h = read_u16(&mut stream)?;
        let mut pf = [0u8; 16];
        stream.read_exact(&mut pf)?;
        let len = read_u32(&mut stream)?;
        if len > 4096 {
            return Err(bad(format!("a {len} byte desktop name")));
        }
        let name = String::from_utf8_lossy(&read_vec(&mut stream, len as usize)?).into_owned();
        Ok(Self {
            stream,
            screen: Decoder::new(w, h),
            name,
            server_format: PixelFormat::from_bytes(&pf),
        })
    }

    /// The stream (to set timeouts, or to send raw bytes).
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// SetPixelFormat with `format`.
    pub fn set_pixel_format(&mut self, format: &PixelFormat) -> std::io::Result<()> {
        let mut m = vec![0u8, 0, 0, 0];
        m.extend_from_slice(&format.to_bytes());
        self.stream.write_all(&m)
    }

    /// SetPixelFormat with the format this decoder reads: 32 bpp little-endian XRGB.
    pub fn set_native_format(&mut self) -> std::io::Result<()> {
        self.set_pixel_format(&PixelFormat::NATIVE)
    }

    /// SetEncodings.
    pub fn set_encodings(&mut self, encodings: &[i32]) -> std::io::Result<()> {
        let mut m = vec![2u8, 0];
        m.extend_from_slice(&(encodings.len() as u16).to_be_bytes());
        for e in encodings {
            m.extend_from_slice(&e.to_be_bytes());
        }
        self.stream.write_all(&m)
    }

    /// FramebufferUpdateRequest for the whole screen.
    pub fn request(&mut self, incremental: bool) -> std::io::Result<()> {
        let (w, h) = self.screen.size();
        let mut m = vec![3u8, u8::from(incremental), 0, 0, 0, 0];
        m.extend_from_slice(&w.to_be_bytes());
        m.extend_from_slice(&h.to_be_bytes());
        self.stream.write_all(&m)
    }

    /// KeyEvent.
    pub fn key(&mut self, down: bool, keysym: u32) -> std::io::Result<()> {
        let mut m = vec![4u8, u8::from(down), 0, 0];
        m.extend_from_slice(&keysym.to_be_bytes());
        self.stream.write_all(&m)
    }

    /// A key pressed and released.
    pub fn tap(&mut self, keysym: u32) -> std::io::Result<()> {
        self.key(true, keysym)?;
        self.key(false, keysym)
    }

    /// Reads server messages until a FramebufferUpdate has been applied; returns its
    /// rectangles. Bell and ServerCutText are skipped.
    pub fn read_update(&mut self) -> std::io::Result<Update> {
        loop {
            match read_u8(&mut self.stream)? {
                0 => break,
                2 => {}
                3 => {
                    read_vec(&mut self.stream, 3)?;
                    let len = read_u32(&mut self.stream)?;
                    if len > 1 << 20 {
                        return Err(bad("a huge ServerCutText"));
                    }
                    read_vec(&mut self.stream, len as usize)?;
                }
                t => return Err(bad(format!("server message type {t}"))),
            }
        }
        read_u8(&mut self.stream)?;
        let n = read_u16(&mut self.stream)?;
        let mut update = Update::default();
        for _ in 0..n {
            let r = Rect::new(
                read_u16(&mut self.stream)?,
                read_u16(&mut self.stream)?,
                read_u16(&mut self.stream)?,
                read_u16(&mut self.stream)?,
            );
            let enc = read_u32(&mut self.stream)? as i32;
            match enc {
                encoding::RAW => {
                    let len = usize::from(r.w) * usize::from(r.h) * 4;
                    let data = read_vec(&mut self.stream, len)?;
                    self.screen.raw(r, &data)?;
                }
                encoding::COPY_RECT => {
                    let sx = read_u16(&mut self.stream)?;
                    let sy = read_u16(&mut self.stream)?;
                    self.screen.copy_rect(r, sx, sy)?;
                }
                encoding::ZRLE => {
                    let len = read_u32(&mut self.stream)?;
                    if len > 64 << 20 {
                        return Err(bad("a huge ZRLE rectangle"));
                    }
                    let data = read_vec(&mut self.stream, len as usize)?;
                    self.screen.zrle(r, &data)?;
                }
                encoding::DESKTOP_SIZE => self.screen.resize(r.w, r.h),
                e => return Err(bad(format!("encoding {e}"))),
            }
            update.rects.push((r, enc));
        }
        Ok(update)
    }
}
