//! Colours, icons and small drawing helpers shared by the panels.

use egui::{Color32, Sense, Vec2};
use strata_shared::model::{ConnectionState, DatastoreInfo, PowerState, TaskState};

use super::model::{InventoryModel, Selection};

/// Powered on.
pub const ON: Color32 = Color32::from_rgb(0x3f, 0xb9, 0x50);
/// Powered off.
pub const OFF: Color32 = Color32::from_rgb(0x8b, 0x94, 0x9e);
/// Paused or suspended.
pub const SUSPENDED: Color32 = Color32::from_rgb(0xe3, 0xb3, 0x41);
/// Unknown / attention.
pub const WARN: Color32 = Color32::from_rgb(0xd2, 0x99, 0x22);
/// Failure text.
pub const ERROR: Color32 = Color32::from_rgb(0xf8, 0x51, 0x49);
/// Failure background.
pub const ERROR_BG: Color32 = Color32::from_rgb(0x3d, 0x1a, 0x1a);
/// Datacenters.
pub const DATACENTER: Color32 = Color32::from_rgb(0x58, 0xa6, 0xff);
/// Clusters.
pub const CLUSTER: Color32 = Color32::from_rgb(0xbc, 0x8c, 0xff);
/// Resource pools.
pub const POOL: Color32 = Color32::from_rgb(0x39, 0xc5, 0xcf);
/// Templates.
pub const TEMPLATE: Color32 = Color32::from_rgb(0xa5, 0xb4, 0xfc);
/// Accessible datastores.
pub const DATASTORE: Color32 = Color32::from_rgb(0x6c, 0xb6, 0xff);
/// Networks.
pub const NETWORK: Color32 = Color32::from_rgb(0x56, 0xd3, 0x64);
/// Folders.
pub const FOLDER: Color32 = Color32::from_rgb(0xc9, 0xa2, 0x6b);

/// Visual settings for the whole app.
pub fn apply(ctx: &egui::Context) {
    ctx.set_visuals(egui::Visuals::dark());
}

/// Colour of a VM's power state.
pub fn power_color(p: PowerState) -> Color32 {
    match p {
        PowerState::PoweredOn => ON,
        PowerState::PoweredOff => OFF,
        PowerState::Paused | PowerState::Suspended => SUSPENDED,
        PowerState::Unknown => WARN,
    }
}

/// A VM's power state in words.
pub fn power_text(p: PowerState) -> &'static str {
    match p {
        PowerState::PoweredOn => "Powered on",
        PowerState::PoweredOff => "Powered off",
        PowerState::Paused => "Paused",
        PowerState::Suspended => "Suspended",
        PowerState::Unknown => "Unknown",
    }
}

/// Colour of a host's connection state.
pub fn connection_color(c: ConnectionState) -> Color32 {
    match c {
        ConnectionState::Connected => ON,
        ConnectionState::Disconnected => WARN,
        ConnectionState::NotTrusted => ERROR,
    }
}

/// A host's connection state in words.
pub fn connection_text(c: ConnectionState) -> &'static str {
    match c {
        ConnectionState::Connected => "Connected",
        ConnectionState::Disconnected => "Not responding",
        ConnectionState::NotTrusted => "Certificate changed",
    }
}

/// A task's state in words.
pub fn task_state_text(s: TaskState) -> &'static str {
    match s {
        TaskState::Queued => "Queued",
        TaskState::Running => "Running",
        TaskState::Success => "Completed",
        TaskState::Error => "Failed",
    }
}

/// Which shape an icon has.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// Datacenter: outlined square.
    Datacenter,
    /// Cluster: three dots.
    Cluster,
    /// Host: filled square.
    Host,
    /// Resource pool: a pie with a slice taken out.
    Pool,
    /// VM: filled circle.
    Vm,
    /// Template: a ring.
    Template,
    /// Datastore: a stack of disks.
    Datastore,
    /// Network: three linked nodes.
    Network,
    /// Folder.
    Folder,
}

/// Paints a 14-point icon of a shape and colour.
pub fn icon(ui: &mut egui::Ui, shape: Shape, color: Color32) {
    let (rect, _) = ui.allocate_exact_size(Vec2::splat(14.0), Sense::hover());
    let p = ui.painter();
    let c = rect.center();
    match shape {
        Shape::Datacenter => {
            p.rect_stroke(
                rect.shrink(2.0),
                2.0,
                egui::Stroke::new(1.6, color),
                egui::StrokeKind::Inside,
            );
            p.rect_filled(rect.shrink(5.0), 1.0, color);
        }
        Shape::Cluster => {
            for (dx, dy) in [(-3.0, 2.5), (3.0, 2.5), (0.0, -3.0)] {
                p.circle_filled(c + Vec2::new(dx, dy), 2.6, color);
            }
        }
        Shape::Host => {
            p.rect_filled(rect.shrink(2.0), 2.0, color);
            p.line_segment(
                [
                    egui::pos2(rect.left() + 4.0, c.y),
                    egui::pos2(rect.right() - 4.0, c.y),
                ],
                egui::Stroke::new(1.2, Color32::from_black_alpha(160)),
            );
        }
        Shape::Pool => {
            p.circle_stroke(c, 5.0, egui::Stroke::new(1.6, color));
            p.add(egui::Shape::convex_polygon(
                vec![
                    c,
                    c + Vec2::new(0.0, -5.0),
                    c + Vec2::new(3.5, -3.5),
                    c + Vec2::new(5.0, 0.0),
                ],
                color,
                egui::Stroke::NONE,
            ));
        }
        Shape::Vm => {
            p.circle_filled(c, 5.0, color);
        }
        Shape::Template => {
            p.circle_stroke(c, 4.5, egui::Stroke::new(2.0, color));
        }
        Shape::Datastore => {
            for dy in [-3.5, 0.0, 3.5] {
                p.rect_filled(
                    egui::Rect::from_center_size(c + Vec2::new(0.0, dy), Vec2::new(11.0, 2.6)),
                    1.0,
                    color,
                );
            }
        }
        Shape::Network => {
            let stroke = egui::Stroke::new(1.4, color);
            let (a, b, d) = (
                c + Vec2::new(0.0, -4.0),
                c + Vec2::new(-4.5, 3.5),
                c + Vec2::new(4.5, 3.5),
            );
            p.line_segment([a, b], stroke);
            p.line_segment([a, d], stroke);
            for q in [a, b, d] {
                p.circle_filled(q, 2.0, color);
            }
        }
        Shape::Folder => {
            let body = egui::Rect::from_min_max(
                egui::pos2(rect.left() + 1.5, rect.top() + 4.0),
                egui::pos2(rect.right() - 1.5, rect.bottom() - 2.5),
            );
            let tab = egui::Rect::from_min_size(
                egui::pos2(rect.left() + 1.5, rect.top() + 2.5),
                Vec2::new(5.0, 2.5),
            );
            p.rect_filled(tab, 1.0, color);
            p.rect_filled(body, 1.5, color);
        }
    }
}

/// A datastore's colour and state in words: accessible from every host that mounts it,
/// from some, or from none.
pub fn datastore_state(d: &DatastoreInfo) -> (Color32, String) {
    let bad = d.inaccessible_on.len();
    if bad == 0 {
        (DATASTORE, "Accessible".into())
    } else if bad >= d.hosts.len() {
        (ERROR, "Inaccessible".into())
    } else {
        (
            WARN,
            format!("Inaccessible on {bad} of {} hosts", d.hosts.len()),
        )
    }
}

/// The icon of an inventory object, coloured by its state.
pub fn kind_icon(ui: &mut egui::Ui, sel: Selection, inv: &InventoryModel) {
    match sel {
        Selection::Datacenter(_) => icon(ui, Shape::Datacenter, DATACENTER),
        Selection::Cluster(_) => icon(ui, Shape::Cluster, CLUSTER),
        Selection::Host(id) => {
            let c = inv
                .hosts
                .get(&id)
                .map(|h| connection_color(h.connection_state))
                .unwrap_or(OFF);
            icon(ui, Shape::Host, c)
        }
        Selection::Pool(_) => icon(ui, Shape::Pool, POOL),
        Selection::Vm(id) => match inv.vms.get(&id) {
            Some(v) if v.spec.template => icon(ui, Shape::Template, TEMPLATE),
            Some(v) => icon(ui, Shape::Vm, power_color(v.power_state)),
            None => icon(ui, Shape::Vm, OFF),
        },
        Selection::Datastore(id) => {
            let c = inv
                .datastores
                .get(&id)
                .map(|d| datastore_state(d).0)
                .unwrap_or(OFF);
            icon(ui, Shape::Datastore, c)
        }
    }
}

/// A labelled capacity bar: "used of total" with the fraction filled.
pub fn capacity_bar(ui: &mut egui::Ui, label: &str, used: f64, total: f64, text: String) {
    let frac = if total > 0.0 {
        (used / total).clamp(0.0, 1.0) as f32
    } else {
        0.0
    };
    // Dark fills keep the white text on them readable.
    let color = if frac > 0.9 {
        Color32::from_rgb(0xa8, 0x2a, 0x2a)
    } else if frac > 0.75 {
        Color32::from_rgb(0x8f, 0x5e, 0x00)
    } else {
        Color32::from_rgb(0x1f, 0x5f, 0xb0)
    };
    ui.label(label);
    ui.add(
        egui::ProgressBar::new(frac)
            .fill(color)
            .text(egui::RichText::new(text).color(Color32::WHITE))
            .desired_width(ui.available_width().min(420.0)),
    );
}

/// MiB as a short human size.
pub fn mib(m: u64) -> String {
    if m >= 1024 * 1024 {
        format!("{:.1} TiB", m as f64 / (1024.0 * 1024.0))
    } else if m >= 1024 {
        format!("{:.1} GiB", m as f64 / 1024.0)
    } else {
        format!("{m} MiB")
    }
}

/// Bytes as a short human size.
pub fn bytes(b: u64) -> String {
    mib(b / (1024 * 1024))
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS` (UTC), as the CLI prints it.
pub fn time(ms: i64) -> String {
    crate::cli::format::time(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_read_well() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(mib(512), "512 MiB");
        assert_eq!(mib(2048), "2.0 GiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
