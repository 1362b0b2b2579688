//! One client connection as a state machine without I/O: bytes from the client go in
//! ([`Session::receive`], which answers with the scan codes of its key events), frames go
//! in when an update is wanted ([`Session::update`]), and the bytes for the client collect
//! in [`Session::output`]. The connection driver ([`super::connection`]), the tests and
//! the fuzz driver all run the same machine.
//!
//! Updates: each client has a shadow copy of the frame it was last sent. An incremental
//! request is answered with the 64x64 tiles that differ from it (merged along each tile
//! row), preceded by a CopyRect when the screen scrolled; while nothing differs the request
//! is held. The first update, a non-incremental request and a change of size send the
//! requested area (or everything) whole. The encoding is the client's first choice of Raw
//! and ZRLE (Raw when it named neither); CopyRect and DesktopSize are used when it named
//! them.

use tracing::debug;

use super::keysym::Keyboard;
use super::pixel::{Converter, FormatError};
use super::protocol::{
    encoding, fill, parse_version, ClientMessage, ParseError, Parser, PixelFormat, Rect, Version,
    SECURITY_NONE, VERSION_3_8,
};
use super::scroll;
use super::zrle::{ZrleEncoder, ZrleError, TILE};

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client's first 12 bytes were not an RFB version.
    #[error("the client sent {0:?} instead of an RFB protocol version")]
    Version(String),
    /// The client chose a security type that was not offered.
    #[error("the client chose security type {0}; only None (1) is offered")]
    Security(u8),
    /// The message stream broke.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// An unusable pixel format.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The display's size changed and the client cannot be told.
    #[error("the display is now {width}x{height} and the client does not take DesktopSize")]
    Resized {
        /// New width.
        width: u16,
        /// New height.
        height: u16,
    },
    /// ZRLE compression failed.
    #[error(transparent)]
    Zrle(#[from] ZrleError),
}

/// A picture to send: XRGB8888 (bytes B, G, R, X), `width` × 4 bytes a row.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    width: u16,
    height: u16,
    pixels: &'a [u8],
}

impl<'a> Frame<'a> {
    /// A frame over `pixels`; None when they are fewer than `width` × `height` × 4 bytes.
    pub fn new(width: u16, height: u16, pixels: &'a [u8]) -> Option<Self> {
        let len = usize::from(width) * usize::from(height) * 4;
        (pixels.len() >= len).then(|| Self {
            width,
            height,
            pixels: &pixels[..len],
        })
    }

    fn stride(&self) -> usize {
        usize::from(self.width) * 4
    }
}

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Version,
    Security,
    ClientInit,
    Running,
}

/// What the client asked for and has not been sent yet.
#[derive(Debug, Clone, Copy)]
struct Request {
    incremental: bool,
    rect: Rect,
}

/// The encodings in use, from the client's SetEncodings.
#[derive(Debug, Clone, Copy, Default)]
struct Encodings {
    zrle: bool,
    copy_rect: bool,
    desktop_size: bool,
}

impl Encodings {
    fn from_list(list: &[i32]) -> Self {
        let main = list
            .iter()
            .find(|e| matches!(**e, encoding::RAW | encoding::ZRLE));
        Self {
            zrle: main == Some(&encoding::ZRLE),
            copy_rect: list.contains(&encoding::COPY_RECT),
            desktop_size: list.contains(&encoding::DESKTOP_SIZE),
        }
    }
}

/// One client's session.
pub struct Session {
    phase: Phase,
    version: Version,
    handshake: Vec<u8>,
    parser: Parser,
    messages: Vec<ClientMessage>,
    out: Vec<u8>,
    name: String,
    width: u16,
    height: u16,
    conv: Converter,
    encodings: Encodings,
    request: Option<Request>,
    shadow: Option<Vec<u8>>,
    zrle: Option<ZrleEncoder>,
    keyboard: Keyboard,
}

fn put_rect_header(out: &mut Vec<u8>, r: Rect, enc: i32) {
    for v in [r.x, r.y, r.w, r.h] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&enc.to_be_bytes());
}

impl Session {
    /// A session with a display of `width` × `height` called `name`; the server's
    /// ProtocolVersion is already in the output.
    pub fn new(width: u16, height: u16, name: &str) -> Self {
        Self {
            phase: Phase::Version,
            version: Version::V3_8,
            handshake: Vec::with_capacity(12),
            parser: Parser::default(),
            messages: Vec::new(),
            out: VERSION_3_8.to_vec(),
            name: name.chars().take(256).collect(),
            width,
            height,
            conv: Converter::native(),
            encodings: Encodings::default(),
            request: None,
            shadow: None,
            zrle: None,
            keyboard: Keyboard::default(),
        }
    }

    /// Bytes to send to the client (the caller sends them and clears the buffer).
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// True once the handshake is over.
    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// True while the client waits for an update.
    pub fn wants_update(&self) -> bool {
        self.request.is_some()
    }

    /// The size the client knows.
    pub fn size(&self) -> (u16, u16) {
        (self.width, self.height)
    }

    /// Takes bytes from the client; returns the scan codes of the key events among them
    /// (one entry per event). After an error the connection must be closed (for a refused
    /// security type the reason is in the output, for 3.8 clients).
    pub fn receive(&mut self, mut data: &[u8]) -> Result<Vec<Vec<u8>>, SessionError> {
        let mut keys = Vec::new();
        while !data.is_empty() {
            match self.phase {
                Phase::Version => {
                    if !fill(&mut self.handshake, &mut data, 12) {
                        break;
                    }
                    let mut v = [0u8; 12];
                    v.copy_from_slice(&self.handshake);
                    self.handshake.clear();
                    self.version = parse_version(&v).ok_or_else(|| {
                        SessionError::Version(String::from_utf8_lossy(&v).into_owned())
                    })?;
                    if self.version == Version::V3_3 {
                        // 3.3: the server decides.
                        self.out
                            .extend_from_slice(&u32::from(SECURITY_NONE).to_be_bytes());
                        self.phase = Phase::ClientInit;
                    } else {
                        self.out.extend_from_slice(&[1, SECURITY_NONE]);
                        self.phase = Phase::Security;
                    }
                }
                Phase::Security => {
                    let chosen = data[0];
                    data = &data[1..];
                    if chosen != SECURITY_NONE {
                        if self.version == Version::V3_8 {
                            let reason = b"only security type None is offered";
                            self.out.extend_from_slice(&1u32.to_be_bytes());
                            self.out
                                .extend_from_slice(&(reason.len() as u32).to_be_bytes());
                            self.out.extend_from_slice(reason);
                        }
                        return Err(SessionError::Security(chosen));
                    }
                    if self.version == Version::V3_8 {
                        self.out.extend_from_slice(&0u32.to_be_bytes());
                    }
                    self.phase = Phase::ClientInit;
                }
                Phase::ClientInit => {
                    // The shared flag: every client shares the one console anyway.
                    data = &data[1..];
                    self.out.extend_from_slice(&self.width.to_be_bytes());
                    self.out.extend_from_slice(&self.height.to_be_bytes());
                    self.out.extend_from_slice(&PixelFormat::NATIVE.to_bytes());
                    self.out
                        .extend_from_slice(&(self.name.len() as u32).to_be_bytes());
                    self.out.extend_from_slice(self.name.as_bytes());
                    self.phase = Phase::Running;
                }
                Phase::Running => {
                    let mut messages = std::mem::take(&mut self.messages);
                    let result = self.parser.feed(data, &mut messages);
                    let handled = messages
                        .drain(..)
                        .try_for_each(|m| self.handle(m, &mut keys));
                    self.messages = messages;
                    handled?;
                    result?;
                    break;
                }
            }
        }
        Ok(keys)
    }

    fn handle(&mut self, m: ClientMessage, keys: &mut Vec<Vec<u8>>) -> Result<(), SessionError> {
        match m {
            ClientMessage::SetPixelFormat(pf) => {
                self.conv = Converter::new(pf)?;
                debug!(format = ?pf, "VNC client pixel format");
            }
            ClientMessage::SetEncodings(list) => {
                self.encodings = Encodings::from_list(&list);
                debug!(?list, "VNC client encodings");
            }
            ClientMessage::UpdateRequest { incremental, rect } => {
                self.request = Some(match self.request {
                    // Several requests before an update: one covering them all.
                    Some(r) => {
                        let x0 = r.rect.x.min(rect.x);
                        let y0 = r.rect.y.min(rect.y);
                        let x1 = (u32::from(r.rect.x) + u32::from(r.rect.w))
                            .max(u32::from(rect.x) + u32::from(rect.w));
                        let y1 = (u32::from(r.rect.y) + u32::from(r.rect.h))
                            .max(u32::from(rect.y) + u32::from(rect.h));
                        Request {
                            incremental: r.incremental && incremental,
                            rect: Rect::new(
                                x0,
                                y0,
                                (x1 - u32::from(x0)).min(u32::from(u16::MAX)) as u16,
                                (y1 - u32::from(y0)).min(u32::from(u16::MAX)) as u16,
                            ),
                        }
                    }
                    None => Request { incremental, rect },
                });
            }
            ClientMessage::Key { down, keysym } => match self.keyboard.event(down, keysym) {
                Some(codes) => keys.push(codes),
                None => debug!(
                    keysym = format_args!("{keysym:#x}"),
                    "VNC key without a PS/2 key"
                ),
            },
            ClientMessage::Pointer { .. } => {}
            ClientMessage::CutText(len) => debug!(len, "VNC clipboard text ignored"),
        }
        Ok(())
    }

    /// Answers a pending update request from `frame`: appends a FramebufferUpdate to the
    /// output and returns true, or returns false (the request stays pending) when there is
    /// no request or an incremental one finds nothing changed.
    pub fn update(&mut self, frame: &Frame) -> Result<bool, SessionError> {
        let Some(req) = self.request else {
            return Ok(false);
        };
        let full = Rect::new(0, 0, frame.width, frame.height);
        let resized = (frame.width, frame.height) != (self.width, self.height);
        if resized {
            if !self.encodings.desktop_size {
                return Err(SessionError::Resized {
                    width: frame.width,
                    height: frame.height,
                });
            }
            self.width = frame.width;
            self.height = frame.height;
            self.shadow = None;
        }
        let region = req.rect.intersect(&full);
        let stride = frame.stride();
        let mut scroll = None;
        let rects = match &mut self.shadow {
            Some(shadow) if req.incremental => {
                if self.encodings.copy_rect && region == full {
                    scroll =
                        scroll::detect(shadow, frame.pixels, stride, usize::from(frame.height));
                    if let Some(s) = &scroll {
                        scroll::apply(shadow, stride, s);
                    }
                }
                let rects = changed(shadow, frame, region);
                if rects.is_empty() && scroll.is_none() {
                    return Ok(false);
                }
                rects
            }
            Some(_) if region.is_empty() => Vec::new(),
            Some(_) => vec![region],
            // Nothing sent yet (or a new size): everything.
            None => vec![full],
        };
        self.request = None;
        let count = rects.len() + usize::from(scroll.is_some()) + usize::from(resized);
        self.out.extend_from_slice(&[0, 0]);
        self.out.extend_from_slice(&(count as u16).to_be_bytes());
        if resized {
            put_rect_header(&mut self.out, full, encoding::DESKTOP_SIZE);
        }
        if let Some(s) = scroll {
            put_rect_header(
                &mut self.out,
                Rect::new(0, s.dst_y, frame.width, s.height),
                encoding::COPY_RECT,
            );
            self.out.extend_from_slice(&0u16.to_be_bytes());
            self.out.extend_from_slice(&s.src_y.to_be_bytes());
        }
        for r in &rects {
            self.encode(frame, *r)?;
        }
        match &mut self.shadow {
            Some(shadow) => {
                for r in &rects {
                    for y in usize::from(r.y)..usize::from(r.y) + usize::from(r.h) {
                        let a = y * stride + usize::from(r.x) * 4;
                        let b = a + usize::from(r.w) * 4;
                        shadow[a..b].copy_from_slice(&frame.pixels[a..b]);
                    }
                }
            }
            None => self.shadow = Some(frame.pixels.to_vec()),
        }
        Ok(true)
    }

    fn encode(&mut self, frame: &Frame, r: Rect) -> Result<(), SessionError> {
        let stride = frame.stride();
        if self.encodings.zrle {
            put_rect_header(&mut self.out, r, encoding::ZRLE);
            self.zrle.get_or_insert_with(ZrleEncoder::new).encode(
                frame.pixels,
                stride,
                r,
                &self.conv,
                &mut self.out,
            )?;
        } else {
            put_rect_header(&mut self.out, r, encoding::RAW);
            for y in usize::from(r.y)..usize::from(r.y) + usize::from(r.h) {
                let a = y * stride + usize::from(r.x) * 4;
                self.conv
                    .put_row(&frame.pixels[a..a + usize::from(r.w) * 4], &mut self.out);
            }
        }
        Ok(())
    }
}

/// The tiles of `region` where `frame` differs from `shadow`, merged along tile rows.
fn changed(shadow: &[u8], frame: &Frame, region: Rect) -> Vec<Rect> {
    let mut out = Vec::new();
    if region.is_empty() {
        return out;
    }
    let stride = frame.stride();
    let mut ty = region.y / TILE * TILE;
    let end_y = u32::from(region.y) + u32::from(region.h);
    while u32::from(ty) < end_y {
        let mut run: Option<Rect> = None;
        let mut tx = region.x / TILE * TILE;
        let end_x = u32::from(region.x) + u32::from(region.w);
        while u32::from(tx) < end_x {
            let tile = Rect::new(tx, ty, TILE, TILE).intersect(&region);
            let differs =
                (usize::from(tile.y)..usize::from(tile.y) + usize::from(tile.h)).any(|y| {
                    let a = y * stride + usize::from(tile.x) * 4;
                    let b = a + usize::from(tile.w) * 4;
                    shadow[a..b] != frame.pixels[a..b]
                });
            run = match (run, differs) {
                (Some(r), true) => Some(Rect::new(r.x, r.y, r.w + tile.w, r.h)),
                (None, true) => Some(tile),
                (Some(r), false) => {
                    out.push(r);
                    None
                }
                (None, false) => None,
            };
            match tx.checked_add(TILE) {
                Some(t) => tx = t,
                None => break,
            }
        }
        out.extend(run);
        match ty.checked_add(TILE) {
            Some(t) => ty = t,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfb::client::Client;
    use std::io::{Read, Write};

    /// A client-side stream over a session: what the client writes goes into the
    /// session, what the session outputs is what the client reads.
    struct Loop {
        session: Session,
        frame: Vec<u8>,
        size: (u16, u16),
        inbox: std::collections::VecDeque<u8>,
        keys: Vec<u8>,
    }

    impl Read for Loop {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.inbox.is_empty() {
                let f = Frame::new(self.size.0, self.size.1, &self.frame).unwrap();
                self.session
                    .update(&f)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let out = std::mem::take(self.session.output());
                self.inbox.extend(out);
            }
            if self.inbox.is_empty() {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.inbox.len());
            for (b, v) in buf.iter_mut().zip(self.inbox.drain(..n)) {
                *b = v;
            }
            Ok(n)
        }
    }

    impl Write for Loop {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let keys = self
                .session
                .receive(buf)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.keys.extend(keys.into_iter().flatten());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The client's picture is the frame.
    fn in_sync(c: &mut Client<Loop>) -> bool {
        let frame = c.stream().frame.clone();
        c.screen.pixels() == &frame[..]
    }

    fn bars(w: u16, h: u16) -> Vec<u8> {
        let mut v = Vec::new();
        let colours = [
            0xffffffu32,
            0xffff00,
            0x00ffff,
            0x00ff00,
            0xff00ff,
            0xff0000,
            0x0000ff,
            0,
        ];
        for _ in 0..h {
            for x in 0..w {
                v.extend_from_slice(&colours[usize::from(x) * 8 / usize::from(w)].to_le_bytes());
            }
        }
        v
    }

    fn connect(w: u16, h: u16, version: &[u8; 12], encodings: &[i32]) -> Client<Loop> {
        let mut session = Session::new(w, h, "test vm");
        let out = std::mem::take(&mut session.out);
        let lp = Loop {
            session,
            frame: bars(w, h),
            size: (w, h),
            inbox: out.into_iter().collect(),
            keys: Vec::new(),
        };
        let mut c = Client::handshake(lp, version).unwrap();
        assert_eq!(c.name, "test vm");
        assert_eq!(c.screen.size(), (w, h));
        c.set_native_format().unwrap();
        c.set_encodings(encodings).unwrap();
        c
    }

    #[test]
    fn handshake_for_3_3_3_7_3_8_and_a_full_frame_in_raw_and_zrle() {
        for version in [b"RFB 003.003\n", b"RFB 003.007\n", b"RFB 003.008\n"] {
            for encodings in [&[encoding::RAW][..], &[encoding::ZRLE, encoding::RAW], &[]] {
                let mut c = connect(200, 100, version, encodings);
                c.request(false).unwrap();
                let u = c.read_update().unwrap();
                assert!(u.covers(200, 100));
                let expect = if encodings.first() == Some(&encoding::ZRLE) {
                    encoding::ZRLE
                } else {
                    encoding::RAW
                };
                assert!(u.rects.iter().all(|(_, e)| *e == expect), "{u:?}");
                assert_eq!(c.screen.pixels(), &bars(200, 100)[..]);
            }
        }
    }

    #[test]
    fn incremental_updates_carry_changed_tiles_only_and_wait_for_a_change() {
        let mut c = connect(640, 480, b"RFB 003.008\n", &[encoding::ZRLE, encoding::RAW]);
        c.request(false).unwrap();
        c.read_update().unwrap();
        // Nothing changed: the request is held.
        c.request(true).unwrap();
        let mut buf = [0u8; 1];
        let e = c.stream().read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        assert!(c.stream().session.wants_update());
        // One pixel changes: one tile comes.
        let at = (300 * 640 + 130) * 4;
        c.stream().frame[at..at + 4].copy_from_slice(&[1, 2, 3, 0]);
        let u = c.read_update().unwrap();
        assert_eq!(u.rects, vec![(Rect::new(128, 256, 64, 64), encoding::ZRLE)]);
        assert!(in_sync(&mut c));
        // Two neighbouring tiles and one apart: two rectangles on that tile row.
        for x in [10, 70, 600] {
            let at = (5 * 640 + x) * 4;
            c.stream().frame[at] ^= 0xff;
        }
        c.request(true).unwrap();
        let u = c.read_update().unwrap();
        assert_eq!(
            u.rects,
            vec![
                (Rect::new(0, 0, 128, 64), encoding::ZRLE),
                (Rect::new(576, 0, 64, 64), encoding::ZRLE)
            ]
        );
        // A partial request only gets its part, clipped.
        for px in c.stream().frame.chunks_exact_mut(4) {
            px.copy_from_slice(&[0x40, 0x40, 0x40, 0]);
        }
        let mut m = vec![3u8, 1];
        for v in [100u16, 100, 50, 30] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        c.stream().write_all(&m).unwrap();
        let u = c.read_update().unwrap();
        assert_eq!(
            u.rects,
            vec![
                (Rect::new(100, 100, 50, 28), encoding::ZRLE),
                (Rect::new(100, 128, 50, 2), encoding::ZRLE)
            ]
        );
        // ...and the rest follows on a full incremental request.
        c.request(true).unwrap();
        c.read_update().unwrap();
        assert!(in_sync(&mut c));
    }

    #[test]
    fn a_scrolling_console_is_sent_as_copyrect_and_a_strip() {
        let (w, h) = (640u16, 480u16);
        let mut c = connect(
            w,
            h,
            b"RFB 003.008\n",
            &[encoding::ZRLE, encoding::COPY_RECT],
        );
        let mut console = crate::rfb::text::TextConsole::new(80);
        for i in 0..40 {
            console.feed(format!("line {i} of the console, some text to fill it\n").as_bytes());
        }
        console.render(640, 480, &mut c.stream().frame);
        c.request(false).unwrap();
        c.read_update().unwrap();
        console.feed(b"one more line\n");
        console.render(640, 480, &mut c.stream().frame);
        c.request(true).unwrap();
        let u = c.read_update().unwrap();
        // Every line but the new last one (and the cursor's row) moved up one row of text.
        assert_eq!(u.rects[0], (Rect::new(0, 0, 640, 448), encoding::COPY_RECT));
        // The rest is the bottom rows only.
        assert!(u.rects[1..].iter().all(|(r, _)| r.y >= 384), "{u:?}");
        assert!(in_sync(&mut c));
        // Without CopyRect in its list, the client gets tiles instead.
        let mut d = connect(w, h, b"RFB 003.008\n", &[encoding::ZRLE]);
        console.render(640, 480, &mut d.stream().frame);
        d.request(false).unwrap();
        d.read_update().unwrap();
        console.feed(b"and another\n");
        console.render(640, 480, &mut d.stream().frame);
        d.request(true).unwrap();
        let u = d.read_update().unwrap();
        assert!(u.rects.iter().all(|(_, e)| *e == encoding::ZRLE));
        assert!(in_sync(&mut d));
    }

    #[test]
    fn a_new_size_is_announced_with_desktop_size_or_ends_the_session() {
        let mut c = connect(
            320,
            200,
            b"RFB 003.008\n",
            &[encoding::RAW, encoding::DESKTOP_SIZE],
        );
        c.request(false).unwrap();
        c.read_update().unwrap();
        c.stream().size = (640, 480);
        c.stream().frame = bars(640, 480);
        c.request(true).unwrap();
        let u = c.read_update().unwrap();
        assert_eq!(
            u.rects[0],
            (Rect::new(0, 0, 640, 480), encoding::DESKTOP_SIZE)
        );
        assert!(u.covers(640, 480));
        assert_eq!(c.screen.size(), (640, 480));
        assert_eq!(c.screen.pixels(), &bars(640, 480)[..]);
        let mut d = connect(320, 200, b"RFB 003.008\n", &[encoding::RAW]);
        d.stream().size = (640, 480);
        d.stream().frame = bars(640, 480);
        d.request(true).unwrap();
        let e = d.read_update().unwrap_err();
        assert!(e.to_string().contains("DesktopSize"), "{e}");
    }

    #[test]
    fn other_pixel_formats_are_converted_and_colour_maps_refused() {
        let mut s = Session::new(8, 2, "x");
        s.receive(b"RFB 003.008\n\x01\x01").unwrap();
        let mut pf = PixelFormat::NATIVE;
        pf.bits_per_pixel = 16;
        pf.depth = 16;
        pf.red_max = 31;
        pf.green_max = 63;
        pf.blue_max = 31;
        pf.red_shift = 11;
        pf.green_shift = 5;
        pf.blue_shift = 0;
        let mut m = vec![0u8, 0, 0, 0];
        m.extend_from_slice(&pf.to_bytes());
        m.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 8, 0, 2]);
        s.receive(&m).unwrap();
        s.output().clear();
        let px = [0u8, 0, 0xff, 0].repeat(16);
        assert!(s.update(&Frame::new(8, 2, &px).unwrap()).unwrap());
        let out = s.output().clone();
        // Header 4 + rect header 12 + 16 pixels of 2 bytes, all pure red.
        assert_eq!(out.len(), 4 + 12 + 32);
        assert!(out[16..].chunks(2).all(|p| p == [0x00, 0xf8]));
        pf.true_colour = false;
        let mut m = vec![0u8, 0, 0, 0];
        m.extend_from_slice(&pf.to_bytes());
        let e = s.receive(&m).unwrap_err();
        assert!(
            matches!(e, SessionError::Format(FormatError::ColourMap)),
            "{e}"
        );
    }

    #[test]
    fn bad_handshakes_are_refused() {
        let mut s = Session::new(8, 8, "x");
        assert!(matches!(
            s.receive(b"GET / HTTP/1.1\r\n"),
            Err(SessionError::Version(_))
        ));
        let mut s = Session::new(8, 8, "x");
        s.output().clear();
        assert!(matches!(
            s.receive(b"RFB 003.008\n\x02"),
            Err(SessionError::Security(2))
        ));
        // 3.8: the refusal has a reason.
        assert_eq!(&s.output()[..2], &[1, SECURITY_NONE]);
        assert_eq!(&s.output()[2..6], &1u32.to_be_bytes());
        let mut s = Session::new(8, 8, "x");
        s.receive(b"RFB 003.008\n\x01\x00").unwrap();
        assert!(s.is_running());
        assert!(matches!(
            s.receive(&[9]),
            Err(SessionError::Parse(ParseError::UnknownType(9)))
        ));
    }

    #[test]
    fn key_events_become_scan_codes() {
        let mut c = connect(16, 16, b"RFB 003.008\n", &[]);
        for k in [0x68u32, 0x69, 0x21, 0xff0d] {
            c.tap(k).unwrap();
        }
        c.key(true, 0x1234_5678).unwrap();
        assert_eq!(
            c.stream().keys,
            vec![0x23, 0xa3, 0x17, 0x97, 0x2a, 0x02, 0xaa, 0x82, 0x1c, 0x9c]
        );
    }
}
