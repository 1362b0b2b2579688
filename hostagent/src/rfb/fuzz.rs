//! A fuzz driver for the RFB server: arbitrary bytes become what a client sends (in
//! chunks of fuzzed sizes, or a whole valid handshake at once so the fuzzer gets past the
//! version string easily), interleaved with display changes (frames that scroll, change
//! noisily or change size) and update rounds. Whatever the bytes, the server must not
//! panic, must not buffer more than a message's worth of input, and must not send more
//! per update than a Raw update of the whole screen could take.
//!
//! Used by a unit test (a fixed-seed run of many thousands of inputs on the stable
//! toolchain, where the well-formed half is also decoded back and checked against the
//! frame) and by the libFuzzer target `rfb_server` in `fuzz/` (feature `fuzz`).

use super::session::{Frame, Session};

/// The display sizes the driver switches between.
const SIZES: [(u16, u16); 2] = [(96, 80), (40, 30)];

/// A frame: width, height, pixels.
type Picture = (u16, u16, Vec<u8>);

/// The frames (made once): bars, the same scrolled up by 8 rows, noise, and bars at the
/// second size.
fn frames() -> &'static [Picture] {
    static FRAMES: std::sync::OnceLock<Vec<Picture>> = std::sync::OnceLock::new();
    FRAMES.get_or_init(make_frames)
}

fn make_frames() -> Vec<Picture> {
    let bars = |w: u16, h: u16, shift: u16| {
        let mut v = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let c = (u32::from(x) * 0x0003_0507) ^ (u32::from((y + shift) / 4) * 0x0011_0000);
                v.extend_from_slice(&(c & 0xff_ffff).to_le_bytes());
            }
        }
        v
    };
    let (w, h) = SIZES[0];
    let mut seed = 0x2545_f491u32;
    let noise = (0..usize::from(w) * usize::from(h))
        .flat_map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed & 0xff_ffff).to_le_bytes()
        })
        .collect();
    vec![
        (w, h, bars(w, h, 0)),
        (w, h, bars(w, h, 8)),
        (w, h, noise),
        (SIZES[1].0, SIZES[1].1, bars(SIZES[1].0, SIZES[1].1, 0)),
    ]
}

/// The largest update a frame can produce: every pixel at 4 bytes, a rectangle header for
/// each tile, and zlib's worst case on top.
fn update_bound(w: u16, h: u16) -> usize {
    let px = usize::from(w) * usize::from(h);
    let tiles = (usize::from(w) / 64 + 1) * (usize::from(h) / 64 + 1);
    4 + 2 * 12 + 4 + px * 4 * 2 + tiles * 64 + 4096
}

/// Counts (and keeps, with `wire`) the server's output, and clears it.
fn flush(session: &mut Session, sent: &mut usize, wire: &mut Option<&mut Vec<u8>>) {
    let out = session.output();
    *sent += out.len();
    if let Some(w) = wire.as_deref_mut() {
        w.extend_from_slice(out);
    }
    out.clear();
}

/// Runs one input; returns how many bytes the server sent. With `wire`, everything the
/// server sent is appended there too.
pub fn drive(data: &[u8], mut wire: Option<&mut Vec<u8>>) -> usize {
    let frames = frames();
    let mut session = Session::new(SIZES[0].0, SIZES[0].1, "fuzz");
    let mut current = 0usize;
    let mut sent = 0usize;
    let mut input = data;
    flush(&mut session, &mut sent, &mut wire);
    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        match op >> 6 {
            // Client bytes: a chunk of 0..=127 bytes (the op's low 7 bits say how many).
            0 | 1 => {
                let n = usize::from(op & 0x7f).min(input.len());
                let (chunk, rest) = input.split_at(n);
                input = rest;
                if session.receive(chunk).is_err() {
                    flush(&mut session, &mut sent, &mut wire);
                    return sent;
                }
                flush(&mut session, &mut sent, &mut wire);
            }
            // A whole 3.8 handshake at once (a shortcut past the version string).
            2 if op & 0x20 != 0 => {
                if session.receive(b"RFB 003.008\n\x01\x01").is_err() {
                    flush(&mut session, &mut sent, &mut wire);
                    return sent;
                }
                flush(&mut session, &mut sent, &mut wire);
            }
            // The display changes.
            2 => current = usize::from(op & 3),
            // An update round.
            _ => {
                let (w, h, px) = &frames[current];
                let Some(f) = Frame::new(*w, *h, px) else {
                    continue;
                };
                if session.update(&f).is_err() {
                    flush(&mut session, &mut sent, &mut wire);
                    return sent;
                }
                let out = session.output().len();
                assert!(
                    out <= update_bound(*w, *h),
                    "an update of {out} bytes for a {w}x{h} frame"
                );
                flush(&mut session, &mut sent, &mut wire);
            }
        }
    }
    sent
}

/// Runs one input (the libFuzzer entry point).
pub fn run(data: &[u8]) -> usize {
    drive(data, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfb::client::Client;
    use crate::rfb::protocol::{encoding, PixelFormat, Rect};
    use rand::{Rng, SeedableRng};

    fn request(rect: Rect, incremental: bool) -> Vec<u8> {
        let mut m = vec![3u8, u8::from(incremental)];
        for v in [rect.x, rect.y, rect.w, rect.h] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        m
    }

    /// Appends client bytes as driver ops (chunks of random sizes).
    fn client_bytes(rng: &mut rand::rngs::StdRng, d: &mut Vec<u8>, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = rng.gen_range(1..=rest.len().min(127));
            d.push(n as u8);
            d.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
    }

    /// A well-formed session: handshake, native format, encodings, then random requests,
    /// keys, pointer and clipboard messages, display changes and update rounds; it ends
    /// with a full non-incremental request on the last frame. Returns the input, that
    /// frame's index and the protocol version used.
    fn structured(rng: &mut rand::rngs::StdRng) -> (Vec<u8>, usize, &'static [u8; 12]) {
        let mut d = Vec::new();
        let versions: [&[u8; 12]; 3] = [b"RFB 003.003\n", b"RFB 003.007\n", b"RFB 003.008\n"];
        let version = versions[rng.gen_range(0..3)];
        let mut hs = version.to_vec();
        if version != b"RFB 003.003\n" {
            hs.push(1);
        }
        hs.push(1);
        hs.extend_from_slice(&[0, 0, 0, 0]);
        hs.extend_from_slice(&PixelFormat::NATIVE.to_bytes());
        let mut encodings = vec![
            encoding::RAW,
            encoding::ZRLE,
            encoding::COPY_RECT,
            encoding::DESKTOP_SIZE,
            -239,
            5,
        ];
        let keep = rng.gen_range(0..encodings.len());
        encodings.truncate(keep.max(1));
        if rng.gen() {
            encodings.swap(0, keep.saturating_sub(1));
        }
        if !encodings.contains(&encoding::DESKTOP_SIZE) {
            encodings.push(encoding::DESKTOP_SIZE);
        }
        hs.extend_from_slice(&[2, 0]);
        hs.extend_from_slice(&(encodings.len() as u16).to_be_bytes());
        for e in &encodings {
            hs.extend_from_slice(&e.to_be_bytes());
        }
        client_bytes(rng, &mut d, &hs);
        let mut current = 0;
        for _ in 0..rng.gen_range(0..24) {
            match rng.gen_range(0..6) {
                0 => {
                    let r = Rect::new(
                        rng.gen_range(0..120),
                        rng.gen_range(0..100),
                        rng.gen_range(0..120),
                        rng.gen_range(0..100),
                    );
                    let m = request(r, rng.gen());
                    client_bytes(rng, &mut d, &m);
                }
                1 => {
                    let mut m = vec![4u8, rng.gen::<u8>() & 1, 0, 0];
                    let keysym: u32 = if rng.gen() {
                        rng.gen_range(0x20..0x7f)
                    } else {
                        rng.gen_range(0xff00..0x10000)
                    };
                    m.extend_from_slice(&keysym.to_be_bytes());
                    client_bytes(rng, &mut d, &m);
                }
                2 => {
                    let m = [5u8, rng.gen(), 0, rng.gen(), 0, rng.gen()];
                    client_bytes(rng, &mut d, &m);
                }
                3 => {
                    let len = rng.gen_range(0..300u32);
                    let mut m = vec![6u8, 0, 0, 0];
                    m.extend_from_slice(&len.to_be_bytes());
                    m.extend((0..len).map(|_| rng.gen::<u8>()));
                    client_bytes(rng, &mut d, &m);
                }
                4 => {
                    current = rng.gen_range(0..4);
                    d.push(0x80 | current as u8);
                }
                _ => d.push(0xc0),
            }
        }
        let (w, h) = SIZES[if current == 3 { 1 } else { 0 }];
        client_bytes(rng, &mut d, &request(Rect::new(0, 0, w, h), false));
        d.push(0xc0);
        (d, current, version)
    }

    /// The server's bytes as a client reads them (writes go nowhere).
    struct Replay(std::io::Cursor<Vec<u8>>);

    impl std::io::Read for Replay {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl std::io::Write for Replay {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The stable-toolchain fuzz run: 20,000 inputs (half raw bytes, half well-formed
    /// sessions whose output is decoded and must end on the frame shown) from a fixed seed;
    /// `STRATA_FUZZ_ITERS` raises the count.
    #[test]
    fn survives_arbitrary_inputs() {
        let iters: usize = std::env::var("STRATA_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0af8_5e55);
        let frames = frames();
        let mut checked = 0;
        for i in 0..iters {
            if i % 2 == 0 {
                let len = rng.gen_range(0..512);
                let mut data: Vec<u8> = (0..len).map(|_| rng.gen::<u8>()).collect();
                if rng.gen() {
                    // Past the handshake, so the message parser gets the garbage.
                    let mut hs = vec![12u8];
                    hs.extend_from_slice(b"RFB 003.008\n");
                    hs.extend_from_slice(&[2, 1, 1]);
                    hs.extend(data);
                    data = hs;
                }
                run(&data);
            } else {
                let (data, last, version) = structured(&mut rng);
                let mut wire = Vec::new();
                drive(&data, Some(&mut wire));
                let mut c = Client::handshake(Replay(std::io::Cursor::new(wire)), version).unwrap();
                let mut updates = 0;
                while let Ok(_u) = c.read_update() {
                    updates += 1;
                }
                assert!(updates >= 1, "input {i}: no update");
                let (w, h, px) = &frames[last];
                assert_eq!(c.screen.size(), (*w, *h), "input {i}");
                assert_eq!(
                    c.screen.pixels(),
                    &px[..],
                    "input {i}: the client's picture is wrong"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, iters / 2);
    }
}
