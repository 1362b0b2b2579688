//! Vertical scroll detection for CopyRect: a text console that scrolls moves whole rows of
//! pixels up (or down). Rows of the old and the new frame are hashed; for each shift the
//! longest band of rows that matches shifted is found, and the shift that saves the most
//! changed rows wins. The band is then compared byte for byte (a hash collision must never
//! produce a wrong picture), and sent as one CopyRect; only what is new is encoded.

/// Fewest changed rows a scroll must save to be worth a CopyRect.
pub const MIN_SAVED_ROWS: usize = 8;
/// Largest shift tried, rows (bounds the work on tall screens).
pub const MAX_SHIFT: usize = 1024;

/// A band of `height` full-width rows that moved from `src_y` to `dst_y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scroll {
    /// First source row.
    pub src_y: u16,
    /// First destination row.
    pub dst_y: u16,
    /// Rows.
    pub height: u16,
}

fn row_hash(row: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut words = row.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(0x0000_0100_0000_01b3);
        h ^= h >> 29;
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Row hashes of a frame (`stride` bytes a row).
pub fn row_hashes(pixels: &[u8], stride: usize, height: usize) -> Vec<u64> {
    (0..height)
        .map(|y| row_hash(&pixels[y * stride..(y + 1) * stride]))
        .collect()
}

/// Finds the scroll that turns most of `old` into `new` (both `height` rows of `stride`
/// bytes), if one saves at least [`MIN_SAVED_ROWS`] changed rows.
pub fn detect(old: &[u8], new: &[u8], stride: usize, height: usize) -> Option<Scroll> {
    if stride == 0 || old.len() < stride * height || new.len() < stride * height {
        return None;
    }
    let oh = row_hashes(old, stride, height);
    let nh = row_hashes(new, stride, height);
    if oh == nh {
        return None;
    }
    // (rows saved, scroll)
    let mut best: Option<(usize, Scroll)> = None;
    for shift in 1..height.min(MAX_SHIFT + 1) {
        // up: new[y] == old[y + shift]; down: new[y + shift] == old[y].
        for up in [true, false] {
            let mut run_start = 0;
            let mut run_saved = 0;
            for i in 0..=height - shift {
                let (dst, src) = if up { (i, i + shift) } else { (i + shift, i) };
                let matched = i < height - shift && nh[dst] == oh[src];
                if matched {
                    if nh[dst] != oh[dst] {
                        run_saved += 1;
                    }
                    continue;
                }
                if run_saved > best.map_or(MIN_SAVED_ROWS - 1, |b| b.0) {
                    let first_dst = if up { run_start } else { run_start + shift };
                    let first_src = if up { run_start + shift } else { run_start };
                    best = Some((
                        run_saved,
                        Scroll {
                            src_y: first_src as u16,
                            dst_y: first_dst as u16,
                            height: (i - run_start) as u16,
                        },
                    ));
                }
                run_start = i + 1;
                run_saved = 0;
            }
        }
    }
    let (_, s) = best?;
    let (src, dst, h) = (
        usize::from(s.src_y) * stride,
        usize::from(s.dst_y) * stride,
        usize::from(s.height) * stride,
    );
    (old[src..src + h] == new[dst..dst + h]).then_some(s)
}

/// Applies a scroll to a frame, as the client will.
pub fn apply(pixels: &mut [u8], stride: usize, s: &Scroll) {
    let src = usize::from(s.src_y) * stride;
    let len = usize::from(s.height) * stride;
    pixels.copy_within(src..src + len, usize::from(s.dst_y) * stride);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "text" frame: row y shows line (y / 16 + first) as a pattern of bytes.
    fn text(first: usize, lines: usize, stride: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..lines * 16 {
            let line = y / 16 + first;
            for x in 0..stride {
                let h = (line as u32).wrapping_mul(2_654_435_761)
                    ^ (x as u32).wrapping_mul(40_503)
                    ^ ((y % 16) as u32).wrapping_mul(97);
                let on = h.wrapping_mul(2_246_822_519) >> 29 == 0 && y % 16 < 12;
                v.push(if on { 0xc0 } else { 0 });
            }
        }
        v
    }

    #[test]
    fn a_console_scrolling_by_a_line_is_a_copy_of_all_but_one_line() {
        let stride = 640 * 4;
        let old = text(0, 30, stride);
        let mut new = text(1, 30, stride);
        let s = detect(&old, &new, stride, 480).unwrap();
        assert_eq!(
            s,
            Scroll {
                src_y: 16,
                dst_y: 0,
                height: 464
            }
        );
        let mut shadow = old.clone();
        apply(&mut shadow, stride, &s);
        assert_eq!(shadow[..464 * stride], new[..464 * stride]);
        // Scrolling by three lines, with the last line blank.
        let blank = 29 * 16 * stride;
        new = text(3, 30, stride);
        new[blank..].fill(0);
        let s = detect(&old, &new, stride, 480).unwrap();
        // Line 29 is still in the old frame's last row, so it is copied too.
        assert_eq!((s.src_y, s.dst_y, s.height), (48, 0, 432));
        // Downwards (scrolling back).
        let s = detect(&text(1, 30, stride), &old, stride, 480).unwrap();
        assert_eq!((s.src_y, s.dst_y, s.height), (0, 16, 464));
    }

    #[test]
    fn no_scroll_when_nothing_moved_or_everything_changed() {
        let stride = 64 * 4;
        let a = text(0, 8, stride);
        assert_eq!(detect(&a, &a, stride, 128), None);
        let b = vec![0x55; a.len()];
        assert_eq!(detect(&a, &b, stride, 128), None);
        // One changed line in place is not a scroll.
        let mut c = a.clone();
        c[5 * 16 * stride..6 * 16 * stride].fill(0xff);
        assert_eq!(detect(&a, &c, stride, 128), None);
        // Short or empty input: no panic.
        assert_eq!(detect(&a[..10], &a, stride, 128), None);
        assert_eq!(detect(&[], &[], 0, 0), None);
        assert_eq!(detect(&a, &c, stride, 0), None);
    }
}
