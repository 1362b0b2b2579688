//! The VM's VNC console (`--vnc-socket`): the RFB server of [`crate::rfb`] on a unix
//! socket, showing the framebuffer and typing on the PS/2 keyboard.
//!
//! What it shows: the framebuffer once the guest has a display driver — it has read the
//! display registers (the test guest, a driver that probes them), or it has drawn anything
//! non-black (a Linux kernel that found the framebuffer in its boot parameters never reads
//! them). Until then, and always on a VM without a framebuffer, it shows the serial
//! console: the last lines of serial output (fed by [`SerialTee`], seeded with the end of
//! serial.log so a reset or a restore does not start blank), as text at the framebuffer's
//! size (640x480 without one). The switch to graphics is one-way.
//!
//! Keys go the way of the control socket's `key` request: queued on the i8042, which raises
//! IRQ 1. Pointer events are ignored (there is no mouse). The socket is bound before the
//! seccomp filter is installed; clients are served by the threads of [`crate::rfb::server`].

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::rfb::text::{TextConsole, CELL_W};
use crate::rfb::Console;

use super::devices::legacy::framebuffer::Framebuffer;
use super::devices::legacy::i8042::I8042;

/// Size of the text console on a VM without a framebuffer.
pub const TEXT_SIZE: (u16, u16) = (640, 480);
/// How much of the end of serial.log seeds the text console.
pub const LOG_TAIL: u64 = 16 * 1024;

/// The serial device's output: the log file, and the text console.
pub struct SerialTee {
    log: Box<dyn Write + Send>,
    text: Arc<Mutex<TextConsole>>,
}

impl SerialTee {
    /// Writes to `log` and feeds `text`.
    pub fn new(log: Box<dyn Write + Send>, text: Arc<Mutex<TextConsole>>) -> Self {
        Self { log, text }
    }
}

impl Write for SerialTee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.log.write(buf)?;
        self.text
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .feed(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.log.flush()
    }
}

/// A text console wrapping at the width of a display of `width` pixels, seeded with the
/// last lines of `serial_log` (from the first line that starts within its last
/// [`LOG_TAIL`] bytes; nothing when it cannot be read).
pub fn text_console(width: u16, serial_log: &Path) -> TextConsole {
    let mut text = TextConsole::new(usize::from(width) / CELL_W);
    let mut tail = Vec::new();
    if let Ok(mut f) = std::fs::File::open(serial_log) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let from = len.saturating_sub(LOG_TAIL);
        if f.seek(SeekFrom::Start(from)).is_ok() && f.take(LOG_TAIL).read_to_end(&mut tail).is_ok()
        {
            let start = if from == 0 {
                0
            } else {
                tail.iter()
                    .position(|b| *b == b'\n')
                    .map_or(tail.len(), |i| i + 1)
            };
            text.feed(&tail[start..]);
        }
    }
    text
}

/// The text console as last rendered.
struct Rendered {
    generation: Option<u64>,
    pixels: Vec<u8>,
}

/// What the VNC server shows and types on, for one VM.
pub struct VmConsole {
    framebuffer: Option<Arc<Framebuffer>>,
    text: Arc<Mutex<TextConsole>>,
    rendered: Mutex<Rendered>,
    /// The guest has a display driver: show the framebuffer from now on.
    graphics: AtomicBool,
    i8042: Arc<Mutex<I8042>>,
}

impl VmConsole {
    /// A console over the framebuffer (if any), the serial text and the keyboard.
    pub fn new(
        framebuffer: Option<Arc<Framebuffer>>,
        text: Arc<Mutex<TextConsole>>,
        i8042: Arc<Mutex<I8042>>,
    ) -> Self {
        Self {
            framebuffer,
            text,
            rendered: Mutex::new(Rendered {
                generation: None,
                pixels: Vec::new(),
            }),
            graphics: AtomicBool::new(false),
            i8042,
        }
    }

    /// The display size: the framebuffer's, else [`TEXT_SIZE`].
    pub fn size(&self) -> (u16, u16) {
        match &self.framebuffer {
            // Framebuffer sides are at most 4096.
            Some(fb) => (fb.width() as u16, fb.height() as u16),
            None => TEXT_SIZE,
        }
    }

    /// True once the framebuffer is shown.
    pub fn shows_framebuffer(&self) -> bool {
        self.graphics.load(Ordering::Relaxed)
    }
}

impl Console for VmConsole {
    fn capture(&self, out: &mut Vec<u8>) -> (u16, u16) {
        let (w, h) = self.size();
        if let Some(fb) = &self.framebuffer {
            fb.read_pixels(out);
            if self.shows_framebuffer() || fb.driver_seen() || out.iter().any(|b| *b != 0) {
                self.graphics.store(true, Ordering::Relaxed);
                return (w, h);
            }
        }
        let mut r = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
        // Only a copy is taken under the text's lock: the serial device (a vCPU thread)
        // waits on it with every byte the guest writes.
        let changed = {
            let text = self.text.lock().unwrap_or_else(|p| p.into_inner());
            (r.generation != Some(text.generation())).then(|| text.clone())
        };
        if let Some(text) = changed {
            text.render(usize::from(w), usize::from(h), &mut r.pixels);
            r.generation = Some(text.generation());
        }
        out.clear();
        out.extend_from_slice(&r.pixels);
        (w, h)
    }

    fn keys(&self, codes: &[u8]) -> bool {
        self.i8042
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_scancodes(codes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfb::text::FOREGROUND;
    use crate::vmm::devices::legacy::EventTrigger;
    use crate::vmm::devices::MmioDevice;
    use crate::vmm::VmmEvent;

    fn i8042() -> Arc<Mutex<I8042>> {
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        Arc::new(Mutex::new(I8042::new(
            EventTrigger::new(tx, || VmmEvent::Reset),
            None,
        )))
    }

    fn lit(px: &[u8]) -> usize {
        px.chunks_exact(4).filter(|p| *p == FOREGROUND).count()
    }

    #[test]
    fn serial_text_until_the_guest_reads_the_display_registers() {
        let fb = Arc::new(Framebuffer::new(320, 240).unwrap());
        let text = Arc::new(Mutex::new(TextConsole::new(40)));
        let console = VmConsole::new(Some(fb.clone()), text.clone(), i8042());
        let mut tee = SerialTee::new(Box::new(std::io::sink()), text);
        let mut px = Vec::new();
        assert_eq!(console.capture(&mut px), (320, 240));
        let cursor_only = lit(&px);
        tee.write_all(b"\x1b[1mbooting\x1b[0m\r\n").unwrap();
        console.capture(&mut px);
        assert!(lit(&px) > cursor_only + 20, "the text is drawn");
        assert!(!console.shows_framebuffer());
        // The guest probes the display: from now on, the (black) framebuffer.
        let mut b = [0u8; 4];
        fb.registers().read(0, &mut b);
        console.capture(&mut px);
        assert!(console.shows_framebuffer());
        assert!(px.iter().all(|b| *b == 0));
        assert!(console.keys(&[0x1e, 0x9e]));
    }

    #[test]
    fn a_guest_that_draws_without_probing_gets_its_framebuffer_and_no_framebuffer_is_text() {
        let fb = Arc::new(Framebuffer::new(64, 32).unwrap());
        let text = Arc::new(Mutex::new(TextConsole::new(8)));
        let console = VmConsole::new(Some(fb.clone()), text.clone(), i8042());
        let mut data = fb.contents();
        data[100] = 0x80;
        fb.load(&data).unwrap();
        let mut px = Vec::new();
        console.capture(&mut px);
        assert!(console.shows_framebuffer());
        assert_eq!(px[100], 0x80);
        let console = VmConsole::new(None, text, i8042());
        assert_eq!(console.capture(&mut px), TEXT_SIZE);
        assert_eq!(px.len(), 640 * 480 * 4);
    }

    #[test]
    fn the_text_console_starts_with_the_end_of_the_serial_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        assert_eq!(text_console(640, &log).lines().count(), 1);
        let mut body = String::new();
        for i in 0..2000 {
            body.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&log, &body).unwrap();
        let lines: Vec<String> = text_console(640, &log).lines().collect();
        assert_eq!(lines[lines.len() - 2], "line 1999");
        // Whole lines only: the first kept line is not cut.
        assert!(lines[0].starts_with("line "), "{:?}", lines[0]);
    }
}
