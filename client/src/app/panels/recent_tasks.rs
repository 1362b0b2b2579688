//! The Recent Tasks panel at the bottom of the window: every task, newest first.

use super::super::{View, ViewCtx};
use super::tasks::task_table;

/// The Recent Tasks panel (stateless).
#[derive(Debug, Default)]
pub struct RecentTasksView;

impl View for RecentTasksView {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>) {
        ui.add_space(4.0);
        let running = cx.model.tasks.iter().filter(|t| !t.state.is_done()).count();
        ui.horizontal(|ui| {
            ui.strong("Recent Tasks");
            if running > 0 {
                ui.spinner();
                ui.label(format!("{running} running"));
            }
        });
        let tasks: Vec<_> = cx.model.tasks.iter().take(200).collect();
        task_table(ui, "recent_tasks_table", &tasks);
    }
}
