//! The Resource Allocation tab of a cluster, a standalone host or a resource pool: what the
//! node reserves, what its children reserve and what is left (from `pool.usage`, fetched on
//! the network side while the tab shows), then a table of its child pools and VMs with
//! their CPU and memory reservation, limit and shares.

use egui_extras::{Column, TableBuilder};
use strata_shared::model::{Allocation, Resource, ResourceUsage, SharesLevel};

use super::super::model::{InventoryModel, Selection};
use super::super::{theme, Command, View, ViewCtx};
use super::pool_editor::EditTarget;

/// The tab; caches the child list until the inventory's layout changes.
#[derive(Debug, Default)]
pub struct AllocationView {
    rows: Vec<Selection>,
    built_for: Option<(u64, Selection)>,
}

/// Whether an object has a Resource Allocation tab.
pub fn applies_to(inv: &InventoryModel, sel: Selection) -> bool {
    match sel {
        Selection::Cluster(_) | Selection::Pool(_) => true,
        Selection::Host(h) => inv.hosts.get(&h).is_some_and(|h| h.cluster.is_none()),
        Selection::Datacenter(_) | Selection::Vm(_) | Selection::Datastore(_) => false,
    }
}

impl AllocationView {
    fn rebuild(&mut self, inv: &InventoryModel, sel: Selection) {
        // Rows hold ids only (values are read each frame): rebuild when objects come, go,
        // move or are renamed.
        let key = (inv.layout_generation, sel);
        if self.built_for == Some(key) {
            return;
        }
        let (pools, vms) = inv.allocation_children(sel);
        self.rows = pools
            .into_iter()
            .map(Selection::Pool)
            .chain(vms.into_iter().map(Selection::Vm))
            .collect();
        self.built_for = Some(key);
    }
}

fn limit_text(a: &Allocation) -> String {
    a.limit
        .map(|l| l.to_string())
        .unwrap_or_else(|| "Unlimited".into())
}

fn shares_text(a: &Allocation, value: u64) -> String {
    let level = match a.shares.level {
        SharesLevel::Low => "Low",
        SharesLevel::Normal => "Normal",
        SharesLevel::High => "High",
        SharesLevel::Custom => "Custom",
    };
    format!("{level} ({value})")
}

fn usage_block(ui: &mut egui::Ui, title: &str, unit: &str, u: &ResourceUsage, is_root: bool) {
    let total = u.reservation;
    let label = if is_root {
        format!("{title}: reserved of the capacity")
    } else {
        format!("{title}: reserved of the pool's reservation")
    };
    theme::capacity_bar(
        ui,
        &label,
        u.reserved_by_children as f64,
        total as f64,
        format!(
            "{} of {} {unit} reserved by children · {} {unit} unreserved",
            u.reserved_by_children, total, u.unreserved_for_children
        ),
    );
}

impl View for AllocationView {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>) {
        let Some(sel) = cx.selection else { return };
        let inv = &cx.model.inventory;
        let Some(owner) = inv.pool_owner(sel) else {
            return;
        };
        cx.commands.send(Command::WantUsage(owner));
        ui.horizontal(|ui| {
            let parent = match sel {
                Selection::Pool(p) => Some(p),
                _ => None,
            };
            if ui.button("New Resource Pool…").clicked() {
                cx.commands
                    .send(Command::OpenEditor(EditTarget::NewPool { owner, parent }));
            }
            if let Selection::Pool(p) = sel {
                if ui.button("Edit Settings…").clicked() {
                    cx.commands.send(Command::OpenEditor(EditTarget::Pool(p)));
                }
            }
        });
        ui.add_space(6.0);
        match cx.model.usage.get(owner) {
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.weak("Reading reservations…");
                });
            }
            Some(Err(e)) => {
                ui.colored_label(theme::ERROR, format!("Cannot read reservations: {e}"));
            }
            Some(Ok(_)) => {
                if let Some(u) = cx.model.usage.node(owner, sel.id()) {
                    let is_root = !matches!(sel, Selection::Pool(_));
                    egui::Frame::group(ui.style())
                        .inner_margin(10.0)
                        .show(ui, |ui| {
                            ui.set_width(ui.available_width());
                            ui.columns(2, |cols| {
                                usage_block(&mut cols[0], "CPU", "MHz", &u.cpu, is_root);
                                usage_block(&mut cols[1], "Memory", "MiB", &u.memory, is_root);
                            });
                        });
                }
            }
        }
        ui.add_space(6.0);

        self.rebuild(inv, sel);
        ui.weak("Child resource pools and VMs. CPU in MHz, memory in MiB; double-click to edit.");
        if self.rows.is_empty() {
            ui.weak("No resource pools or virtual machines here.");
            return;
        }
        let rows = std::mem::take(&mut self.rows);
        TableBuilder::new(ui)
            .id_salt("allocation_table")
            .striped(true)
            .sense(egui::Sense::click())
            .auto_shrink([false, false])
            .column(Column::initial(160.0).resizable(true).clip(true))
            .column(Column::exact(48.0))
            .column(Column::initial(84.0).resizable(true).clip(true))
            .column(Column::initial(84.0).resizable(true).clip(true))
            .column(Column::initial(112.0).resizable(true).clip(true))
            .column(Column::initial(84.0).resizable(true).clip(true))
            .column(Column::initial(84.0).resizable(true).clip(true))
            .column(Column::initial(136.0).resizable(true).clip(true))
            .column(Column::remainder())
            .header(24.0, |mut h| {
                for t in [
                    "Name",
                    "Type",
                    "CPU Res.",
                    "CPU Limit",
                    "CPU Shares",
                    "Mem. Res.",
                    "Mem. Limit",
                    "Mem. Shares",
                ] {
                    h.col(|ui| {
                        ui.strong(t);
                    });
                }
                h.col(|_| {});
            })
            .body(|body| {
                body.rows(22.0, rows.len(), |mut row| {
                    let sel = rows[row.index()];
                    let (name, kind, a, cpu_shares, mem_shares) = match sel {
                        Selection::Pool(id) => {
                            let Some(p) = inv.pools.get(&id) else { return };
                            let a = p.allocation;
                            (
                                p.name.as_str(),
                                "Pool",
                                a,
                                a.cpu.shares.value_for_pool(Resource::Cpu),
                                a.memory.shares.value_for_pool(Resource::Memory),
                            )
                        }
                        Selection::Vm(id) => {
                            let Some(v) = inv.vms.get(&id) else { return };
                            let a = v.spec.allocation;
                            let (c, m) = (v.spec.vcpus, v.spec.memory_mib);
                            (
                                v.name.as_str(),
                                "VM",
                                a,
                                a.cpu.shares.value_for_vm(Resource::Cpu, c, m),
                                a.memory.shares.value_for_vm(Resource::Memory, c, m),
                            )
                        }
                        _ => return,
                    };
                    row.col(|ui| {
                        ui.horizontal(|ui| {
                            theme::kind_icon(ui, sel, inv);
                            ui.label(name);
                        });
                    });
                    row.col(|ui| {
                        ui.label(kind);
                    });
                    row.col(|ui| {
                        ui.label(a.cpu.reservation.to_string());
                    });
                    row.col(|ui| {
                        ui.label(limit_text(&a.cpu));
                    });
                    row.col(|ui| {
                        ui.label(shares_text(&a.cpu, cpu_shares));
                    });
                    row.col(|ui| {
                        ui.label(a.memory.reservation.to_string());
                    });
                    row.col(|ui| {
                        ui.label(limit_text(&a.memory));
                    });
                    row.col(|ui| {
                        ui.label(shares_text(&a.memory, mem_shares));
                    });
                    row.col(|_| {});
                    let target = match sel {
                        Selection::Pool(id) => EditTarget::Pool(id),
                        _ => EditTarget::Vm(sel.id()),
                    };
                    let resp = row.response();
                    if resp.double_clicked() {
                        cx.commands.send(Command::OpenEditor(target));
                    }
                    resp.context_menu(|ui| {
                        let text = match sel {
                            Selection::Pool(_) => "Edit Settings…",
                            _ => "Edit Resource Allocation…",
                        };
                        if ui.button(text).clicked() {
                            cx.commands.send(Command::OpenEditor(target));
                            ui.close();
                        }
                    });
                });
            });
        self.rows = rows;
    }
}
