//! The bottom panel: Recent Tasks (every task, newest first) or every active alarm.

use super::super::{View, ViewCtx};
use super::tasks::task_table;

/// What the bottom panel shows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Bottom {
    /// Recent Tasks.
    #[default]
    Tasks,
    /// Active alarms.
    Alarms,
}

/// The bottom panel.
#[derive(Debug, Default)]
pub struct RecentTasksView {
    /// What it shows.
    pub showing: Bottom,
}

impl View for RecentTasksView {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>) {
        ui.add_space(4.0);
        let running = cx.model.tasks.iter().filter(|t| !t.state.is_done()).count();
        let (alarms, _) = cx.model.alarms.counts();
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.showing, Bottom::Tasks, "Recent Tasks");
            if running > 0 {
                ui.spinner();
                ui.label(format!("{running} running"));
            }
            ui.separator();
            let title = if alarms > 0 {
                format!("Alarms ({alarms})")
            } else {
                "Alarms".to_string()
            };
            ui.selectable_value(&mut self.showing, Bottom::Alarms, title);
        });
        match self.showing {
            Bottom::Tasks => {
                let tasks: Vec<_> = cx.model.tasks.iter().take(200).collect();
                task_table(ui, "recent_tasks_table", &tasks);
            }
            Bottom::Alarms => super::alarms::table(ui, &cx.model.alarms, cx.commands),
        }
    }
}
