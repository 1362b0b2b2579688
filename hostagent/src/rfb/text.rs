//! Text mode: what the console shows while a guest has no framebuffer driver — the last
//! lines of its serial output, rendered as light-grey text on black with the 8x8 font of
//! `font8x8`, each glyph row doubled (cells of 8x16: 80 columns × 30 rows at 640x480,
//! like a VGA text console).
//!
//! [`TextConsole`] is the terminal's memory: a bounded ring of lines fed with raw serial
//! bytes. ANSI escape sequences (CSI, OSC and the rest) are dropped, so are control
//! characters other than newline, carriage return (back to column 0), backspace and tab;
//! UTF-8 is decoded (characters the font lacks show as '?'); lines longer than the screen
//! wrap.

use std::collections::VecDeque;

use font8x8::legacy::{BASIC_LEGACY, BLOCK_LEGACY, BOX_LEGACY, LATIN_LEGACY};

/// Cell width, pixels.
pub const CELL_W: usize = 8;
/// Cell height, pixels (the 8-pixel glyph, each row twice).
pub const CELL_H: usize = 16;
/// The text colour (bytes B, G, R, X).
pub const FOREGROUND: [u8; 4] = [0xc0, 0xc0, 0xc0, 0];
/// Lines kept (more than a screen; the rest is dropped oldest first).
pub const MAX_LINES: usize = 256;
/// Longest escape sequence followed before it is given up (and dropped).
const MAX_ESCAPE: usize = 256;

/// Where the escape-sequence filter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// Plain text.
    None,
    /// After ESC.
    Start,
    /// In ESC with intermediate bytes (ESC ( B …).
    Intermediate,
    /// In a CSI sequence (ESC [ … final).
    Csi,
    /// In a string (OSC, DCS, …) until BEL or ESC \.
    String,
    /// ESC inside a string (ESC backslash ends it).
    InStringEsc,
}

/// The lines of a serial console.
#[derive(Debug, Clone)]
pub struct TextConsole {
    cols: usize,
    lines: VecDeque<Vec<char>>,
    current: Vec<char>,
    col: usize,
    escape: Escape,
    escape_len: usize,
    utf8: u32,
    utf8_left: u8,
    generation: u64,
}

impl TextConsole {
    /// An empty console whose lines wrap at `cols` columns.
    pub fn new(cols: usize) -> Self {
        Self {
            cols: cols.max(1),
            lines: VecDeque::new(),
            current: Vec::new(),
            col: 0,
            escape: Escape::None,
            escape_len: 0,
            utf8: 0,
            utf8_left: 0,
            generation: 0,
        }
    }

    /// Changes with every byte fed (to tell whether a rendering is still current).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The finished lines and the current one, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.lines
            .iter()
            .chain(std::iter::once(&self.current))
            .map(|l| l.iter().collect())
    }

    /// Feeds serial output.
    pub fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        for &b in bytes {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        if self.escape != Escape::None {
            self.escape_len += 1;
            if self.escape_len > MAX_ESCAPE {
                self.escape = Escape::None;
            }
        }
        match self.escape {
            Escape::None => {}
            Escape::Start => {
                self.escape = match b {
                    b'[' => Escape::Csi,
                    b']' | b'P' | b'X' | b'^' | b'_' => Escape::String,
                    0x20..=0x2f => Escape::Intermediate,
                    _ => Escape::None,
                };
                return;
            }
            Escape::Intermediate => {
                if !(0x20..=0x2f).contains(&b) {
                    self.escape = Escape::None;
                }
                return;
            }
            Escape::Csi => {
                match b {
                    0x40..=0x7e => self.escape = Escape::None,
                    0x1b => self.start_escape(),
                    _ => {}
                }
                return;
            }
            Escape::String => {
                match b {
                    0x07 => self.escape = Escape::None,
                    0x1b => self.escape = Escape::InStringEsc,
                    _ => {}
                }
                return;
            }
            Escape::InStringEsc => {
                self.escape = if b == b'\\' {
                    Escape::None
                } else {
                    Escape::String
                };
                return;
            }
        }
        if b >= 0x80 {
            self.utf8_byte(b);
            return;
        }
        if self.utf8_left > 0 {
            // A sequence cut short.
            self.utf8_left = 0;
            self.put('?');
        }
        match b {
            0x1b => self.start_escape(),
            b'\n' => self.newline(),
            b'\r' => self.col = 0,
            0x08 => self.col = self.col.saturating_sub(1),
            // To the next tab stop (what it passes over stays).
            b'\t' => self.col = ((self.col / 8 + 1) * 8).min(self.cols),
            0x20..=0x7e => self.put(char::from(b)),
            _ => {}
        }
    }

    fn start_escape(&mut self) {
        self.escape = Escape::Start;
        self.escape_len = 0;
    }

    fn utf8_byte(&mut self, b: u8) {
        if b & 0xc0 == 0x80 {
            if self.utf8_left == 0 {
                self.put('?');
                return;
            }
            self.utf8 = (self.utf8 << 6) | u32::from(b & 0x3f);
            self.utf8_left -= 1;
            if self.utf8_left == 0 {
                match char::from_u32(self.utf8) {
                    // C1 controls are not shown.
                    Some(c) if !('\u{80}'..'\u{a0}').contains(&c) => self.put(c),
                    Some(_) => {}
                    None => self.put('?'),
                }
            }
            return;
        }
        if self.utf8_left > 0 {
            self.put('?');
        }
        (self.utf8, self.utf8_left) = match b {
            0xc2..=0xdf => (u32::from(b & 0x1f), 1),
            0xe0..=0xef => (u32::from(b & 0x0f), 2),
            0xf0..=0xf4 => (u32::from(b & 0x07), 3),
            _ => {
                self.put('?');
                (0, 0)
            }
        };
    }

    fn put(&mut self, c: char) {
        if self.col >= self.cols {
            self.newline();
        }
        if self.col < self.current.len() {
            self.current[self.col] = c;
        } else {
            self.current.resize(self.col, ' ');
            self.current.push(c);
        }
        self.col += 1;
    }

    fn newline(&mut self) {
        let line = std::mem::take(&mut self.current);
        if self.lines.len() >= MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
        self.col = 0;
    }

    /// Renders the last lines into `out` as a `width` × `height` XRGB8888 frame: as many
    /// rows of text as fit, the newest at the bottom once the screen is full, and a cursor
    /// (an underline) where the next character goes.
    pub fn render(&self, width: usize, height: usize, out: &mut Vec<u8>) {
        out.clear();
        out.resize(width * height * 4, 0);
        let rows = height / CELL_H;
        let cols = width / CELL_W;
        if rows == 0 || cols == 0 {
            return;
        }
        let total = self.lines.len() + 1;
        let first = total.saturating_sub(rows);
        let stride = width * 4;
        let visible = self.lines.iter().chain(std::iter::once(&self.current));
        for (row, line) in visible.skip(first).enumerate() {
            for (col, c) in line.iter().take(cols).enumerate() {
                if *c == ' ' {
                    continue;
                }
                let g = glyph(*c);
                for (gy, bits) in g.iter().enumerate() {
                    if *bits == 0 {
                        continue;
                    }
                    for dy in 0..2 {
                        let y = row * CELL_H + gy * 2 + dy;
                        let at = y * stride + col * CELL_W * 4;
                        for gx in 0..8 {
                            if bits >> gx & 1 != 0 {
                                out[at + gx * 4..at + gx * 4 + 4].copy_from_slice(&FOREGROUND);
                            }
                        }
                    }
                }
            }
        }
        // The cursor.
        let row = total - 1 - first;
        if self.col < cols {
            for y in [row * CELL_H + CELL_H - 2, row * CELL_H + CELL_H - 1] {
                let at = y * stride + self.col * CELL_W * 4;
                for px in out[at..at + CELL_W * 4].chunks_exact_mut(4) {
                    px.copy_from_slice(&FOREGROUND);
                }
            }
        }
    }
}

/// The 8x8 glyph of `c` (bit 0 of each row is its leftmost pixel); '?' when the font has
/// none.
pub fn glyph(c: char) -> [u8; 8] {
    let u = c as usize;
    match u {
        0x20..=0x7f => BASIC_LEGACY[u],
        0xa0..=0xff => LATIN_LEGACY[u - 0xa0],
        0x2500..=0x257f => BOX_LEGACY[u - 0x2500],
        0x2580..=0x259f => BLOCK_LEGACY[u - 0x2580],
        _ => BASIC_LEGACY[usize::from(b'?')],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(t: &TextConsole) -> Vec<String> {
        t.lines().collect()
    }

    #[test]
    fn escapes_and_controls_are_stripped_and_cr_returns() {
        let mut t = TextConsole::new(80);
        t.feed(b"\x1b[1;32mgreen\x1b[0m \x1b]0;title\x07ok\x1b(B\r\n");
        t.feed(b"bell\x07 nul\x00 del\x7f|\x1b]8;;http://x\x1b\\link\x1b[K\n");
        t.feed(b"12345\rab\x08c\tx\n");
        t.feed("caf\u{e9} \u{2500}\u{1f600} \u{85}!".as_bytes());
        t.feed(b"\xff\n");
        assert_eq!(
            lines(&t),
            vec![
                "green ok",
                "bell nul del|link",
                "ac345   x",
                "caf\u{e9} \u{2500}\u{1f600} !?",
                ""
            ]
        );
        assert_eq!(glyph('\u{1f600}'), glyph('?'));
        assert_ne!(glyph('A'), glyph('?'));
    }

    #[test]
    fn long_lines_wrap_and_the_ring_is_bounded() {
        let mut t = TextConsole::new(10);
        t.feed(b"0123456789abcdef\n");
        assert_eq!(lines(&t), vec!["0123456789", "abcdef", ""]);
        let g = t.generation();
        for i in 0..1000 {
            t.feed(format!("line {i}\n").as_bytes());
        }
        assert_ne!(t.generation(), g);
        let l = lines(&t);
        assert_eq!(l.len(), MAX_LINES + 1);
        assert_eq!(l[MAX_LINES - 1], "line 999");
        // An unterminated escape sequence gives up eventually.
        t.feed(b"\x1b[");
        t.feed(&[b'1'; 300]);
        t.feed(b"back");
        assert!(lines(&t).last().unwrap().ends_with("back"));
    }

    #[test]
    fn rendering_puts_glyphs_in_cells_and_keeps_the_newest_lines() {
        let mut t = TextConsole::new(80);
        t.feed(b"A\n");
        let mut px = Vec::new();
        t.render(640, 480, &mut px);
        assert_eq!(px.len(), 640 * 480 * 4);
        let lit = |px: &[u8], x0: usize, y0: usize| {
            (y0..y0 + CELL_H)
                .flat_map(|y| (x0..x0 + CELL_W).map(move |x| (y * 640 + x) * 4))
                .filter(|i| px[*i..*i + 4] == FOREGROUND)
                .count()
        };
        let a_dots: u32 = glyph('A').iter().map(|r| r.count_ones()).sum();
        assert_eq!(lit(&px, 0, 0), a_dots as usize * 2);
        assert_eq!(lit(&px, 8, 0), 0);
        // The cursor is at the start of row 1.
        assert_eq!(lit(&px, 0, 16), CELL_W * 2);
        // 40 lines: the first eleven scrolled away, the last one on row 28, the cursor on 29.
        for i in 0..39 {
            t.feed(format!("{}\n", char::from(b'B' + (i % 20) as u8)).as_bytes());
        }
        t.render(640, 480, &mut px);
        let last: u32 = glyph('T').iter().map(|r| r.count_ones()).sum();
        assert_eq!(lit(&px, 0, 28 * 16), last as usize * 2);
        // Tiny screens render nothing, without panicking.
        t.render(7, 15, &mut px);
        assert!(px.iter().all(|b| *b == 0));
    }
}
