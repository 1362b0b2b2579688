//! A VM's serial console as a screen, for VMs without a display device (QEMU microvm): the
//! console gateway serves it with the same RFB server strata-vmx uses, so such a VM's console
//! is never blank. The picture is the serial log's last lines as text (followed as the log
//! grows); keys typed on it are turned back into characters and sent to the serial port.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::rfb::server::Console;
use crate::rfb::text::TextConsole;
use crate::vmm::devices::legacy::keymap::{char_for, BREAK};

/// The screen's size.
pub const WIDTH: u16 = 640;
/// The screen's size.
pub const HEIGHT: u16 = 480;
/// The most serial output read per frame (the rest comes with the next frames).
const READ_MAX: u64 = 256 << 10;

/// Set-1 scan codes back to the bytes a serial terminal sends (US layout).
#[derive(Debug, Default)]
pub struct ScancodeText {
    shift: u8,
    ctrl: u8,
    extended: bool,
}

impl ScancodeText {
    /// The bytes `codes` type.
    pub fn decode(&mut self, codes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &c in codes {
            if c == 0xe0 {
                self.extended = true;
                continue;
            }
            let extended = std::mem::take(&mut self.extended);
            let make = c & !BREAK;
            let down = c & BREAK == 0;
            match (extended, make) {
                (false, 0x2a | 0x36) => {
                    self.shift = if down {
                        self.shift.saturating_add(1)
                    } else {
                        self.shift.saturating_sub(1)
                    }
                }
                (_, 0x1d) => {
                    self.ctrl = if down {
                        self.ctrl.saturating_add(1)
                    } else {
                        self.ctrl.saturating_sub(1)
                    }
                }
                _ if !down => {}
                (true, 0x48) => out.extend_from_slice(b"\x1b[A"),
                (true, 0x50) => out.extend_from_slice(b"\x1b[B"),
                (true, 0x4d) => out.extend_from_slice(b"\x1b[C"),
                (true, 0x4b) => out.extend_from_slice(b"\x1b[D"),
                (true, 0x1c) => out.push(b'\n'),
                (true, _) => {}
                (false, 0x0e) => out.push(0x7f), // Backspace: the tty's erase character
                (false, code) => {
                    if let Some(ch) = char_for(code, self.shift > 0) {
                        let b = ch as u8;
                        if self.ctrl > 0 && b.is_ascii_alphabetic() {
                            out.push(b.to_ascii_lowercase() & 0x1f);
                        } else {
                            out.push(b);
                        }
                    }
                }
            }
        }
        out
    }
}

/// What the screen shows: the text, how far into the log it has read, and its last picture
/// (drawn again only when the text changed; viewers look up to 60 times a second).
struct Screen {
    text: TextConsole,
    offset: u64,
    picture: Vec<u8>,
}

/// The serial console of one VM as an RFB [`Console`].
pub struct SerialScreen {
    log: PathBuf,
    input: PathBuf,
    state: Mutex<Screen>,
    keys: Mutex<ScancodeText>,
}

impl SerialScreen {
    /// The screen of the serial log `log` (seeded with its end), typing into the serial
    /// input socket `input`.
    pub fn new(log: PathBuf, input: PathBuf) -> Self {
        let text = crate::vmm::vnc::text_console(WIDTH, &log);
        let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        Self {
            log,
            input,
            state: Mutex::new(Screen {
                text,
                offset,
                picture: Vec::new(),
            }),
            keys: Mutex::new(ScancodeText::default()),
        }
    }

    /// Feeds what the log gained since the last look; true when the text changed.
    fn follow(&self, text: &mut TextConsole, offset: &mut u64) -> bool {
        let Ok(mut f) = std::fs::File::open(&self.log) else {
            return false;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < *offset {
            // The log was truncated (a new log): start over at its beginning.
            *offset = 0;
        }
        if len == *offset || f.seek(SeekFrom::Start(*offset)).is_err() {
            return false;
        }
        let mut buf = Vec::new();
        if f.take(READ_MAX).read_to_end(&mut buf).is_err() || buf.is_empty() {
            return false;
        }
        *offset += buf.len() as u64;
        text.feed(&buf);
        true
    }
}

impl Console for SerialScreen {
    fn capture(&self, out: &mut Vec<u8>) -> (u16, u16) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Screen {
            text,
            offset,
            picture,
        } = &mut *state;
        if self.follow(text, offset) || picture.is_empty() {
            text.render(usize::from(WIDTH), usize::from(HEIGHT), picture);
        }
        out.clear();
        out.extend_from_slice(picture);
        (WIDTH, HEIGHT)
    }

    fn keys(&self, codes: &[u8]) -> bool {
        let bytes = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .decode(codes);
        if bytes.is_empty() {
            return true;
        }
        // One connection per key event: the serial socket serves one client at a time, and
        // the agent's console.send needs it too.
        match std::os::unix::net::UnixStream::connect(&self.input)
            .and_then(|mut s| s.write_all(&bytes))
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "serial console input failed");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::devices::legacy::keymap::scancodes_for;

    #[test]
    fn scan_codes_become_what_a_terminal_sends() {
        let mut k = ScancodeText::default();
        assert_eq!(
            k.decode(&scancodes_for("echo $((6*7))!\n").unwrap()),
            b"echo $((6*7))!\n"
        );
        // Ctrl+C, Backspace, an arrow key; break codes and unknown keys type nothing.
        let ctrl_c = [0x1d, 0x2e, 0xae, 0x9d];
        assert_eq!(k.decode(&ctrl_c), [0x03]);
        assert_eq!(k.decode(&[0x0e, 0x8e]), [0x7f]);
        assert_eq!(k.decode(&[0xe0, 0x48, 0xe0, 0xc8]), b"\x1b[A");
        assert_eq!(k.decode(&[0x3b, 0xbb, 0x9e]), b"");
        // Split across calls: the 0xe0 prefix is kept.
        assert_eq!(k.decode(&[0xe0]), b"");
        assert_eq!(k.decode(&[0x4b]), b"\x1b[D");
    }

    #[test]
    fn the_screen_follows_the_log_and_types_into_the_serial_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (log, input) = (dir.path().join("serial.log"), dir.path().join("serial"));
        std::fs::write(&log, "booting\n").unwrap();
        let listener = std::os::unix::net::UnixListener::bind(&input).unwrap();
        let screen = SerialScreen::new(log.clone(), input);
        let mut frame = Vec::new();
        assert_eq!(screen.capture(&mut frame), (WIDTH, HEIGHT));
        let lit = |f: &[u8]| f.chunks(4).filter(|p| p[..3] != [0, 0, 0]).count();
        let first = lit(&frame);
        assert!(first > 0, "the seeded text is drawn");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"a much longer second line of output\n")
            .unwrap();
        screen.capture(&mut frame);
        assert!(lit(&frame) > first, "new output is drawn");
        // Nothing new: the same picture again (kept, not drawn again), into any buffer.
        let mut again = vec![7u8; 3];
        screen.capture(&mut again);
        assert_eq!(again, frame);
        assert!(screen.keys(&scancodes_for("ls\n").unwrap()));
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"ls\n");
    }
}
