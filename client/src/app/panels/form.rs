//! Small pieces the dialogs share: a labelled row with its error beside it, the server's
//! refusal, the OK / Cancel row, and number parsing with reasons in words.

use super::super::theme;

/// Width of a form's label column.
pub const LABEL_WIDTH: f32 = 120.0;
/// Width of the error column beside the fields.
pub const ERROR_WIDTH: f32 = 250.0;

/// An error (or nothing) in the third column of a form row, wrapped to its width.
pub fn error_text(ui: &mut egui::Ui, e: Option<&str>) {
    match e {
        Some(e) => {
            ui.scope(|ui| {
                ui.set_max_width(ERROR_WIDTH);
                ui.add(egui::Label::new(egui::RichText::new(e).color(theme::ERROR)).wrap());
            });
        }
        None => {
            ui.label("");
        }
    }
}

/// A grid of form rows: label, field, error.
pub fn grid(id: &str, ui: &mut egui::Ui, add: impl FnOnce(&mut egui::Ui)) {
    egui::Grid::new(id)
        .num_columns(3)
        .min_col_width(LABEL_WIDTH)
        .spacing([10.0, 6.0])
        .show(ui, add);
}

/// One row: a label, a single-line text field labelled by it, and the field's error.
pub fn text_row(
    ui: &mut egui::Ui,
    label: &str,
    text: &mut String,
    width: f32,
    enabled: bool,
    error: Option<&str>,
) -> egui::Response {
    let l = ui.label(label);
    let r = ui
        .add_enabled(
            enabled,
            egui::TextEdit::singleline(text)
                .desired_width(width)
                .min_size(egui::vec2(width, 0.0)),
        )
        .labelled_by(l.id);
    error_text(ui, error);
    ui.end_row();
    r
}

/// A section heading inside a form.
pub fn section(ui: &mut egui::Ui, title: &str) {
    ui.add_space(4.0);
    ui.strong(title);
    ui.add_space(2.0);
}

/// The server's refusal of the last OK, in a red box.
pub fn server_error(ui: &mut egui::Ui, e: Option<&str>) {
    if let Some(e) = e {
        egui::Frame::new()
            .fill(theme::ERROR_BG)
            .inner_margin(6.0)
            .corner_radius(4.0)
            .show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.add(egui::Label::new(egui::RichText::new(e).color(theme::ERROR)).wrap());
            });
    }
}

/// What the button row was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buttons {
    /// Nothing.
    None,
    /// The OK button.
    Ok,
    /// Cancel.
    Cancel,
}

/// The OK and Cancel buttons: OK only when `valid` (else `why` on hover) and nothing is
/// pending; a spinner while the server answers.
pub fn ok_cancel(
    ui: &mut egui::Ui,
    ok_label: &str,
    valid: bool,
    why: &str,
    pending: bool,
) -> Buttons {
    let mut out = Buttons::None;
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        let ok = ui.add_enabled(
            valid && !pending,
            egui::Button::new(ok_label).min_size(egui::vec2(72.0, 0.0)),
        );
        let ok = if valid {
            ok
        } else {
            ok.on_disabled_hover_text(why)
        };
        if ok.clicked() {
            out = Buttons::Ok;
        }
        if ui
            .add(egui::Button::new("Cancel").min_size(egui::vec2(72.0, 0.0)))
            .clicked()
        {
            out = Buttons::Cancel;
        }
        if pending {
            ui.spinner();
            ui.label("Sending…");
        } else if !valid {
            ui.weak(why);
        }
    });
    out
}

/// Parses a whole number in `range`: `what` names it ("the memory"), `unit` is its unit.
pub fn parse_whole(
    text: &str,
    what: &str,
    unit: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(capitalized(&format!("enter {what}")));
    }
    if let Some(rest) = t.strip_prefix('-') {
        if rest.trim().parse::<u64>().is_ok() {
            return Err(capitalized(&format!("{what} cannot be negative")));
        }
    }
    let v: u64 = t.parse().map_err(|_| {
        if unit.is_empty() {
            format!("{t:?} is not a whole number")
        } else {
            format!("{t:?} is not a whole number of {unit}")
        }
    })?;
    if !range.contains(&v) {
        return Err(capitalized(&format!(
            "{what} must be {} to {}{}",
            range.start(),
            range.end(),
            unit_suffix(unit)
        )));
    }
    Ok(v)
}

fn unit_suffix(unit: &str) -> String {
    if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    }
}

/// The text with its first letter in upper case (API messages start in lower case).
pub fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A management dialog: a fixed-size window `width` wide in the middle of the screen, titled
/// `title`; `id` keeps it apart from other windows. Returns what `add` returned, when shown.
pub fn dialog<R>(
    ctx: &egui::Context,
    title: impl Into<egui::WidgetText>,
    id: &str,
    width: f32,
    add: impl FnOnce(&mut egui::Ui) -> R,
) -> Option<R> {
    egui::Window::new(title)
        .id(egui::Id::unique(id))
        .collapsible(false)
        .resizable(false)
        .default_width(width)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            ui.set_width(width);
            add(ui)
        })
        .and_then(|r| r.inner)
}

/// The "In datacenter NAME" line at the top of a dialog.
pub fn in_datacenter(ui: &mut egui::Ui, name: &str) {
    ui.horizontal(|ui| {
        ui.weak("In datacenter");
        ui.label(name);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_refused_in_words() {
        assert_eq!(parse_whole("4", "the vCPUs", "", 1..=64), Ok(4));
        assert_eq!(
            parse_whole("", "the memory", "MiB", 16..=1024),
            Err("Enter the memory".into())
        );
        assert_eq!(
            parse_whole("-3", "the memory", "MiB", 16..=1024),
            Err("The memory cannot be negative".into())
        );
        assert_eq!(
            parse_whole("lots", "the memory", "MiB", 16..=1024),
            Err("\"lots\" is not a whole number of MiB".into())
        );
        assert_eq!(
            parse_whole("8", "the memory", "MiB", 16..=1024),
            Err("The memory must be 16 to 1024 MiB".into())
        );
    }
}
