//! The Summary tab: state, facts and capacity bars of the selected object.

use strata_shared::model::{HostInfo, PowerState};

use super::super::model::{InventoryModel, Selection};
use super::super::net::Operation;
use super::super::{theme, Command, View, ViewCtx};

/// The Summary tab; keeps the totals of a datacenter or cluster until the inventory changes.
#[derive(Debug, Default)]
pub struct SummaryView {
    group: Option<(GroupKey, GroupStats)>,
}

/// What the cached totals were computed for, and when.
#[derive(Debug, Clone, Copy)]
struct GroupKey {
    generation: u64,
    sel: Selection,
    at: std::time::Instant,
}

/// Totals are refreshed at most this often while the inventory keeps changing (a full pass
/// over 40,000 VMs per frame would cost frames).
const GROUP_REFRESH: std::time::Duration = std::time::Duration::from_millis(500);

/// Totals under a datacenter or cluster.
#[derive(Debug, Clone, Default)]
struct GroupStats {
    hosts: usize,
    connected: usize,
    vms: usize,
    vms_on: usize,
    cpus: u64,
    memory_mib: u64,
    vcpus_on: u64,
    vmem_on: u64,
    clusters: usize,
    datastores: usize,
}

impl GroupStats {
    fn compute(inv: &InventoryModel, sel: Selection) -> Self {
        let hosts: Vec<&HostInfo> = match sel {
            Selection::Cluster(c) => inv.hosts_in_cluster(c),
            Selection::Datacenter(d) => inv.hosts.values().filter(|h| h.datacenter == d).collect(),
            _ => Vec::new(),
        };
        let mut s = GroupStats {
            hosts: hosts.len(),
            ..Default::default()
        };
        for h in &hosts {
            if h.connection_state == strata_shared::model::ConnectionState::Connected {
                s.connected += 1;
            }
            if let Some(f) = &h.facts {
                s.cpus += u64::from(f.cpu_count);
                s.memory_mib += f.memory_mib;
            }
            for v in inv
                .vms_on_host(h.id)
                .iter()
                .filter_map(|id| inv.vms.get(id))
            {
                s.vms += 1;
                if v.power_state.has_process() {
                    s.vms_on += 1;
                    s.vcpus_on += u64::from(v.spec.vcpus);
                    s.vmem_on += v.spec.memory_mib;
                }
            }
        }
        if let Selection::Datacenter(d) = sel {
            s.clusters = inv.clusters_in(d).len();
            s.datastores = inv
                .datastores
                .values()
                .filter(|x| x.datacenter == d)
                .count();
        }
        s
    }
}

impl View for SummaryView {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>) {
        let Some(sel) = cx.selection else { return };
        let alarms = cx.model.alarms.on(sel.id());
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                super::alarms::section(ui, &alarms, cx.commands);
                self.object(ui, sel, cx);
            });
    }
}

impl SummaryView {
    fn object(&mut self, ui: &mut egui::Ui, sel: Selection, cx: &mut ViewCtx<'_>) {
        let inv = &cx.model.inventory;
        match sel {
            Selection::Vm(id) => vm_summary(ui, inv, id, cx.commands),
            Selection::Host(id) => {
                if let Some(h) = inv.hosts.get(&id) {
                    host_summary(ui, inv, h);
                }
            }
            Selection::Pool(id) => pool_summary(ui, inv, id, cx.commands),
            Selection::Datastore(id) => datastore_summary(ui, inv, id),
            Selection::Cluster(_) | Selection::Datacenter(_) => {
                let fresh = self.group.as_ref().is_some_and(|(k, _)| {
                    k.sel == sel
                        && (k.generation == inv.generation || k.at.elapsed() < GROUP_REFRESH)
                });
                if !fresh {
                    let key = GroupKey {
                        generation: inv.generation,
                        sel,
                        at: std::time::Instant::now(),
                    };
                    self.group = Some((key, GroupStats::compute(inv, sel)));
                }
                if let Some((k, _)) = &self.group {
                    if k.generation != inv.generation {
                        // Come back for the newer totals.
                        ui.ctx().request_repaint_after(GROUP_REFRESH);
                    }
                }
                let stats = self
                    .group
                    .as_ref()
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default();
                group_summary(ui, sel, &stats);
            }
        }
    }
}

fn facts(ui: &mut egui::Ui, id: &str, rows: &[(&str, String)]) {
    egui::Grid::new(id)
        .num_columns(2)
        .spacing([24.0, 6.0])
        .show(ui, |ui| {
            for (k, v) in rows {
                ui.weak(*k);
                ui.label(v);
                ui.end_row();
            }
        });
}

fn section(ui: &mut egui::Ui, title: &str, add: impl FnOnce(&mut egui::Ui)) {
    egui::Frame::group(ui.style())
        .inner_margin(10.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.strong(title);
            ui.add_space(4.0);
            add(ui);
        });
    ui.add_space(8.0);
}

fn vm_summary(
    ui: &mut egui::Ui,
    inv: &InventoryModel,
    id: uuid::Uuid,
    commands: &mut super::super::CommandQueue,
) {
    let Some(vm) = inv.vms.get(&id) else { return };
    ui.horizontal(|ui| {
        theme::icon(ui, theme::Shape::Vm, theme::power_color(vm.power_state));
        ui.colored_label(
            theme::power_color(vm.power_state),
            theme::power_text(vm.power_state),
        );
        ui.add_space(16.0);
        let on = vm.power_state.has_process();
        let off = matches!(
            vm.power_state,
            PowerState::PoweredOff | PowerState::Suspended
        );
        for (op, enabled) in [
            (Operation::PowerOn, off),
            (Operation::PowerOff, on),
            (Operation::Reset, on),
            (Operation::Suspend, on),
            (Operation::Pause, vm.power_state == PowerState::PoweredOn),
            (Operation::Unpause, vm.power_state == PowerState::Paused),
        ] {
            if ui
                .add_enabled(enabled, egui::Button::new(op.label()))
                .clicked()
            {
                commands.send(Command::Run(op, id));
            }
        }
    });
    ui.add_space(8.0);
    let host = vm
        .host
        .and_then(|h| inv.hosts.get(&h))
        .map(|h| h.name.clone())
        .unwrap_or_else(|| "—".into());
    section(ui, "Virtual hardware", |ui| {
        facts(
            ui,
            "vm_hw",
            &[
                ("vCPUs", vm.spec.vcpus.to_string()),
                ("Memory", theme::mib(vm.spec.memory_mib)),
                ("Machine", format!("{:?}", vm.spec.machine).to_lowercase()),
                (
                    "Engine",
                    match vm.running_engine {
                        Some(e) => format!("{e} (running), configured {}", vm.spec.engine),
                        None => vm.spec.engine.to_string(),
                    },
                ),
            ],
        );
    });
    section(ui, "Placement and boot", |ui| {
        facts(
            ui,
            "vm_place",
            &[
                ("Host", host),
                ("Datastore", vm.datastore.clone()),
                ("Kernel", vm.spec.boot.kernel.clone()),
                (
                    "Initrd",
                    vm.spec.boot.initrd.clone().unwrap_or_else(|| "—".into()),
                ),
                (
                    "Command line",
                    if vm.spec.boot.cmdline.is_empty() {
                        "—".into()
                    } else {
                        vm.spec.boot.cmdline.clone()
                    },
                ),
                (
                    "Network",
                    if vm.spec.nics.is_empty() {
                        "no NIC".into()
                    } else {
                        vm.spec
                            .nics
                            .iter()
                            .map(|n| format!("tap {}", n.tap))
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                ),
                ("Disks", vm.spec.disks.len().to_string()),
                ("Created", format!("{} UTC", theme::time(vm.created_ms))),
            ],
        );
    });
}

fn allocation_rows(a: &strata_shared::model::Allocation, unit: &str) -> String {
    let limit = a
        .limit
        .map(|l| format!("{l} {unit}"))
        .unwrap_or_else(|| "unlimited".into());
    let shares = match a.shares.level {
        strata_shared::model::SharesLevel::Custom => {
            format!("custom ({})", a.shares.custom.unwrap_or(0))
        }
        l => format!("{l:?}").to_lowercase(),
    };
    format!(
        "reservation {} {unit}{}, limit {limit}, shares {shares}",
        a.reservation,
        if a.expandable_reservation {
            " (expandable)"
        } else {
            ""
        }
    )
}

fn pool_summary(
    ui: &mut egui::Ui,
    inv: &InventoryModel,
    id: uuid::Uuid,
    commands: &mut super::super::CommandQueue,
) {
    let Some(p) = inv.pools.get(&id) else { return };
    ui.horizontal(|ui| {
        if ui.button("Edit Settings…").clicked() {
            commands.send(Command::OpenEditor(super::pool_editor::EditTarget::Pool(
                id,
            )));
        }
    });
    ui.add_space(8.0);
    let vms = inv.vms_under(Selection::Pool(id));
    let on = vms
        .iter()
        .filter(|v| {
            inv.vms
                .get(v)
                .is_some_and(|v| v.power_state == PowerState::PoweredOn)
        })
        .count();
    section(ui, "Resource pool", |ui| {
        facts(
            ui,
            "pool_facts",
            &[
                ("Parent", inv.pool_parent_name(p.owner, p.parent)),
                ("CPU", allocation_rows(&p.allocation.cpu, "MHz")),
                ("Memory", allocation_rows(&p.allocation.memory, "MiB")),
                ("Resource pools", inv.child_pools(id).len().to_string()),
                (
                    "Virtual machines",
                    format!("{} ({on} powered on)", vms.len()),
                ),
            ],
        );
    });
}

fn host_summary(ui: &mut egui::Ui, inv: &InventoryModel, h: &HostInfo) {
    ui.horizontal(|ui| {
        theme::icon(
            ui,
            theme::Shape::Host,
            theme::connection_color(h.connection_state),
        );
        ui.colored_label(
            theme::connection_color(h.connection_state),
            theme::connection_text(h.connection_state),
        );
        if let Some(r) = &h.state_reason {
            ui.label(format!("— {r}"));
        }
    });
    ui.add_space(8.0);
    let vms: Vec<_> = inv
        .vms_on_host(h.id)
        .iter()
        .filter_map(|id| inv.vms.get(id))
        .collect();
    let running: Vec<_> = vms
        .iter()
        .filter(|v| v.power_state == PowerState::PoweredOn)
        .collect();
    let vcpus: u32 = running.iter().map(|v| v.spec.vcpus).sum();
    let mem: u64 = running.iter().map(|v| v.spec.memory_mib).sum();
    match &h.facts {
        Some(f) => {
            section(ui, "Capacity (allocated to powered-on VMs)", |ui| {
                let total_mhz = u64::from(f.cpu_count) * u64::from(f.cpu_mhz);
                theme::capacity_bar(
                    ui,
                    "CPU",
                    f64::from(vcpus),
                    f64::from(f.cpu_count),
                    format!(
                        "{vcpus} of {} logical CPUs ({} MHz total)",
                        f.cpu_count, total_mhz
                    ),
                );
                ui.add_space(4.0);
                theme::capacity_bar(
                    ui,
                    "Memory",
                    mem as f64,
                    f.memory_mib as f64,
                    format!("{} of {}", theme::mib(mem), theme::mib(f.memory_mib)),
                );
                for d in &f.datastores {
                    ui.add_space(4.0);
                    let used = d.capacity_bytes.saturating_sub(d.free_bytes);
                    theme::capacity_bar(
                        ui,
                        &format!("Datastore {}", d.name),
                        used as f64,
                        d.capacity_bytes as f64,
                        format!(
                            "{} used of {} ({} free)",
                            theme::bytes(used),
                            theme::bytes(d.capacity_bytes),
                            theme::bytes(d.free_bytes)
                        ),
                    );
                }
            });
            section(ui, "Hardware and software", |ui| {
                facts(
                    ui,
                    "host_facts",
                    &[
                        ("Host name", f.hostname.clone()),
                        ("Address", h.address.clone()),
                        ("CPUs", format!("{} × {} MHz", f.cpu_count, f.cpu_mhz)),
                        ("Memory", theme::mib(f.memory_mib)),
                        (
                            "Hardware virtualization",
                            if f.hardware_virtualization {
                                "yes".into()
                            } else {
                                "no (VMs run emulated)".into()
                            },
                        ),
                        (
                            "Engines",
                            f.engines
                                .iter()
                                .map(|e| e.to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                        ),
                        ("QEMU", f.qemu_version.clone().unwrap_or_else(|| "—".into())),
                        ("Agent version", f.agent_version.clone()),
                        (
                            "VMs",
                            format!("{} ({} powered on)", vms.len(), running.len()),
                        ),
                    ],
                );
            });
        }
        None => {
            ui.label("The host has not reported its hardware yet.");
        }
    }
}

fn datastore_summary(ui: &mut egui::Ui, inv: &InventoryModel, id: uuid::Uuid) {
    let Some(d) = inv.datastores.get(&id) else {
        return;
    };
    let (color, text) = theme::datastore_state(d);
    ui.horizontal(|ui| {
        theme::icon(ui, theme::Shape::Datastore, color);
        ui.colored_label(color, text);
    });
    ui.add_space(8.0);
    let used = d.capacity_bytes.saturating_sub(d.free_bytes);
    section(ui, "Capacity", |ui| {
        theme::capacity_bar(
            ui,
            "Space",
            used as f64,
            d.capacity_bytes as f64,
            format!(
                "{} used of {} ({} free)",
                theme::bytes(used),
                theme::bytes(d.capacity_bytes),
                theme::bytes(d.free_bytes)
            ),
        );
    });
    let vms = inv.vms_on_datastore(id);
    let on = vms
        .iter()
        .filter(|v| inv.vms.get(v).is_some_and(|v| v.power_state.has_process()))
        .count();
    section(ui, "Hosts that mount it", |ui| {
        egui::Grid::new("datastore_hosts")
            .num_columns(2)
            .spacing([24.0, 6.0])
            .show(ui, |ui| {
                let mut hosts: Vec<_> = d.hosts.iter().filter_map(|h| inv.hosts.get(h)).collect();
                hosts.sort_by(|a, b| super::super::model::natural_cmp(&a.name, &b.name));
                for h in hosts {
                    ui.label(&h.name);
                    match d.inaccessible_on.iter().find(|p| p.host == h.id) {
                        Some(p) => {
                            ui.colored_label(theme::ERROR, format!("Inaccessible: {}", p.problem));
                        }
                        None => {
                            ui.colored_label(theme::ON, "Accessible");
                        }
                    }
                    ui.end_row();
                }
            });
    });
    section(ui, "Contents", |ui| {
        facts(
            ui,
            "datastore_facts",
            &[(
                "Virtual machines",
                format!("{} ({on} powered on)", vms.len()),
            )],
        );
    });
}

fn group_summary(ui: &mut egui::Ui, sel: Selection, s: &GroupStats) {
    section(ui, "Overview", |ui| {
        let mut rows = vec![
            ("Hosts", format!("{} ({} connected)", s.hosts, s.connected)),
            (
                "Virtual machines",
                format!("{} ({} powered on)", s.vms, s.vms_on),
            ),
        ];
        if let Selection::Datacenter(_) = sel {
            rows.push(("Clusters", s.clusters.to_string()));
            rows.push(("Datastores", s.datastores.to_string()));
        }
        facts(ui, "group_facts", &rows);
    });
    section(ui, "Capacity (allocated to powered-on VMs)", |ui| {
        theme::capacity_bar(
            ui,
            "CPU",
            s.vcpus_on as f64,
            s.cpus as f64,
            format!("{} of {} logical CPUs", s.vcpus_on, s.cpus),
        );
        ui.add_space(4.0);
        theme::capacity_bar(
            ui,
            "Memory",
            s.vmem_on as f64,
            s.memory_mib as f64,
            format!("{} of {}", theme::mib(s.vmem_on), theme::mib(s.memory_mib)),
        );
    });
}
