//! The client → VM half of an RFB stream, message by message, so that key events arrive as
//! a US keyboard would type them: a client that sends a shifted symbol's keysym (`$`, `>`,
//! `A`) without pressing Shift — vncdotool does, and some web clients — gets Shift pressed
//! around it, since a VM's keyboard only has scan codes (QEMU's VNC server maps `$` to the
//! `4` key and leaves Shift alone). Every other message passes unchanged, streaming (a huge
//! ClientCutText or SetEncodings is forwarded as it comes, never buffered). A message type
//! the filter does not know switches it to plain pass-through for the rest of the stream.

/// Shift_L.
const SHIFT_L: u32 = 0xffe1;
/// Shift_R.
const SHIFT_R: u32 = 0xffe2;

/// True for keysyms a US keyboard types with Shift held (Latin-1 printable range; the
/// keyboard's own map decides, so the gateway and the native engine agree).
pub fn needs_shift(keysym: u32) -> bool {
    char::from_u32(keysym)
        .and_then(crate::vmm::devices::legacy::keymap::key_for)
        .is_some_and(|(_, shift)| shift)
}

/// Where the filter is in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// The client's ProtocolVersion (12 bytes) is due.
    Version,
    /// The client's choice of security type (1 byte; 3.7 and later).
    SecurityChoice,
    /// ClientInit (1 byte).
    ClientInit,
    /// Client messages.
    Messages,
    /// Forwarding this many body bytes unchanged.
    Body(u64),
    /// Everything unchanged from here on.
    PassThrough,
}

/// The filter over one connection's client → VM bytes.
#[derive(Debug)]
pub struct KeyFixup {
    state: State,
    /// The part of a handshake field or message header read so far.
    pending: Vec<u8>,
    shift_down: u8,
    last_key: Option<std::time::Instant>,
}

impl KeyFixup {
    /// A filter for a stream that starts with the client's ProtocolVersion (the WebSocket
    /// path, where the client does the handshake with the VM itself, security None).
    pub fn from_handshake() -> Self {
        Self {
            state: State::Version,
            pending: Vec::new(),
            shift_down: 0,
            last_key: None,
        }
    }

    /// A filter for a stream whose next byte is ClientInit (after the gateway did the
    /// handshake).
    pub fn from_client_init() -> Self {
        Self {
            state: State::ClientInit,
            pending: Vec::new(),
            shift_down: 0,
            last_key: None,
        }
    }

    /// Filters `input`, appending what the VM should get to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.state {
                State::PassThrough => {
                    out.extend_from_slice(input);
                    return;
                }
                State::Body(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::Messages
                    } else {
                        State::Body(left)
                    };
                }
                State::Version => {
                    if self.fill(&mut input, 12) {
                        let minor = &self.pending[8..11];
                        let three_three = minor == b"003";
                        out.extend_from_slice(&self.pending);
                        self.pending.clear();
                        self.state = if three_three {
                            State::ClientInit
                        } else {
                            State::SecurityChoice
                        };
                    }
                }
                State::SecurityChoice => {
                    out.push(input[0]);
                    input = &input[1..];
                    // None (1) is what the VM offers; anything else (an authentication
                    // exchange we cannot frame) is passed through untouched.
                    self.state = if out.last() == Some(&1) {
                        State::ClientInit
                    } else {
                        State::PassThrough
                    };
                }
                State::ClientInit => {
                    out.push(input[0]);
                    input = &input[1..];
                    self.state = State::Messages;
                }
                State::Messages => {
                    let want = match self.pending.first().copied().or(input.first().copied()) {
                        Some(0) => 20,
                        Some(2) => 4,
                        Some(3) => 10,
                        Some(4) => 8,
                        Some(5) => 6,
                        Some(6) => 8,
                        Some(255) if self.pending.get(1).is_some_and(|s| *s == 0) => 12,
                        Some(255) => 2,
                        _ => {
                            out.append(&mut self.pending);
                            self.state = State::PassThrough;
                            continue;
                        }
                    };
                    if self.fill(&mut input, want) {
                        if self.pending.len() == 2 && self.pending[..2] == [255, 0] {
                            // QEMU's extended key event: 10 more bytes of header.
                            continue;
                        }
                        self.message(out);
                    }
                }
            }
        }
    }

    /// True when a key event went through within `window` (input the VM may still be
    /// taking in).
    pub fn typed_within(&self, window: std::time::Duration) -> bool {
        self.last_key.is_some_and(|t| t.elapsed() < window)
    }

    /// Moves bytes from `input` into `pending` until it holds `want`; true when it does.
    fn fill(&mut self, input: &mut &[u8], want: usize) -> bool {
        let take = want.saturating_sub(self.pending.len()).min(input.len());
        self.pending.extend_from_slice(&input[..take]);
        *input = &input[take..];
        self.pending.len() >= want
    }

    /// A complete message header is in `pending`: emit it (fixed up), and set the state for
    /// what follows.
    fn message(&mut self, out: &mut Vec<u8>) {
        let p = std::mem::take(&mut self.pending);
        self.state = State::Messages;
        match p[0] {
            2 => {
                let n = u64::from(u16::from_be_bytes([p[2], p[3]]));
                if n > 0 {
                    self.state = State::Body(4 * n);
                }
            }
            6 => {
                let n = u64::from(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
                if n > 0 {
                    self.state = State::Body(n);
                }
            }
            4 => {
                self.last_key = Some(std::time::Instant::now());
                let down = p[1] != 0;
                let keysym = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
                if keysym == SHIFT_L || keysym == SHIFT_R {
                    self.shift_down = if down {
                        self.shift_down.saturating_add(1)
                    } else {
                        self.shift_down.saturating_sub(1)
                    };
                } else if down && self.shift_down == 0 && needs_shift(keysym) {
                    out.extend_from_slice(&key_event(true, SHIFT_L));
                    out.extend_from_slice(&p);
                    out.extend_from_slice(&key_event(false, SHIFT_L));
                    return;
                }
            }
            255 if p.len() == 2 => {
                // A QEMU message other than the extended key event: not ours to frame.
                out.extend_from_slice(&p);
                self.state = State::PassThrough;
                return;
            }
            _ => {}
        }
        out.extend_from_slice(&p);
    }
}

/// A KeyEvent message.
fn key_event(down: bool, keysym: u32) -> [u8; 8] {
    let k = keysym.to_be_bytes();
    [4, u8::from(down), 0, 0, k[0], k[1], k[2], k[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: &mut KeyFixup, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        f.feed(input, &mut out);
        out
    }

    #[test]
    fn shifted_symbols_get_shift_unless_the_client_holds_it() {
        let mut f = KeyFixup::from_client_init();
        let mut input = vec![1u8]; // ClientInit
        input.extend_from_slice(&key_event(true, '$' as u32));
        input.extend_from_slice(&key_event(false, '$' as u32));
        let out = run(&mut f, &input);
        let mut want = vec![1u8];
        want.extend_from_slice(&key_event(true, SHIFT_L));
        want.extend_from_slice(&key_event(true, '$' as u32));
        want.extend_from_slice(&key_event(false, SHIFT_L));
        want.extend_from_slice(&key_event(false, '$' as u32));
        assert_eq!(out, want);
        // A client that presses Shift itself is left alone; plain keys too.
        let mut held = Vec::new();
        for (d, k) in [
            (true, SHIFT_R),
            (true, '>' as u32),
            (false, '>' as u32),
            (false, SHIFT_R),
            (true, 'a' as u32),
        ] {
            held.extend_from_slice(&key_event(d, k));
        }
        assert_eq!(run(&mut f, &held), held);
        assert!(f.typed_within(std::time::Duration::from_secs(5)));
        assert!(!KeyFixup::from_client_init().typed_within(std::time::Duration::from_secs(5)));
        assert!(needs_shift('A' as u32) && needs_shift('?' as u32));
        assert!(!needs_shift('a' as u32) && !needs_shift('4' as u32) && !needs_shift(0xff0d));
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ~!@#$%^&*()_+{}|:\"<>?".chars() {
            assert!(needs_shift(c as u32), "{c}");
        }
        for c in "abcdefghijklmnopqrstuvwxyz0123456789`-=[]\\;',./ ".chars() {
            assert!(!needs_shift(c as u32), "{c}");
        }
    }

    #[test]
    fn the_handshake_and_other_messages_pass_unchanged_in_any_chunking() {
        let mut stream = b"RFB 003.008\n".to_vec();
        stream.push(1); // security None
        stream.push(1); // ClientInit
        stream.extend_from_slice(&[0; 20]); // SetPixelFormat
        stream.extend_from_slice(&[2, 0, 0, 2, 0, 0, 0, 16, 0xff, 0xff, 0xff, 0x21]);
        stream.extend_from_slice(&[3, 1, 0, 0, 0, 0, 2, 128, 1, 224]);
        stream.extend_from_slice(&[5, 1, 0, 10, 0, 20]);
        stream.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c']);
        stream.extend_from_slice(&[255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0x1e]);
        stream.extend_from_slice(&key_event(true, '!' as u32));
        let whole = run(&mut KeyFixup::from_handshake(), &stream);
        assert_eq!(whole.len(), stream.len() + 16, "shift around the '!'");
        assert_eq!(&whole[..stream.len() - 8], &stream[..stream.len() - 8]);
        for split in 0..stream.len() {
            let mut f = KeyFixup::from_handshake();
            let mut out = run(&mut f, &stream[..split]);
            out.extend(run(&mut f, &stream[split..]));
            assert_eq!(out, whole, "split at {split}");
        }
        let mut f = KeyFixup::from_handshake();
        let bytewise: Vec<u8> = stream.iter().flat_map(|b| run(&mut f, &[*b])).collect();
        assert_eq!(bytewise, whole);
    }

    #[test]
    fn unknown_messages_switch_to_pass_through_and_huge_bodies_stream() {
        let mut f = KeyFixup::from_client_init();
        let mut input = vec![1u8, 77, 1, 2, 3];
        input.extend_from_slice(&key_event(true, '$' as u32));
        assert_eq!(
            run(&mut f, &input),
            input,
            "after type 77 nothing is touched"
        );
        // A ClientCutText claiming 4 GiB is forwarded as it comes, not buffered.
        let mut f = KeyFixup::from_client_init();
        let out = run(&mut f, &[1, 6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, b'x', b'y']);
        assert_eq!(out.len(), 11);
        assert_eq!(f.state, State::Body(0xffff_ffff - 2));
        // Random bytes never panic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut f = KeyFixup::from_handshake();
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let mut out = Vec::new();
            f.feed(&bytes, &mut out);
            // Nothing is lost: what is not out yet is a header still incomplete.
            assert!(out.len() + f.pending.len() >= bytes.len());
        }
    }
}
