//! The Tasks tab (tasks on the selected object) and the task table the Recent Tasks panel
//! shares.

use egui_extras::{Column, TableBuilder};
use strata_shared::model::{TaskInfo, TaskState};

use super::super::{theme, View, ViewCtx};

/// The Tasks tab (stateless).
#[derive(Debug, Default)]
pub struct TasksView;

impl View for TasksView {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>) {
        let Some(sel) = cx.selection else { return };
        let inv = &cx.model.inventory;
        let scope = inv.scope_of(sel);
        let tasks: Vec<&TaskInfo> = cx
            .model
            .tasks
            .iter()
            .filter(|t| match &scope {
                None => true,
                Some(ids) => t.target.as_ref().is_some_and(|o| ids.contains(&o.id)),
            })
            .collect();
        task_table(ui, "tasks_tab", &tasks);
    }
}

/// A table of tasks, newest first, with progress bars and results in words.
pub fn task_table(ui: &mut egui::Ui, id: &str, tasks: &[&TaskInfo]) {
    if tasks.is_empty() {
        ui.weak("No tasks.");
        return;
    }
    let height = ui.available_height();
    TableBuilder::new(ui)
        .id_salt(id)
        .striped(true)
        // Scroll inside a short panel instead of growing it to egui's 200-point minimum.
        .auto_shrink([false, true])
        .min_scrolled_height(0.0)
        .max_scroll_height(height)
        .column(Column::initial(220.0).resizable(true).clip(true))
        .column(Column::initial(140.0).resizable(true).clip(true))
        .column(Column::initial(320.0).resizable(true).clip(true))
        .column(Column::exact(80.0))
        .column(Column::exact(150.0))
        .column(Column::remainder())
        .header(22.0, |mut h| {
            for t in [
                "Task",
                "Target",
                "Status",
                "Initiator",
                "Queued (UTC)",
                "Completed (UTC)",
            ] {
                h.col(|ui| {
                    ui.strong(t);
                });
            }
        })
        .body(|body| {
            body.rows(22.0, tasks.len(), |mut row| {
                let t = tasks[row.index()];
                row.col(|ui| {
                    ui.label(&t.description);
                });
                row.col(|ui| {
                    ui.label(t.target.as_ref().map(|o| o.name.as_str()).unwrap_or("—"));
                });
                row.col(|ui| status(ui, t));
                row.col(|ui| {
                    ui.label(&t.user);
                });
                row.col(|ui| {
                    ui.label(theme::time(t.queued_ms));
                });
                row.col(|ui| {
                    ui.label(t.completed_ms.map(theme::time).unwrap_or_default());
                });
            });
        });
}

fn status(ui: &mut egui::Ui, t: &TaskInfo) {
    match t.state {
        TaskState::Queued | TaskState::Running => {
            let text = match &t.step {
                Some(s) => format!("{}% — {s}", t.progress),
                None => format!("{}%", t.progress),
            };
            ui.add(
                egui::ProgressBar::new(f32::from(t.progress) / 100.0)
                    .text(text)
                    .desired_width(ui.available_width()),
            );
        }
        TaskState::Success => {
            ui.colored_label(theme::ON, theme::task_state_text(t.state));
        }
        TaskState::Error => {
            let msg = t
                .error
                .as_ref()
                .map(|e| e.message.as_str())
                .unwrap_or("failed");
            ui.colored_label(theme::ERROR, format!("Failed: {msg}"))
                .on_hover_text(msg);
        }
    }
}
