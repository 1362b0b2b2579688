//! The Performance tab of a VM or host: CPU (MHz) and memory (MiB) over the last hour, from
//! the manager's samples, as egui_plot line charts.

use egui_plot::{Line, Plot, PlotPoints};
use strata_shared::model::StatSample;

use crate::app::model::Selection;
use crate::app::{Command, View, ViewCtx};

/// Draws the charts of the selected VM or host.
#[derive(Default)]
pub struct PerformanceView;

/// Points (minutes before the newest sample, value) of one series.
pub fn series(samples: &[StatSample], value: fn(&StatSample) -> f64) -> Vec<[f64; 2]> {
    let Some(last) = samples.last() else {
        return Vec::new();
    };
    samples
        .iter()
        .map(|s| [(s.time_ms - last.time_ms) as f64 / 60_000.0, value(s)])
        .collect()
}

/// Shows the x axis in seconds when the samples span less than three minutes.
fn rescale(points: Vec<[f64; 2]>) -> (Vec<[f64; 2]>, &'static str) {
    let span = points.first().map(|p| -p[0]).unwrap_or(0.0);
    if span < 3.0 {
        (
            points.into_iter().map(|[x, y]| [x * 60.0, y]).collect(),
            "seconds before now",
        )
    } else {
        (points, "minutes before now")
    }
}

fn chart(ui: &mut egui::Ui, id: &str, title: &str, unit: &str, points: Vec<[f64; 2]>, height: f32) {
    let latest = points.last().map(|p| p[1]).unwrap_or(0.0);
    ui.label(egui::RichText::new(format!("{title}: {latest:.0} {unit} now")).strong());
    let (points, axis) = rescale(points);
    let line = Line::new(title.to_string(), PlotPoints::from(points));
    Plot::new(id)
        .height(height)
        .include_y(0.0)
        .x_axis_label(axis)
        .y_axis_label(unit.to_string())
        .allow_scroll(false)
        .show(ui, |p| p.line(line));
}

impl View for PerformanceView {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>) {
        let id = match cx.selection {
            Some(Selection::Vm(id)) | Some(Selection::Host(id)) => id,
            _ => return,
        };
        cx.commands.send(Command::WantStats(id));
        ui.ctx()
            .request_repaint_after(crate::app::stats_cache::STATS_REFRESH);
        match cx.model.stats.get(id) {
            None => {
                ui.label("Loading performance samples…");
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("No samples: {e}"));
            }
            Some(Ok(s)) if s.is_empty() => {
                ui.label(if cx.model.inventory.direct {
                    "No samples yet: sampled live every 5 s while this tab is shown (the VM must \
                     be running)."
                } else {
                    "No samples yet: the manager samples running VMs every interval (20 s by default)."
                });
            }
            Some(Ok(s)) => {
                ui.label(if cx.model.inventory.direct {
                    format!(
                        "{} live samples since this tab was first shown (the newest at 0).",
                        s.len()
                    )
                } else {
                    format!("{} samples over the last hour (the newest at 0).", s.len())
                });
                let h = ((ui.available_height() - 60.0) / 2.0).max(120.0);
                chart(ui, "perf-cpu", "CPU", "MHz", series(s, |x| x.cpu_mhz), h);
                chart(
                    ui,
                    "perf-mem",
                    "Memory",
                    "MiB",
                    series(s, |x| x.memory_mib),
                    h,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_count_minutes_back_from_the_newest_sample() {
        let s = |t, c| StatSample {
            time_ms: t,
            cpu_mhz: c,
            memory_mib: 1.0,
        };
        let pts = series(&[s(0, 5.0), s(60_000, 7.0), s(120_000, 9.0)], |x| x.cpu_mhz);
        assert_eq!(pts, vec![[-2.0, 5.0], [-1.0, 7.0], [0.0, 9.0]]);
        assert!(series(&[], |x| x.cpu_mhz).is_empty());
    }
}
