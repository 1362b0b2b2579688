//! The Events tab: events about the selected object and what it contains.

use egui_extras::{Column, TableBuilder};
use strata_shared::model::Severity;

use super::super::{theme, View, ViewCtx};

/// The Events tab (stateless).
#[derive(Debug, Default)]
pub struct EventsView;

impl View for EventsView {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>) {
        let Some(sel) = cx.selection else { return };
        let inv = &cx.model.inventory;
        let scope = inv.scope_of(sel);
        let events: Vec<_> = cx
            .model
            .events
            .iter()
            .filter(|e| match &scope {
                None => true,
                Some(ids) => e.object.as_ref().is_some_and(|o| ids.contains(&o.id)),
            })
            .collect();
        if events.is_empty() {
            ui.weak("No events.");
            return;
        }
        TableBuilder::new(ui)
            .id_salt("events_table")
            .striped(true)
            .auto_shrink([false, false])
            .column(Column::exact(150.0))
            .column(Column::exact(70.0))
            .column(Column::initial(130.0).resizable(true))
            .column(Column::remainder().clip(true))
            .header(22.0, |mut h| {
                for t in ["Time (UTC)", "Severity", "Object", "Description"] {
                    h.col(|ui| {
                        ui.strong(t);
                    });
                }
            })
            .body(|body| {
                body.rows(20.0, events.len(), |mut row| {
                    let e = events[row.index()];
                    row.col(|ui| {
                        ui.label(theme::time(e.time_ms));
                    });
                    row.col(|ui| {
                        let (c, t) = match e.severity {
                            Severity::Info => (ui.visuals().text_color(), "info"),
                            Severity::Warning => (theme::WARN, "warning"),
                            Severity::Error => (theme::ERROR, "error"),
                        };
                        ui.colored_label(c, t);
                    });
                    row.col(|ui| {
                        ui.label(e.object.as_ref().map(|o| o.name.as_str()).unwrap_or("—"));
                    });
                    row.col(|ui| {
                        let text = match &e.user {
                            Some(u) => format!("{} (by {u})", e.message),
                            None => e.message.clone(),
                        };
                        ui.label(text);
                    });
                });
            });
    }
}
