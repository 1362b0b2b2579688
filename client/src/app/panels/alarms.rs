//! Alarms on screen: the badge on an inventory row, the Alarms section of an object's
//! Summary, and the table of every active alarm in the bottom panel.

use egui::{Color32, Sense, Vec2};
use egui_extras::{Column, TableBuilder};
use strata_shared::model::{AlarmInfo, AlarmSeverity, ObjectKind};

use super::super::alarms::AlarmSet;
use super::super::model::Selection;
use super::super::{theme, Command, CommandQueue};

/// The colour of a severity.
pub fn color(s: AlarmSeverity) -> Color32 {
    match s {
        AlarmSeverity::Warning => theme::WARN,
        AlarmSeverity::Critical => theme::ERROR,
    }
}

/// A severity in words, capitalised.
pub fn severity_text(s: AlarmSeverity) -> &'static str {
    match s {
        AlarmSeverity::Warning => "Warning",
        AlarmSeverity::Critical => "Critical",
    }
}

/// A small triangle in the severity's colour, after an object's name; hovering lists the
/// object's alarms. Screen readers hear "Critical alarm" / "Warning alarm".
pub fn badge(ui: &mut egui::Ui, alarms: &AlarmSet, object: uuid::Uuid) {
    let Some((severity, count)) = alarms.worst(object) else {
        return;
    };
    let (rect, resp) = ui.allocate_exact_size(Vec2::splat(14.0), Sense::hover());
    let c = rect.center();
    let points = vec![
        c + Vec2::new(0.0, -6.0),
        c + Vec2::new(6.5, 5.0),
        c + Vec2::new(-6.5, 5.0),
    ];
    let p = ui.painter();
    p.add(egui::Shape::convex_polygon(
        points,
        color(severity),
        egui::Stroke::NONE,
    ));
    p.text(
        c + Vec2::new(0.0, 1.0),
        egui::Align2::CENTER_CENTER,
        "!",
        egui::FontId::proportional(9.0),
        Color32::BLACK,
    );
    let label = format!("{} alarm", severity_text(severity));
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::accesskit::Role::Image, true, &label));
    resp.on_hover_ui(|ui| {
        ui.strong(if count == 1 {
            "1 active alarm".to_string()
        } else {
            format!("{count} active alarms")
        });
        for a in alarms.on(object) {
            ui.colored_label(color(a.severity), &a.message);
        }
    });
}

/// The Alarms section of an object's Summary: each alarm with its state and an Acknowledge
/// button. Draws nothing when the object has none.
pub fn section(ui: &mut egui::Ui, alarms: &[&AlarmInfo], commands: &mut CommandQueue) {
    if alarms.is_empty() {
        return;
    }
    egui::Frame::group(ui.style())
        .inner_margin(10.0)
        .stroke(egui::Stroke::new(1.0, color(alarms[0].severity)))
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.strong("Alarms");
            ui.add_space(4.0);
            for a in alarms {
                ui.horizontal_wrapped(|ui| {
                    ui.colored_label(color(a.severity), severity_text(a.severity));
                    ui.label(format!("{}: {}", a.kind.label(), a.message));
                    ui.weak(format!("since {} UTC", theme::time(a.triggered_ms)));
                    acknowledgement(ui, a, commands);
                });
            }
        });
    ui.add_space(8.0);
}

fn acknowledgement(ui: &mut egui::Ui, a: &AlarmInfo, commands: &mut CommandQueue) {
    match &a.acknowledged_by {
        Some(user) => {
            let when = a.acknowledged_ms.map(theme::time).unwrap_or_default();
            ui.weak(format!("Acknowledged by {user} {when}"));
        }
        None => {
            if ui
                .small_button("Acknowledge")
                .on_hover_text("Mark it as seen: it stays active until its cause is gone")
                .clicked()
            {
                commands.send(Command::AcknowledgeAlarm(a.id));
            }
        }
    }
}

/// Where an alarm's object is in the inventory.
fn selection_of(a: &AlarmInfo) -> Option<Selection> {
    let id = a.target.id;
    Some(match a.target.kind {
        ObjectKind::Host => Selection::Host(id),
        ObjectKind::Vm => Selection::Vm(id),
        ObjectKind::Datastore => Selection::Datastore(id),
        ObjectKind::Cluster => Selection::Cluster(id),
        ObjectKind::Datacenter => Selection::Datacenter(id),
        ObjectKind::Pool => Selection::Pool(id),
        ObjectKind::User => return None,
    })
}

/// Every active alarm, most severe then newest first; a click on the object selects it.
pub fn table(ui: &mut egui::Ui, alarms: &AlarmSet, commands: &mut CommandQueue) {
    let all = alarms.all();
    if all.is_empty() {
        ui.weak("No active alarms.");
        return;
    }
    let height = ui.available_height();
    TableBuilder::new(ui)
        .id_salt("alarms_table")
        .striped(true)
        .auto_shrink([false, true])
        .min_scrolled_height(0.0)
        .max_scroll_height(height)
        .column(Column::exact(80.0))
        .column(Column::initial(180.0).resizable(true).clip(true))
        .column(Column::initial(140.0).resizable(true).clip(true))
        .column(Column::initial(420.0).resizable(true).clip(true))
        .column(Column::exact(150.0))
        .column(Column::remainder())
        .header(22.0, |mut h| {
            for t in [
                "Severity",
                "Object",
                "Alarm",
                "Message",
                "Triggered (UTC)",
                "Acknowledged",
            ] {
                h.col(|ui| {
                    ui.strong(t);
                });
            }
        })
        .body(|body| {
            body.rows(22.0, all.len(), |mut row| {
                let a = all[row.index()];
                row.col(|ui| {
                    ui.colored_label(color(a.severity), severity_text(a.severity));
                });
                row.col(|ui| {
                    let r = ui.link(&a.target.name);
                    if r.clicked() {
                        if let Some(sel) = selection_of(a) {
                            commands.send(Command::Select(sel));
                        }
                    }
                });
                row.col(|ui| {
                    ui.label(a.kind.label());
                });
                row.col(|ui| {
                    ui.label(&a.message).on_hover_text(&a.message);
                });
                row.col(|ui| {
                    ui.label(theme::time(a.triggered_ms));
                });
                row.col(|ui| acknowledgement(ui, a, commands));
            });
        });
}
