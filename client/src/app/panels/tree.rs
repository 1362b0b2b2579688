//! The Hosts & Clusters inventory tree (datacenter › cluster › host › VM): flattened into
//! visible rows that are only rebuilt when the inventory, the filter or an expansion changes,
//! and drawn with row virtualisation.

use std::collections::HashSet;

use egui::{Sense, Vec2};
use strata_shared::model::PowerState;
use uuid::Uuid;

use super::super::model::{InventoryModel, Selection};
use super::super::net::Operation;
use super::super::{theme, Command, View, ViewCtx};

const ROW_HEIGHT: f32 = 22.0;
const INDENT: f32 = 16.0;

/// One visible row.
#[derive(Debug, Clone)]
struct Row {
    depth: u8,
    sel: Selection,
    has_children: bool,
    expanded: bool,
}

/// State of the inventory tree.
#[derive(Debug, Default)]
pub struct TreeView {
    filter: String,
    /// Nodes the user collapsed (everything starts expanded).
    collapsed: HashSet<Uuid>,
    rows: Vec<Row>,
    built_for: Option<(u64, String, usize)>,
    collapse_version: usize,
}

impl TreeView {
    fn rebuild(&mut self, inv: &InventoryModel) {
        let key = (
            inv.layout_generation,
            self.filter.clone(),
            self.collapse_version,
        );
        if self.built_for.as_ref() == Some(&key) {
            return;
        }
        self.rows = build_rows(inv, &self.filter, &self.collapsed);
        self.built_for = Some(key);
    }
}

fn build_rows(inv: &InventoryModel, filter: &str, collapsed: &HashSet<Uuid>) -> Vec<Row> {
    let needle = filter.trim().to_lowercase();
    let filtering = !needle.is_empty();
    let matches = |name: &str| !filtering || contains_ignore_case(name, &needle);
    let open = |id: Uuid| filtering || !collapsed.contains(&id);
    let mut rows = Vec::new();

    let mut dcs: Vec<_> = inv.datacenters.values().collect();
    dcs.sort_by(|a, b| super::super::model::natural_cmp(&a.name, &b.name));
    for dc in dcs {
        let mut dc_rows = Vec::new();
        // Host rows with their VMs, or nothing when filtered out.
        let host_rows = |host: &strata_shared::model::HostInfo, depth: u8| -> Vec<Row> {
            let vms = inv.vms_on_host(host.id);
            let host_match = matches(&host.name);
            let vm_rows: Vec<Row> = vms
                .iter()
                .filter_map(|id| inv.vms.get(id))
                .filter(|v| host_match || matches(&v.name))
                .map(|v| Row {
                    depth: depth + 1,
                    sel: Selection::Vm(v.id),
                    has_children: false,
                    expanded: false,
                })
                .collect();
            if filtering && !host_match && vm_rows.is_empty() {
                return Vec::new();
            }
            let expanded = open(host.id);
            let mut out = vec![Row {
                depth,
                sel: Selection::Host(host.id),
                has_children: !vms.is_empty(),
                expanded,
            }];
            if expanded {
                out.extend(vm_rows);
            }
            out
        };
        for cl in inv.clusters_in(dc.id) {
            let mut cl_rows = Vec::new();
            let hosts = inv.hosts_in_cluster(cl.id);
            for h in &hosts {
                cl_rows.extend(host_rows(h, 2));
            }
            if filtering && cl_rows.is_empty() && !matches(&cl.name) {
                continue;
            }
            let expanded = open(cl.id);
            dc_rows.push(Row {
                depth: 1,
                sel: Selection::Cluster(cl.id),
                has_children: !hosts.is_empty(),
                expanded,
            });
            if expanded {
                dc_rows.extend(cl_rows);
            }
        }
        for h in inv.standalone_hosts(dc.id) {
            dc_rows.extend(host_rows(h, 1));
        }
        if filtering && dc_rows.is_empty() && !matches(&dc.name) {
            continue;
        }
        let expanded = open(dc.id);
        rows.push(Row {
            depth: 0,
            sel: Selection::Datacenter(dc.id),
            has_children: true,
            expanded,
        });
        if expanded {
            rows.extend(dc_rows);
        }
    }
    rows
}

/// Whether `hay` contains `needle_lower` (already lower-case), ignoring case, without
/// allocating for ASCII names.
fn contains_ignore_case(hay: &str, needle_lower: &str) -> bool {
    if hay.is_ascii() && needle_lower.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle_lower.as_bytes());
        n.len() <= h.len()
            && h.windows(n.len())
                .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
    } else {
        hay.to_lowercase().contains(needle_lower)
    }
}

impl View for TreeView {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.strong("Hosts & Clusters");
        });
        ui.add_space(2.0);
        let l = ui.label("Filter");
        ui.add(
            egui::TextEdit::singleline(&mut self.filter)
                .hint_text("Filter by name")
                .desired_width(f32::INFINITY),
        )
        .labelled_by(l.id);
        ui.separator();

        let inv = &cx.model.inventory;
        self.rebuild(inv);
        if self.rows.is_empty() {
            ui.weak(if self.filter.trim().is_empty() {
                "The inventory is empty."
            } else {
                "Nothing matches the filter."
            });
            return;
        }
        let mut toggle: Option<Uuid> = None;
        egui::ScrollArea::both()
            .auto_shrink([false, false])
            .show_rows(ui, ROW_HEIGHT, self.rows.len(), |ui, range| {
                for row in &self.rows[range] {
                    let name = inv.name_of(row.sel).unwrap_or("");
                    ui.horizontal(|ui| {
                        ui.set_height(ROW_HEIGHT);
                        ui.add_space(f32::from(row.depth) * INDENT);
                        let (rect, resp) =
                            ui.allocate_exact_size(Vec2::splat(14.0), Sense::click());
                        if row.has_children {
                            let verb = if row.expanded { "Collapse" } else { "Expand" };
                            resp.widget_info(|| {
                                egui::WidgetInfo::labeled(
                                    egui::accesskit::Role::Button,
                                    true,
                                    format!("{verb} {name}"),
                                )
                            });
                            let openness = if row.expanded { 1.0 } else { 0.0 };
                            let resp = resp.with_new_rect(rect);
                            egui::collapsing_header::paint_default_icon(ui, openness, &resp);
                            if resp.clicked() {
                                toggle = Some(row.sel.id());
                            }
                        }
                        theme::kind_icon(ui, row.sel, inv);
                        let selected = cx.selection == Some(row.sel);
                        let resp = ui.selectable_label(selected, name);
                        if resp.clicked() {
                            cx.commands.send(Command::Select(row.sel));
                        }
                        context_menu(&resp, row.sel, inv, cx);
                    });
                }
            });
        if let Some(id) = toggle {
            if !self.collapsed.remove(&id) {
                self.collapsed.insert(id);
            }
            self.collapse_version += 1;
        }
    }
}

fn context_menu(resp: &egui::Response, sel: Selection, inv: &InventoryModel, cx: &mut ViewCtx<'_>) {
    match sel {
        Selection::Vm(id) => {
            let power = inv.vms.get(&id).map(|v| v.power_state);
            resp.context_menu(|ui| {
                let on = power.is_some_and(PowerState::has_process);
                let off = power == Some(PowerState::PoweredOff);
                let resumable = off || power == Some(PowerState::Suspended);
                let items = [
                    (Operation::PowerOn, resumable),
                    (Operation::PowerOff, on),
                    // A suspended VM's hard power-off discards its saved state.
                    (
                        Operation::PowerOffHard,
                        on || power == Some(PowerState::Suspended),
                    ),
                    (Operation::Reset, on),
                    (Operation::Suspend, on),
                    (Operation::Pause, power == Some(PowerState::PoweredOn)),
                    (Operation::Unpause, power == Some(PowerState::Paused)),
                    (Operation::Destroy, off),
                ];
                for (op, enabled) in items {
                    if ui
                        .add_enabled(enabled, egui::Button::new(op.label()))
                        .clicked()
                    {
                        cx.commands.send(Command::Select(sel));
                        cx.commands.send(Command::Run(op, id));
                        ui.close();
                    }
                }
            });
        }
        Selection::Host(id) => {
            let empty = inv.vms_on_host(id).is_empty();
            resp.context_menu(|ui| {
                if ui.button("Show virtual machines").clicked() {
                    cx.commands.send(Command::Select(sel));
                    cx.commands
                        .send(Command::ShowTab(super::super::Tab::VirtualMachines));
                    ui.close();
                }
                if ui
                    .add_enabled(empty, egui::Button::new(Operation::RemoveHost.label()))
                    .on_disabled_hover_text("Only a host without VMs can be removed")
                    .clicked()
                {
                    cx.commands.send(Command::Run(Operation::RemoveHost, id));
                    ui.close();
                }
            });
        }
        Selection::Datacenter(_) | Selection::Cluster(_) => {
            resp.context_menu(|ui| {
                if ui.button("Show virtual machines").clicked() {
                    cx.commands.send(Command::Select(sel));
                    cx.commands
                        .send(Command::ShowTab(super::super::Tab::VirtualMachines));
                    ui.close();
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::{DatacenterInfo, Inventory};

    #[test]
    fn collapsed_nodes_hide_children_and_a_filter_opens_them() {
        let dc = Uuid::new_v4();
        let inv = InventoryModel::from_snapshot(Inventory {
            datacenters: vec![DatacenterInfo {
                id: dc,
                name: "Datacenter".into(),
            }],
            ..Default::default()
        });
        let mut collapsed = HashSet::new();
        assert_eq!(build_rows(&inv, "", &collapsed).len(), 1);
        collapsed.insert(dc);
        assert!(!build_rows(&inv, "", &collapsed)[0].expanded);
        assert!(build_rows(&inv, "nomatch", &collapsed).is_empty());
        assert_eq!(build_rows(&inv, "CENTER", &collapsed).len(), 1);
        assert_eq!(build_rows(&inv, "center", &collapsed).len(), 1);
        assert!(contains_ignore_case("Datacenter", "center"));
        assert!(contains_ignore_case("Größe", "öß"));
        assert!(!contains_ignore_case("vm", "vm1"));
    }
}
