//! The client's copy of the remote screen: rectangles from the server are written into it,
//! and the regions they changed come back out as small images for
//! [`egui::TextureHandle::set_partial`], so a frame never re-uploads the whole screen.
//!
//! A CPU-side copy is needed anyway: CopyRect copies from pixels already on screen, and a
//! GPU texture cannot be read back.

use egui::{Color32, ColorImage};

/// More changed regions than this in one frame are uploaded as their bounding box.
pub const MAX_PATCHES_PER_FRAME: usize = 32;

/// A rectangle of the remote screen, in remote pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScreenRect {
    /// Left edge.
    pub x: u16,
    /// Top edge.
    pub y: u16,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
}

impl ScreenRect {
    /// A rectangle.
    pub fn new(x: u16, y: u16, width: u16, height: u16) -> Self {
        ScreenRect {
            x,
            y,
            width,
            height,
        }
    }

    /// Number of pixels.
    pub fn area(&self) -> usize {
        usize::from(self.width) * usize::from(self.height)
    }

    fn right(&self) -> usize {
        usize::from(self.x) + usize::from(self.width)
    }

    fn bottom(&self) -> usize {
        usize::from(self.y) + usize::from(self.height)
    }

    /// The smallest rectangle holding both.
    pub fn union(&self, other: &ScreenRect) -> ScreenRect {
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        let right = self.right().max(other.right());
        let bottom = self.bottom().max(other.bottom());
        ScreenRect {
            x,
            y,
            width: u16::try_from(right - usize::from(x)).unwrap_or(u16::MAX),
            height: u16::try_from(bottom - usize::from(y)).unwrap_or(u16::MAX),
        }
    }
}

/// Why an update could not be applied (the server sent something inconsistent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramebufferError {
    /// The rectangle reaches outside the screen.
    #[error("rectangle {rect:?} lies outside the {width}x{height} screen")]
    OutOfBounds {
        /// The rectangle.
        rect: ScreenRect,
        /// Screen width.
        width: usize,
        /// Screen height.
        height: usize,
    },
    /// The pixel data does not fit the rectangle.
    #[error("{got} bytes of pixels for a {w}x{h} rectangle (expected {expected})", w = rect.width, h = rect.height)]
    WrongLength {
        /// The rectangle.
        rect: ScreenRect,
        /// Bytes given.
        got: usize,
        /// Bytes needed (4 per pixel).
        expected: usize,
    },
}

/// Turns 32-bit RGBx pixels (the wire format the session asks for: red, green, blue, then a
/// byte that servers leave 0 or undefined) into opaque colours.
pub fn rgbx_to_colors(data: &[u8]) -> Vec<Color32> {
    data.chunks_exact(4)
        .map(|p| Color32::from_rgb(p[0], p[1], p[2]))
        .collect()
}

/// The image patch for one rectangle of RGBx pixels, alpha forced to opaque (a pure
/// function of the update: the same bytes always give the same patch).
pub fn rgbx_patch(rect: ScreenRect, data: &[u8]) -> Result<ColorImage, FramebufferError> {
    let expected = rect.area() * 4;
    if data.len() != expected {
        return Err(FramebufferError::WrongLength {
            rect,
            got: data.len(),
            expected,
        });
    }
    Ok(ColorImage::new(
        [usize::from(rect.width), usize::from(rect.height)],
        rgbx_to_colors(data),
    ))
}

/// The remote screen as the client knows it.
#[derive(Clone)]
pub struct Framebuffer {
    width: usize,
    height: usize,
    pixels: Vec<Color32>,
}

impl std::fmt::Debug for Framebuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framebuffer")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl Framebuffer {
    /// A black screen of this size.
    pub fn new(width: u16, height: u16) -> Self {
        let (width, height) = (usize::from(width), usize::from(height));
        Framebuffer {
            width,
            height,
            pixels: vec![Color32::BLACK; width * height],
        }
    }

    /// `[width, height]`.
    pub fn size(&self) -> [usize; 2] {
        [self.width, self.height]
    }

    /// The pixel at `(x, y)`.
    pub fn pixel(&self, x: usize, y: usize) -> Option<Color32> {
        (x < self.width && y < self.height).then(|| self.pixels[y * self.width + x])
    }

    /// True while every pixel is black (nothing drawn yet, or a black screen).
    pub fn is_black(&self) -> bool {
        self.pixels
            .iter()
            .all(|p| p.r() == 0 && p.g() == 0 && p.b() == 0)
    }

    /// The whole screen as one image (for a new texture after a resize).
    pub fn image(&self) -> ColorImage {
        ColorImage::new([self.width, self.height], self.pixels.clone())
    }

    fn check(&self, rect: ScreenRect) -> Result<(), FramebufferError> {
        if rect.right() > self.width || rect.bottom() > self.height {
            return Err(FramebufferError::OutOfBounds {
                rect,
                width: self.width,
                height: self.height,
            });
        }
        Ok(())
    }

    /// Writes a rectangle of RGBx pixels (alpha forced to opaque); returns the region changed.
    pub fn put(&mut self, rect: ScreenRect, data: &[u8]) -> Result<ScreenRect, FramebufferError> {
        self.check(rect)?;
        let patch = rgbx_patch(rect, data)?;
        let w = usize::from(rect.width);
        for (row, src) in patch.pixels.chunks_exact(w.max(1)).enumerate() {
            let start = (usize::from(rect.y) + row) * self.width + usize::from(rect.x);
            self.pixels[start..start + w].copy_from_slice(src);
        }
        Ok(rect)
    }

    /// CopyRect: copies the pixels at `src` (same size as `dst`) to `dst`; the two may
    /// overlap. Returns the region changed.
    pub fn copy(
        &mut self,
        dst: ScreenRect,
        src: ScreenRect,
    ) -> Result<ScreenRect, FramebufferError> {
        self.check(dst)?;
        let src = ScreenRect {
            width: dst.width,
            height: dst.height,
            ..src
        };
        self.check(src)?;
        let w = usize::from(dst.width);
        let rows: Vec<usize> = if dst.y > src.y {
            // Moving down: copy bottom-up so no source row is overwritten before it is read.
            (0..usize::from(dst.height)).rev().collect()
        } else {
            (0..usize::from(dst.height)).collect()
        };
        for row in rows {
            let from = (usize::from(src.y) + row) * self.width + usize::from(src.x);
            let to = (usize::from(dst.y) + row) * self.width + usize::from(dst.x);
            self.pixels.copy_within(from..from + w, to);
        }
        Ok(dst)
    }

    /// The current pixels of a region, for [`egui::TextureHandle::set_partial`].
    pub fn patch(&self, rect: ScreenRect) -> Result<ColorImage, FramebufferError> {
        self.check(rect)?;
        let w = usize::from(rect.width);
        let mut pixels = Vec::with_capacity(rect.area());
        for row in 0..usize::from(rect.height) {
            let start = (usize::from(rect.y) + row) * self.width + usize::from(rect.x);
            pixels.extend_from_slice(&self.pixels[start..start + w]);
        }
        Ok(ColorImage::new([w, usize::from(rect.height)], pixels))
    }
}

/// The regions to upload for one frame's changes: each one as it is, or, past
/// [`MAX_PATCHES_PER_FRAME`], their bounding box (one larger upload beats hundreds of tiny
/// ones). Empty rectangles are dropped.
pub fn coalesce(dirty: &[ScreenRect]) -> Vec<ScreenRect> {
    let nonempty = dirty.iter().filter(|r| r.area() > 0).copied();
    if dirty.len() <= MAX_PATCHES_PER_FRAME {
        return nonempty.collect();
    }
    nonempty.reduce(|a, b| a.union(&b)).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgbx(pixels: &[[u8; 3]]) -> Vec<u8> {
        pixels.iter().flat_map(|p| [p[0], p[1], p[2], 0]).collect()
    }

    #[test]
    fn a_patch_is_the_rectangle_with_alpha_forced_opaque() {
        let data = rgbx(&[[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]);
        let patch = rgbx_patch(ScreenRect::new(5, 6, 2, 2), &data).unwrap();
        assert_eq!(patch.size, [2, 2]);
        assert_eq!(patch.pixels[0], Color32::from_rgb(1, 2, 3));
        assert_eq!(patch.pixels[3], Color32::from_rgb(10, 11, 12));
        assert!(patch.pixels.iter().all(|p| p.a() == 255));
        assert!(matches!(
            rgbx_patch(ScreenRect::new(0, 0, 2, 2), &data[..12]),
            Err(FramebufferError::WrongLength { expected: 16, .. })
        ));
    }

    #[test]
    fn put_writes_only_its_rectangle_and_reports_it() {
        let mut fb = Framebuffer::new(4, 3);
        assert!(fb.is_black());
        let rect = ScreenRect::new(1, 1, 2, 1);
        let changed = fb.put(rect, &rgbx(&[[255, 0, 0], [0, 255, 0]])).unwrap();
        assert_eq!(changed, rect);
        assert_eq!(fb.pixel(1, 1), Some(Color32::from_rgb(255, 0, 0)));
        assert_eq!(fb.pixel(2, 1), Some(Color32::from_rgb(0, 255, 0)));
        assert_eq!(fb.pixel(0, 1), Some(Color32::BLACK));
        assert_eq!(fb.pixel(3, 1), Some(Color32::BLACK));
        assert!(!fb.is_black());
        let patch = fb.patch(rect).unwrap();
        assert_eq!(patch.size, [2, 1]);
        assert_eq!(patch.pixels[1], Color32::from_rgb(0, 255, 0));
        assert!(matches!(
            fb.put(ScreenRect::new(3, 0, 2, 1), &rgbx(&[[1, 1, 1], [1, 1, 1]])),
            Err(FramebufferError::OutOfBounds { .. })
        ));
    }

    /// A 4x4 screen whose pixel (x, y) has red = 10*y + x.
    fn numbered() -> Framebuffer {
        let mut fb = Framebuffer::new(4, 4);
        let data: Vec<u8> = (0..4u8)
            .flat_map(|y| (0..4u8).flat_map(move |x| [10 * y + x, 0, 0, 0]))
            .collect();
        fb.put(ScreenRect::new(0, 0, 4, 4), &data).unwrap();
        fb
    }

    fn red(fb: &Framebuffer, x: usize, y: usize) -> u8 {
        fb.pixel(x, y).unwrap().r()
    }

    #[test]
    fn copy_rect_moves_pixels_and_handles_overlap() {
        // Disjoint.
        let mut fb = numbered();
        let dst = ScreenRect::new(2, 2, 2, 2);
        assert_eq!(fb.copy(dst, ScreenRect::new(0, 0, 2, 2)).unwrap(), dst);
        assert_eq!(red(&fb, 2, 2), 0);
        assert_eq!(red(&fb, 3, 3), 11);
        assert_eq!(fb.patch(dst).unwrap().pixels[3].r(), 11);
        // Overlapping, moving down (a scroll): rows must be read before they are written.
        let mut fb = numbered();
        fb.copy(ScreenRect::new(0, 1, 4, 3), ScreenRect::new(0, 0, 4, 3))
            .unwrap();
        for y in 1..4 {
            assert_eq!(red(&fb, 1, y), 10 * (y as u8 - 1) + 1, "row {y}");
        }
        // Overlapping, moving up.
        let mut fb = numbered();
        fb.copy(ScreenRect::new(0, 0, 4, 3), ScreenRect::new(0, 1, 4, 3))
            .unwrap();
        for y in 0..3 {
            assert_eq!(red(&fb, 2, y), 10 * (y as u8 + 1) + 2, "row {y}");
        }
        // Overlapping sideways within a row.
        let mut fb = numbered();
        fb.copy(ScreenRect::new(1, 0, 3, 1), ScreenRect::new(0, 0, 3, 1))
            .unwrap();
        assert_eq!(
            (0..4).map(|x| red(&fb, x, 0)).collect::<Vec<_>>(),
            vec![0, 0, 1, 2]
        );
        // A source outside the screen is refused.
        assert!(fb
            .copy(ScreenRect::new(0, 0, 2, 2), ScreenRect::new(3, 3, 2, 2))
            .is_err());
    }

    #[test]
    fn many_small_changes_upload_as_one_bounding_box() {
        let few = [ScreenRect::new(0, 0, 1, 1), ScreenRect::new(5, 5, 2, 2)];
        assert_eq!(coalesce(&few), few.to_vec());
        let many: Vec<ScreenRect> = (0..40).map(|i| ScreenRect::new(i, i / 2, 1, 1)).collect();
        assert_eq!(coalesce(&many), vec![ScreenRect::new(0, 0, 40, 20)]);
        assert!(coalesce(&[ScreenRect::new(1, 1, 0, 5)]).is_empty());
    }
}
