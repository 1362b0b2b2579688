//! The Virtual Machines tab: a sortable, virtualised table of the VMs under the selection.

use egui_extras::{Column, TableBuilder};
use uuid::Uuid;

use super::super::model::{natural_cmp, InventoryModel, Selection};
use super::super::{theme, Command, View, ViewCtx};

/// Columns one can sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Name.
    #[default]
    Name,
    /// Power state.
    State,
    /// Host.
    Host,
    /// vCPUs.
    Cpus,
    /// Memory.
    Memory,
    /// Datastore.
    Datastore,
}

/// What the State column shows (and sorts by): a template has no power state of its own.
fn state_text(vm: &strata_shared::model::VmInfo) -> &'static str {
    if vm.spec.template {
        "Template"
    } else {
        theme::power_text(vm.power_state)
    }
}

/// State of the VM table: sort order and the cached sorted rows.
#[derive(Debug, Default)]
pub struct VmTableView {
    sort: SortKey,
    descending: bool,
    rows: Vec<Uuid>,
    built_for: Option<(u64, Selection, SortKey, bool)>,
}

impl VmTableView {
    fn rebuild(&mut self, inv: &InventoryModel, sel: Selection) {
        // Only the State column depends on what changes often.
        let generation = if self.sort == SortKey::State {
            inv.generation
        } else {
            inv.layout_generation
        };
        let key = (generation, sel, self.sort, self.descending);
        if self.built_for == Some(key) {
            return;
        }
        let mut rows: Vec<Uuid> = inv
            .vms_under(sel)
            .into_iter()
            .filter(|id| inv.vms.contains_key(id))
            .collect();
        let host_name = |id: &Uuid| {
            inv.vms
                .get(id)
                .and_then(|v| v.host)
                .and_then(|h| inv.hosts.get(&h))
                .map(|h| h.name.as_str())
                .unwrap_or("")
        };
        rows.sort_by(|a, b| {
            let (va, vb) = (&inv.vms[a], &inv.vms[b]);
            let ord = match self.sort {
                SortKey::Name => natural_cmp(&va.name, &vb.name),
                SortKey::State => state_text(va).cmp(state_text(vb)),
                SortKey::Host => natural_cmp(host_name(a), host_name(b)),
                SortKey::Cpus => va.spec.vcpus.cmp(&vb.spec.vcpus),
                SortKey::Memory => va.spec.memory_mib.cmp(&vb.spec.memory_mib),
                SortKey::Datastore => natural_cmp(&va.datastore, &vb.datastore),
            }
            .then_with(|| natural_cmp(&va.name, &vb.name));
            if self.descending {
                ord.reverse()
            } else {
                ord
            }
        });
        self.rows = rows;
        self.built_for = Some(key);
    }

    fn header(&mut self, ui: &mut egui::Ui, title: &str, key: SortKey) {
        ui.horizontal(|ui| self.header_inner(ui, title, key));
    }

    fn header_inner(&mut self, ui: &mut egui::Ui, title: &str, key: SortKey) {
        let sorted = self.sort == key;
        let r = ui.add(egui::Button::new(egui::RichText::new(title).strong()).frame(false));
        if sorted {
            // The default fonts have no arrow glyphs: paint the sort direction.
            let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
            let c = rect.center();
            let (tip, base) = if self.descending {
                (4.0, -3.0)
            } else {
                (-4.0, 3.0)
            };
            ui.painter().add(egui::Shape::convex_polygon(
                vec![
                    egui::pos2(c.x, c.y + tip),
                    egui::pos2(c.x - 4.0, c.y + base),
                    egui::pos2(c.x + 4.0, c.y + base),
                ],
                ui.visuals().strong_text_color(),
                egui::Stroke::NONE,
            ));
        }
        let order = if sorted && !self.descending {
            "descending"
        } else {
            "ascending"
        };
        if r.on_hover_text(format!("Sort by {} ({order})", title.to_lowercase()))
            .clicked()
        {
            if sorted {
                self.descending = !self.descending;
            } else {
                self.sort = key;
                self.descending = false;
            }
        }
    }
}

impl View for VmTableView {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>) {
        let Some(sel) = cx.selection else { return };
        let inv = &cx.model.inventory;
        self.rebuild(inv, sel);
        if self.rows.is_empty() {
            ui.weak("No virtual machines.");
            return;
        }
        let rows = std::mem::take(&mut self.rows);
        TableBuilder::new(ui)
            .id_salt("vm_table")
            .striped(true)
            .sense(egui::Sense::click())
            .auto_shrink([false, false])
            .column(Column::initial(200.0).resizable(true).clip(true))
            .column(Column::initial(120.0).resizable(true))
            .column(Column::initial(160.0).resizable(true).clip(true))
            .column(Column::exact(70.0))
            .column(Column::exact(90.0))
            .column(Column::remainder().clip(true))
            .header(24.0, |mut h| {
                h.col(|ui| self.header(ui, "Name", SortKey::Name));
                h.col(|ui| self.header(ui, "State", SortKey::State));
                h.col(|ui| self.header(ui, "Host", SortKey::Host));
                h.col(|ui| self.header(ui, "vCPUs", SortKey::Cpus));
                h.col(|ui| self.header(ui, "Memory", SortKey::Memory));
                h.col(|ui| self.header(ui, "Datastore", SortKey::Datastore));
            })
            .body(|body| {
                body.rows(22.0, rows.len(), |mut row| {
                    let Some(vm) = inv.vms.get(&rows[row.index()]) else {
                        return;
                    };
                    row.set_selected(cx.selection == Some(Selection::Vm(vm.id)));
                    row.col(|ui| {
                        ui.horizontal(|ui| {
                            theme::kind_icon(ui, Selection::Vm(vm.id), inv);
                            ui.label(&vm.name);
                        });
                    });
                    row.col(|ui| {
                        let colour = if vm.spec.template {
                            theme::TEMPLATE
                        } else {
                            theme::power_color(vm.power_state)
                        };
                        ui.colored_label(colour, state_text(vm));
                    });
                    row.col(|ui| {
                        let host = vm
                            .host
                            .and_then(|h| inv.hosts.get(&h))
                            .map(|h| h.name.as_str())
                            .unwrap_or("—");
                        ui.label(host);
                    });
                    row.col(|ui| {
                        ui.label(vm.spec.vcpus.to_string());
                    });
                    row.col(|ui| {
                        ui.label(theme::mib(vm.spec.memory_mib));
                    });
                    row.col(|ui| {
                        ui.label(&vm.datastore);
                    });
                    if row.response().double_clicked() {
                        cx.commands.send(Command::Select(Selection::Vm(vm.id)));
                    }
                });
            });
        self.rows = rows;
    }
}
