//! The console widget: the remote screen as one egui texture, kept current with partial
//! uploads, scaled to fit (keeping the aspect ratio) or shown 1:1; keyboard and pointer
//! input go to the session while the screen has focus; a toolbar with the status line,
//! Ctrl+Alt+Del and Reconnect.

use std::time::{Duration, Instant};

use egui::{Color32, Pos2, Rect, Sense, TextureHandle, TextureOptions, Vec2};

use super::framebuffer::{coalesce, Framebuffer, ScreenRect};
use super::keys::{KeyAction, Keyboard};
use super::session::{ConsoleInput, ConsoleSession, ConsoleStatus, ConsoleUpdate};

/// How long one frame may spend applying console updates before it draws.
const DRAIN_BUDGET: Duration = Duration::from_millis(6);
/// Room kept for the toolbar's buttons (Fit, 1:1, Ctrl+Alt+Del, Reconnect).
const TOOLBAR_BUTTONS_WIDTH: f32 = 260.0;
/// The accessibility label of the screen (tests find the widget by it).
pub const SCREEN_LABEL: &str = "VM console screen";

/// How the remote screen is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    /// As large as the area allows, aspect ratio kept.
    #[default]
    Fit,
    /// One remote pixel per screen pixel, scrollable.
    Actual,
}

/// Upload counters (tests check that rectangles go up as partial updates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Whole-texture uploads (one per resize).
    pub full: u64,
    /// Partial uploads.
    pub partial: u64,
    /// Pixels sent in partial uploads.
    pub partial_pixels: u64,
}

/// RFB pointer button bits.
fn button_bit(b: egui::PointerButton) -> u8 {
    match b {
        egui::PointerButton::Primary => 1,
        egui::PointerButton::Middle => 2,
        egui::PointerButton::Secondary => 4,
        egui::PointerButton::Extra1 | egui::PointerButton::Extra2 => 0,
    }
}

/// The remote pixel under `pos`, for a screen of `size` drawn into `image` (clamped to the
/// screen's edge when `pos` lies outside it).
pub fn to_remote(pos: Pos2, image: Rect, size: [usize; 2]) -> Option<(u16, u16)> {
    if image.width() <= 0.0 || image.height() <= 0.0 || size[0] == 0 || size[1] == 0 {
        return None;
    }
    let fx = (pos.x - image.min.x) / image.width() * size[0] as f32;
    let fy = (pos.y - image.min.y) / image.height() * size[1] as f32;
    let clamp = |v: f32, n: usize| v.floor().clamp(0.0, (n - 1) as f32) as u16;
    Some((clamp(fx, size[0]), clamp(fy, size[1])))
}

/// The size a `remote` screen is drawn at in `available` space.
pub fn fitted_size(remote: [usize; 2], available: Vec2, scale: Scale) -> Vec2 {
    let r = Vec2::new(remote[0] as f32, remote[1] as f32);
    match scale {
        Scale::Actual => r,
        Scale::Fit => {
            if r.x <= 0.0 || r.y <= 0.0 {
                return Vec2::ZERO;
            }
            let k = (available.x / r.x).min(available.y / r.y).max(0.0);
            r * k
        }
    }
}

/// The console widget and the session behind it.
#[derive(Default)]
pub struct ConsoleView {
    session: Option<ConsoleSession>,
    status: Option<ConsoleStatus>,
    framebuffer: Option<Framebuffer>,
    texture: Option<TextureHandle>,
    needs_full_upload: bool,
    dirty: Vec<ScreenRect>,
    /// How the screen is sized.
    pub scale: Scale,
    keyboard: Keyboard,
    buttons: u8,
    had_focus: bool,
    uploads: UploadStats,
    bells: u64,
    /// Updates the server sent that did not fit the screen (ignored).
    bad_updates: u64,
}

impl std::fmt::Debug for ConsoleView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleView")
            .field("status", &self.status)
            .field("framebuffer", &self.framebuffer)
            .field("uploads", &self.uploads)
            .finish_non_exhaustive()
    }
}

impl ConsoleView {
    /// Shows `session` (ending any previous one) from a blank screen.
    pub fn open(&mut self, session: ConsoleSession) {
        let scale = self.scale;
        *self = ConsoleView {
            session: Some(session),
            status: Some(ConsoleStatus::Connecting),
            scale,
            ..ConsoleView::default()
        };
    }

    /// Ends the session (releasing any keys held in the guest first).
    pub fn close(&mut self) {
        self.release_input();
        let scale = self.scale;
        *self = ConsoleView {
            scale,
            ..ConsoleView::default()
        };
    }

    /// True while a session is open.
    pub fn is_open(&self) -> bool {
        self.session.is_some()
    }

    /// The session, when open.
    pub fn session(&self) -> Option<&ConsoleSession> {
        self.session.as_ref()
    }

    /// The last status the session reported.
    pub fn status(&self) -> Option<&ConsoleStatus> {
        self.status.as_ref()
    }

    /// The remote screen as known here.
    pub fn framebuffer(&self) -> Option<&Framebuffer> {
        self.framebuffer.as_ref()
    }

    /// Size of the texture, once there is one.
    pub fn texture_size(&self) -> Option<[usize; 2]> {
        self.texture.as_ref().map(TextureHandle::size)
    }

    /// Upload counters.
    pub fn uploads(&self) -> UploadStats {
        self.uploads
    }

    /// Times the guest rang the bell.
    pub fn bells(&self) -> u64 {
        self.bells
    }

    /// Updates that did not fit the screen and were ignored.
    pub fn bad_updates(&self) -> u64 {
        self.bad_updates
    }

    /// The status line, in words.
    pub fn status_text(&self, now: Instant) -> String {
        match &self.status {
            None => "Not connected".to_string(),
            Some(ConsoleStatus::Connecting) => "Connecting…".to_string(),
            Some(ConsoleStatus::Connected { width, height }) => {
                format!("Connected {width}x{height}")
            }
            Some(ConsoleStatus::Disconnected { reason, retry_at }) => match retry_at {
                Some(at) if *at > now => {
                    let secs = at.saturating_duration_since(now).as_secs_f32().ceil() as u64;
                    format!("Disconnected, reconnecting in {secs} s: {reason}")
                }
                Some(_) => format!("Disconnected, reconnecting: {reason}"),
                None => format!("Disconnected: {reason}"),
            },
        }
    }

    fn send(&self, input: ConsoleInput) {
        if let Some(s) = &self.session {
            if !s.send(input) {
                tracing::debug!("console input dropped (session busy or gone)");
            }
        }
    }

    fn send_keys(&self, actions: Vec<KeyAction>) {
        for a in actions {
            self.send(ConsoleInput::Key(a));
        }
    }

    fn release_input(&mut self) {
        let mut released = Vec::new();
        self.keyboard.release_all(&mut released);
        self.send_keys(released);
        if self.buttons != 0 {
            self.buttons = 0;
            // Position unknown here: the server keeps the last one for a zero mask at 0,0,
            // which only matters for the release itself.
            self.send(ConsoleInput::Pointer {
                x: 0,
                y: 0,
                buttons: 0,
            });
        }
    }

    /// Applies waiting updates to the screen copy (within a time budget).
    pub fn drain(&mut self, ctx: &egui::Context) {
        let start = Instant::now();
        while let Some(update) = self.session.as_mut().and_then(ConsoleSession::try_recv) {
            self.apply(update);
            if start.elapsed() > DRAIN_BUDGET {
                ctx.request_repaint();
                break;
            }
        }
    }

    fn apply(&mut self, update: ConsoleUpdate) {
        match update {
            ConsoleUpdate::Status(s) => {
                if matches!(s, ConsoleStatus::Disconnected { .. }) {
                    // Nothing held survives into the next connection.
                    self.keyboard = Keyboard::default();
                    self.buttons = 0;
                }
                self.status = Some(s);
            }
            ConsoleUpdate::Resize { width, height } => {
                let same = self
                    .framebuffer
                    .as_ref()
                    .is_some_and(|f| f.size() == [usize::from(width), usize::from(height)]);
                if !same {
                    self.framebuffer = Some(Framebuffer::new(width, height));
                    self.dirty.clear();
                    self.needs_full_upload = true;
                }
            }
            ConsoleUpdate::Pixels { rect, rgbx } => {
                let r = self.framebuffer.as_mut().map(|f| f.put(rect, &rgbx));
                self.note_change(r);
            }
            ConsoleUpdate::Copy { dst, src } => {
                let r = self.framebuffer.as_mut().map(|f| f.copy(dst, src));
                self.note_change(r);
            }
            ConsoleUpdate::Bell => self.bells += 1,
        }
    }

    fn note_change(&mut self, r: Option<Result<ScreenRect, super::framebuffer::FramebufferError>>) {
        match r {
            Some(Ok(rect)) => self.dirty.push(rect),
            Some(Err(e)) => {
                self.bad_updates += 1;
                tracing::debug!(error = %e, "console update ignored");
            }
            None => self.bad_updates += 1,
        }
    }

    /// Brings the texture up to date: the whole screen after a resize, otherwise only the
    /// regions that changed.
    fn upload(&mut self, ctx: &egui::Context) {
        let Some(fb) = &self.framebuffer else {
            return;
        };
        if self.needs_full_upload || self.texture.is_none() {
            self.texture = Some(ctx.load_texture("vm-console", fb.image(), TextureOptions::LINEAR));
            self.uploads.full += 1;
            self.needs_full_upload = false;
            self.dirty.clear();
            return;
        }
        let Some(tex) = self.texture.as_mut() else {
            return;
        };
        for rect in coalesce(&self.dirty) {
            if let Ok(patch) = fb.patch(rect) {
                self.uploads.partial += 1;
                self.uploads.partial_pixels += rect.area() as u64;
                tex.set_partial(
                    [usize::from(rect.x), usize::from(rect.y)],
                    patch,
                    TextureOptions::LINEAR,
                );
            }
        }
        self.dirty.clear();
    }

    /// Draws the toolbar and the screen, and passes input on.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.drain(&ctx);
        self.upload(&ctx);
        let now = Instant::now();
        let connected = matches!(self.status, Some(ConsoleStatus::Connected { .. }));
        if let Some(ConsoleStatus::Disconnected {
            retry_at: Some(_), ..
        }) = &self.status
        {
            // Keep the countdown moving.
            ctx.request_repaint_after(Duration::from_millis(250));
        }
        ui.horizontal(|ui| {
            let text = self.status_text(now);
            let color = match &self.status {
                Some(ConsoleStatus::Connected { .. }) => crate::app::theme::ON,
                Some(ConsoleStatus::Disconnected { .. }) => crate::app::theme::WARN,
                _ => ui.visuals().text_color(),
            };
            // The status gets the room the buttons leave; a long reason is cut (shown whole
            // on hover) rather than pushing the buttons out of the window.
            let room = (ui.available_width() - TOOLBAR_BUTTONS_WIDTH).max(120.0);
            let height = ui.spacing().interact_size.y;
            ui.allocate_ui_with_layout(
                Vec2::new(room, height),
                egui::Layout::left_to_right(egui::Align::Center),
                |ui| {
                    ui.add(egui::Label::new(egui::RichText::new(text).color(color)).truncate());
                    if connected {
                        ui.separator();
                        let hint = if self.had_focus {
                            "Keyboard and mouse go to the VM · click outside the screen to release them"
                        } else {
                            "Click the screen to type into the VM"
                        };
                        ui.add(egui::Label::new(egui::RichText::new(hint).weak()).truncate());
                    }
                },
            );
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .add_enabled(self.session.is_some(), egui::Button::new("Reconnect"))
                    .on_hover_text("Drop the connection and connect again with a fresh ticket")
                    .clicked()
                {
                    self.release_input();
                    self.send(ConsoleInput::Reconnect);
                }
                if ui
                    .add_enabled(connected, egui::Button::new("Ctrl+Alt+Del"))
                    .on_hover_text("Send Ctrl+Alt+Del to the VM")
                    .clicked()
                {
                    self.send(ConsoleInput::CtrlAltDel);
                }
                ui.separator();
                ui.selectable_value(&mut self.scale, Scale::Actual, "1:1")
                    .on_hover_text("One VM pixel per screen pixel");
                ui.selectable_value(&mut self.scale, Scale::Fit, "Fit")
                    .on_hover_text("Scale the screen to the window, keeping its proportions");
            });
        });
        match self.scale {
            Scale::Fit => self.screen(ui, connected),
            Scale::Actual => {
                egui::ScrollArea::both()
                    .auto_shrink([false, false])
                    // The wheel belongs to the VM.
                    .scroll_source(egui::containers::scroll_area::ScrollSource {
                        mouse_wheel: false,
                        ..Default::default()
                    })
                    .show(ui, |ui| self.screen(ui, connected));
            }
        }
    }

    fn screen(&mut self, ui: &mut egui::Ui, connected: bool) {
        let available = ui.available_size();
        let Some(size) = self.framebuffer.as_ref().map(Framebuffer::size) else {
            ui.allocate_ui(available, |ui| {
                ui.centered_and_justified(|ui| {
                    ui.weak("The VM's screen appears here once connected.");
                });
            });
            return;
        };
        let drawn = fitted_size(size, available, self.scale);
        let area = match self.scale {
            Scale::Fit => available,
            Scale::Actual => drawn,
        };
        let (area_rect, _) = ui.allocate_exact_size(area, Sense::hover());
        // The screen itself, centred; the margin around it is not part of it.
        let image = Rect::from_center_size(area_rect.center(), drawn);
        let response = ui.interact(
            image,
            egui::Id::unique("vm-console-screen"),
            Sense::click_and_drag(),
        );
        response.widget_info(|| {
            egui::WidgetInfo::labeled(egui::accesskit::Role::Image, true, SCREEN_LABEL)
        });
        let painter = ui.painter_at(area_rect);
        painter.rect_filled(image, 0.0, Color32::BLACK);
        if let Some(tex) = &self.texture {
            painter.image(
                tex.id(),
                image,
                Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)),
                Color32::WHITE,
            );
        }
        if !connected {
            // The last picture stays, dimmed, while disconnected.
            painter.rect_filled(image, 0.0, Color32::from_black_alpha(150));
        }
        if response.clicked() || response.drag_started() {
            response.request_focus();
        } else if response.has_focus() && response.clicked_elsewhere() {
            response.surrender_focus();
        }
        let focused = response.has_focus();
        if focused {
            ui.memory_mut(|m| {
                m.set_focus_lock_filter(
                    response.id,
                    egui::EventFilter {
                        tab: true,
                        horizontal_arrows: true,
                        vertical_arrows: true,
                        escape: true,
                    },
                );
            });
            painter.rect_stroke(
                image.expand(1.0),
                0.0,
                egui::Stroke::new(2.0, ui.visuals().selection.stroke.color),
                egui::StrokeKind::Outside,
            );
        } else if self.had_focus {
            self.release_input();
        }
        self.had_focus = focused;
        if focused {
            // Also while (re)connecting: the session drops input it cannot deliver, and the
            // keyboard's record of held keys stays true.
            let (events, hover) = ui.input(|i| (i.events.clone(), i.pointer.hover_pos()));
            self.input(&events, hover, image, size);
        }
    }

    /// Passes keyboard and pointer events on (only called while the screen has focus).
    fn input(
        &mut self,
        events: &[egui::Event],
        hover: Option<Pos2>,
        image: Rect,
        size: [usize; 2],
    ) {
        let mut keys = Vec::new();
        for e in events {
            self.keyboard.translate(e, &mut keys);
            match e {
                egui::Event::PointerMoved(pos) if image.contains(*pos) || self.buttons != 0 => {
                    self.pointer(*pos, image, size);
                }
                egui::Event::PointerButton {
                    pos,
                    button,
                    pressed,
                    ..
                } => {
                    let bit = button_bit(*button);
                    if *pressed && image.contains(*pos) {
                        self.buttons |= bit;
                    } else if !*pressed {
                        self.buttons &= !bit;
                    } else {
                        continue;
                    }
                    self.pointer(*pos, image, size);
                }
                egui::Event::MouseWheel { delta, .. } => {
                    if let Some(pos) = hover.filter(|p| image.contains(*p)) {
                        self.wheel(*delta, pos, image, size);
                    }
                }
                _ => {}
            }
        }
        self.send_keys(keys);
    }

    fn pointer(&self, pos: Pos2, image: Rect, size: [usize; 2]) {
        if let Some((x, y)) = to_remote(pos, image, size) {
            self.send(ConsoleInput::Pointer {
                x,
                y,
                buttons: self.buttons,
            });
        }
    }

    fn wheel(&self, delta: Vec2, pos: Pos2, image: Rect, size: [usize; 2]) {
        let Some((x, y)) = to_remote(pos, image, size) else {
            return;
        };
        // Content moving down = scrolling up (RFB button 4, bit 8); up = button 5 (bit 16).
        let bit = if delta.y > 0.0 {
            8
        } else if delta.y < 0.0 {
            16
        } else {
            return;
        };
        for buttons in [self.buttons | bit, self.buttons] {
            self.send(ConsoleInput::Pointer { x, y, buttons });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_positions_scale_back_to_remote_pixels() {
        let image = Rect::from_min_size(Pos2::new(100.0, 50.0), Vec2::new(360.0, 200.0));
        let size = [720, 400];
        assert_eq!(to_remote(Pos2::new(100.0, 50.0), image, size), Some((0, 0)));
        assert_eq!(
            to_remote(Pos2::new(280.0, 150.0), image, size),
            Some((360, 200))
        );
        assert_eq!(
            to_remote(Pos2::new(459.9, 249.9), image, size),
            Some((719, 399))
        );
        // Outside: clamped to the edge.
        assert_eq!(
            to_remote(Pos2::new(0.0, 999.0), image, size),
            Some((0, 399))
        );
        assert_eq!(to_remote(Pos2::ZERO, Rect::NOTHING, size), None);
    }

    #[test]
    fn fit_keeps_the_aspect_ratio() {
        let s = fitted_size([720, 400], Vec2::new(1000.0, 1000.0), Scale::Fit);
        assert!(
            (s.x - 1000.0).abs() < 0.01 && (s.y - 555.555).abs() < 0.01,
            "{s:?}"
        );
        let s = fitted_size([720, 400], Vec2::new(1000.0, 200.0), Scale::Fit);
        assert!(
            (s.x - 360.0).abs() < 0.01 && (s.y - 200.0).abs() < 0.01,
            "{s:?}"
        );
        assert_eq!(
            fitted_size([720, 400], Vec2::new(10.0, 10.0), Scale::Actual),
            Vec2::new(720.0, 400.0)
        );
    }

    #[test]
    fn the_status_line_counts_down_to_the_next_attempt() {
        let mut v = ConsoleView::default();
        let now = Instant::now();
        assert_eq!(v.status_text(now), "Not connected");
        v.status = Some(ConsoleStatus::Connected {
            width: 720,
            height: 400,
        });
        assert_eq!(v.status_text(now), "Connected 720x400");
        v.status = Some(ConsoleStatus::Disconnected {
            reason: "the console connection was closed".into(),
            retry_at: Some(now + Duration::from_millis(2500)),
        });
        assert_eq!(
            v.status_text(now),
            "Disconnected, reconnecting in 3 s: the console connection was closed"
        );
    }
}
