//! RFB wire format (RFC 6143): protocol versions, the pixel format, encodings, and an
//! incremental parser of client-to-server messages whose memory stays bounded whatever a
//! client claims (SetEncodings keeps at most [`MAX_ENCODINGS`] entries and streams past the
//! rest; ClientCutText text is skipped as it arrives, never buffered).

/// What the server announces: RFB 3.8.
pub const VERSION_3_8: &[u8; 12] = b"RFB 003.008\n";

/// Security type None.
pub const SECURITY_NONE: u8 = 1;

/// Encoding numbers (signed 32-bit on the wire).
pub mod encoding {
    /// Raw pixels.
    pub const RAW: i32 = 0;
    /// Copy a rectangle the client already has.
    pub const COPY_RECT: i32 = 1;
    /// Zlib run-length encoding (64x64 tiles, one zlib stream per connection).
    pub const ZRLE: i32 = 16;
    /// Pseudo-encoding: the framebuffer's size changed.
    pub const DESKTOP_SIZE: i32 = -223;
}

/// Most SetEncodings entries kept; the rest are read and dropped.
pub const MAX_ENCODINGS: usize = 64;
/// Longest ClientCutText accepted (it is skipped, not kept); longer closes the connection.
pub const MAX_CUT_TEXT: u32 = 1 << 20;

/// The protocol version agreed with the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 3.3: the server picks the security type, no SecurityResult for None.
    V3_3,
    /// 3.7: security type list, no SecurityResult for None.
    V3_7,
    /// 3.8: security type list and SecurityResult.
    V3_8,
}

/// Parses a client's ProtocolVersion ("RFB xxx.yyy\n"). Versions other than 3.7 and 3.8
/// are treated as 3.3 (as RFC 6143 asks), later 3.x ones as 3.8; anything that is not a
/// version string at all is None.
pub fn parse_version(b: &[u8; 12]) -> Option<Version> {
    let digits = |r: &[u8]| -> Option<u32> {
        r.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    if &b[..4] != b"RFB " || b[7] != b'.' || b[11] != b'\n' {
        return None;
    }
    let major = digits(&b[4..7])?;
    let minor = digits(&b[8..11])?;
    Some(match (major, minor) {
        (3, 7) => Version::V3_7,
        (3, m) if m >= 8 => Version::V3_8,
        (m, _) if m > 3 => Version::V3_8,
        _ => Version::V3_3,
    })
}

/// A rectangle in framebuffer pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    /// Left.
    pub x: u16,
    /// Top.
    pub y: u16,
    /// Width.
    pub w: u16,
    /// Height.
    pub h: u16,
}

impl Rect {
    /// A rectangle.
    pub const fn new(x: u16, y: u16, w: u16, h: u16) -> Self {
        Self { x, y, w, h }
    }

    /// True when it has no pixels.
    pub fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }

    /// The part of `self` inside `other` (empty when they do not meet).
    pub fn intersect(&self, other: &Rect) -> Rect {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 =
            (u32::from(self.x) + u32::from(self.w)).min(u32::from(other.x) + u32::from(other.w));
        let y1 =
            (u32::from(self.y) + u32::from(self.h)).min(u32::from(other.y) + u32::from(other.h));
        if x1 <= u32::from(x0) || y1 <= u32::from(y0) {
            return Rect::default();
        }
        // Both ends are within u16 (min of two u16-based ends minus a u16 start).
        Rect::new(
            x0,
            y0,
            (x1 - u32::from(x0)) as u16,
            (y1 - u32::from(y0)) as u16,
        )
    }
}

/// The RFB pixel format (16 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    /// 8, 16 or 32.
    pub bits_per_pixel: u8,
    /// Useful bits.
    pub depth: u8,
    /// Multi-byte pixels are big-endian.
    pub big_endian: bool,
    /// True colour (false: a colour map, which this server does not do).
    pub true_colour: bool,
    /// Largest red value.
    pub red_max: u16,
    /// Largest green value.
    pub green_max: u16,
    /// Largest blue value.
    pub blue_max: u16,
    /// Left shift of red.
    pub red_shift: u8,
    /// Left shift of green.
    pub green_shift: u8,
    /// Left shift of blue.
    pub blue_shift: u8,
}

impl PixelFormat {
    /// The framebuffer's own format: XRGB8888 little-endian (bytes B, G, R, X).
    pub const NATIVE: PixelFormat = PixelFormat {
        bits_per_pixel: 32,
        depth: 24,
        big_endian: false,
        true_colour: true,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 16,
        green_shift: 8,
        blue_shift: 0,
    };

    /// The wire form.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bits_per_pixel;
        b[1] = self.depth;
        b[2] = u8::from(self.big_endian);
        b[3] = u8::from(self.true_colour);
        b[4..6].copy_from_slice(&self.red_max.to_be_bytes());
        b[6..8].copy_from_slice(&self.green_max.to_be_bytes());
        b[8..10].copy_from_slice(&self.blue_max.to_be_bytes());
        b[10] = self.red_shift;
        b[11] = self.green_shift;
        b[12] = self.blue_shift;
        b
    }

    /// From the wire form (any non-zero flag byte is true).
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        PixelFormat {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        }
    }

    /// Bytes per pixel.
    pub fn bytes_per_pixel(&self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }
}

/// A message from the client, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// SetPixelFormat (not yet checked: see the session).
    SetPixelFormat(PixelFormat),
    /// SetEncodings: the first [`MAX_ENCODINGS`] entries, in the client's order.
    SetEncodings(Vec<i32>),
    /// FramebufferUpdateRequest.
    UpdateRequest {
        /// Only changes are wanted.
        incremental: bool,
        /// The area.
        rect: Rect,
    },
    /// KeyEvent.
    Key {
        /// Pressed (true) or released.
        down: bool,
        /// The X keysym.
        keysym: u32,
    },
    /// PointerEvent.
    Pointer {
        /// Button mask.
        buttons: u8,
        /// Column.
        x: u16,
        /// Row.
        y: u16,
    },
    /// ClientCutText: its length (the text itself was skipped).
    CutText(u32),
}

/// Why the client's byte stream is not RFB.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A message type this server does not know.
    #[error("unknown client message type {0}")]
    UnknownType(u8),
    /// A ClientCutText longer than [`MAX_CUT_TEXT`].
    #[error("a ClientCutText of {0} bytes is more than the {MAX_CUT_TEXT} accepted")]
    CutTextTooLong(u32),
}

/// Where the parser is in the client's stream.
#[derive(Debug, Default)]
enum ParseState {
    /// At a message boundary (or inside a fixed-size message, in `buf`).
    #[default]
    Message,
    /// Reading SetEncodings entries.
    Encodings { remaining: u16, kept: Vec<i32> },
    /// Skipping ClientCutText.
    CutText { remaining: u32, len: u32 },
}

/// An incremental parser of client messages (after the handshake). Its buffer holds at
/// most one fixed-size message (20 bytes).
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    state: ParseState,
}

/// Moves bytes from `data` into `buf` until it holds `n`; true when it does.
pub(crate) fn fill(buf: &mut Vec<u8>, data: &mut &[u8], n: usize) -> bool {
    let want = n.saturating_sub(buf.len()).min(data.len());
    buf.extend_from_slice(&data[..want]);
    *data = &data[want..];
    buf.len() >= n
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Parser {
    /// Parses what `data` completes; whole messages go to `out`. After an error the
    /// connection must be closed (the stream has lost its framing).
    pub fn feed(
        &mut self,
        mut data: &[u8],
        out: &mut Vec<ClientMessage>,
    ) -> Result<(), ParseError> {
        loop {
            match &mut self.state {
                ParseState::Encodings { remaining, kept } => {
                    while *remaining > 0 {
                        if !fill(&mut self.buf, &mut data, 4) {
                            return Ok(());
                        }
                        if kept.len() < MAX_ENCODINGS {
                            kept.push(be32(&self.buf, 0) as i32);
                        }
                        self.buf.clear();
                        *remaining -= 1;
                    }
                    out.push(ClientMessage::SetEncodings(std::mem::take(kept)));
                    self.state = ParseState::Message;
                }
                ParseState::CutText { remaining, len } => {
                    let skip = data.len().min(*remaining as usize);
                    data = &data[skip..];
                    *remaining -= skip as u32;
                    if *remaining > 0 {
                        return Ok(());
                    }
                    out.push(ClientMessage::CutText(*len));
                    self.state = ParseState::Message;
                }
                ParseState::Message => {
                    if !fill(&mut self.buf, &mut data, 1) {
                        return Ok(());
                    }
                    let len = match self.buf[0] {
                        0 => 20,
                        2 => 4,
                        3 => 10,
                        4 => 8,
                        5 => 6,
                        6 => 8,
                        t => return Err(ParseError::UnknownType(t)),
                    };
                    if !fill(&mut self.buf, &mut data, len) {
                        return Ok(());
                    }
                    let b = std::mem::take(&mut self.buf);
                    match b[0] {
                        0 => {
                            let mut pf = [0u8; 16];
                            pf.copy_from_slice(&b[4..20]);
                            out.push(ClientMessage::SetPixelFormat(PixelFormat::from_bytes(&pf)));
                        }
                        2 => {
                            let remaining = be16(&b, 2);
                            self.state = ParseState::Encodings {
                                remaining,
                                kept: Vec::with_capacity(usize::from(remaining).min(MAX_ENCODINGS)),
                            };
                        }
                        3 => out.push(ClientMessage::UpdateRequest {
                            incremental: b[1] != 0,
                            rect: Rect::new(be16(&b, 2), be16(&b, 4), be16(&b, 6), be16(&b, 8)),
                        }),
                        4 => out.push(ClientMessage::Key {
                            down: b[1] != 0,
                            keysym: be32(&b, 4),
                        }),
                        5 => out.push(ClientMessage::Pointer {
                            buttons: b[1],
                            x: be16(&b, 2),
                            y: be16(&b, 4),
                        }),
                        _ => {
                            let len = be32(&b, 4);
                            if len > MAX_CUT_TEXT {
                                return Err(ParseError::CutTextTooLong(len));
                            }
                            self.state = ParseState::CutText {
                                remaining: len,
                                len,
                            };
                        }
                    }
                    // Give the (small) buffer back for the next message.
                    self.buf = b;
                    self.buf.clear();
                }
            }
        }
    }

    /// Bytes held for an unfinished message (at most 20).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Result<Vec<ClientMessage>, ParseError> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out)?;
            assert!(p.buffered() <= 20);
        }
        Ok(out)
    }

    #[test]
    fn versions_3_3_3_7_3_8_and_garbage() {
        assert_eq!(parse_version(b"RFB 003.008\n"), Some(Version::V3_8));
        assert_eq!(parse_version(b"RFB 003.007\n"), Some(Version::V3_7));
        assert_eq!(parse_version(b"RFB 003.003\n"), Some(Version::V3_3));
        assert_eq!(parse_version(b"RFB 003.005\n"), Some(Version::V3_3));
        assert_eq!(parse_version(b"RFB 003.889\n"), Some(Version::V3_8));
        assert_eq!(parse_version(b"RFB 004.001\n"), Some(Version::V3_8));
        assert_eq!(parse_version(b"GET / HTTP/1"), None);
        assert_eq!(parse_version(b"RFB 00x.008\n"), None);
        assert_eq!(parse_version(b"RFB 003.008\r"), None);
    }

    #[test]
    fn every_message_type_also_one_byte_at_a_time() {
        let mut wire = vec![0u8, 0, 0, 0];
        wire.extend_from_slice(&PixelFormat::NATIVE.to_bytes());
        wire.extend_from_slice(&[2, 0, 0, 3]);
        for e in [16i32, 0, -223] {
            wire.extend_from_slice(&e.to_be_bytes());
        }
        wire.extend_from_slice(&[3, 1, 0, 1, 0, 2, 0, 3, 0, 4]);
        wire.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0, 0x21]);
        wire.extend_from_slice(&[5, 1, 0, 7, 0, 8]);
        wire.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c']);
        let expected = vec![
            ClientMessage::SetPixelFormat(PixelFormat::NATIVE),
            ClientMessage::SetEncodings(vec![16, 0, -223]),
            ClientMessage::UpdateRequest {
                incremental: true,
                rect: Rect::new(1, 2, 3, 4),
            },
            ClientMessage::Key {
                down: true,
                keysym: 0x21,
            },
            ClientMessage::Pointer {
                buttons: 1,
                x: 7,
                y: 8,
            },
            ClientMessage::CutText(3),
        ];
        assert_eq!(parse_all(&[&wire]).unwrap(), expected);
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(parse_all(&bytes).unwrap(), expected);
        assert_eq!(
            PixelFormat::from_bytes(&PixelFormat::NATIVE.to_bytes()),
            PixelFormat::NATIVE
        );
    }

    #[test]
    fn absurd_counts_and_lengths_stay_bounded() {
        // 65535 encodings: all read, MAX_ENCODINGS kept, the next message still parses.
        let mut wire = vec![2u8, 0, 0xff, 0xff];
        for i in 0..65535i32 {
            wire.extend_from_slice(&i.to_be_bytes());
        }
        wire.extend_from_slice(&[4, 0, 0, 0, 0, 0, 0, 0x61]);
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in wire.chunks(4093) {
            p.feed(c, &mut out).unwrap();
        }
        match &out[0] {
            ClientMessage::SetEncodings(e) => {
                assert_eq!(e.len(), MAX_ENCODINGS);
                assert_eq!(e[3], 3);
            }
            m => panic!("{m:?}"),
        }
        assert!(matches!(out[1], ClientMessage::Key { keysym: 0x61, .. }));
        // A 4 GiB ClientCutText is refused before any of it is read.
        assert_eq!(
            parse_all(&[&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]]),
            Err(ParseError::CutTextTooLong(u32::MAX))
        );
        // Up to the limit it is skipped as it streams in.
        let mut p = Parser::default();
        let mut out = Vec::new();
        p.feed(&[6, 0, 0, 0, 0, 0x10, 0, 0], &mut out).unwrap();
        let chunk = vec![b'x'; 65536];
        for _ in 0..16 {
            assert!(out.is_empty());
            p.feed(&chunk, &mut out).unwrap();
            assert_eq!(p.buffered(), 0);
        }
        assert_eq!(out, vec![ClientMessage::CutText(MAX_CUT_TEXT)]);
    }

    #[test]
    fn unknown_types_are_errors() {
        assert_eq!(parse_all(&[&[1]]), Err(ParseError::UnknownType(1)));
        assert_eq!(parse_all(&[&[0xff, 0]]), Err(ParseError::UnknownType(0xff)));
        assert_eq!(
            parse_all(&[&[5, 0, 0, 0, 0, 0, 150]]),
            Err(ParseError::UnknownType(150))
        );
    }

    #[test]
    fn rects_intersect() {
        let a = Rect::new(0, 0, 640, 480);
        assert_eq!(
            a.intersect(&Rect::new(600, 400, 100, 100)),
            Rect::new(600, 400, 40, 80)
        );
        assert!(a.intersect(&Rect::new(640, 0, 10, 10)).is_empty());
        assert_eq!(
            Rect::new(65535, 65535, 65535, 65535).intersect(&Rect::new(65000, 65000, 65535, 65535)),
            Rect::new(65535, 65535, 65000, 65000)
        );
    }
}
