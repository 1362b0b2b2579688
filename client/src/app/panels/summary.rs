//! The Summary tab: state, facts and capacity bars of the selected object.

use strata_shared::model::{HostInfo, PowerState};

use super::super::model::{InventoryModel, Selection};
use super::super::net::Operation;
use super::super::{theme, Command, View, ViewCtx};

/// The Summary tab (stateless).
#[derive(Debug, Default)]
pub struct SummaryView;

impl View for SummaryView {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>) {
        let Some(sel) = cx.selection else { return };
        let inv = &cx.model.inventory;
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| match sel {
                Selection::Vm(id) => vm_summary(ui, inv, id, cx.commands),
                Selection::Host(id) => {
                    if let Some(h) = inv.hosts.get(&id) {
                        host_summary(ui, inv, h);
                    }
                }
                Selection::Cluster(_) | Selection::Datacenter(_) => group_summary(ui, inv, sel),
            });
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
        let on = vm.power_state == PowerState::PoweredOn;
        let off = vm.power_state == PowerState::PoweredOff;
        for (op, enabled) in [
            (Operation::PowerOn, off),
            (Operation::PowerOff, on),
            (Operation::Reset, on),
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
                ("Created", format!("{} UTC", theme::time(vm.created_ms))),
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

fn group_summary(ui: &mut egui::Ui, inv: &InventoryModel, sel: Selection) {
    let hosts: Vec<&HostInfo> = match sel {
        Selection::Cluster(c) => inv.hosts_in_cluster(c),
        Selection::Datacenter(d) => inv.hosts.values().filter(|h| h.datacenter == d).collect(),
        _ => Vec::new(),
    };
    let (on, total) = inv.power_counts(sel);
    let connected = hosts
        .iter()
        .filter(|h| h.connection_state == strata_shared::model::ConnectionState::Connected)
        .count();
    let (mut cpus, mut mem) = (0u64, 0u64);
    for h in &hosts {
        if let Some(f) = &h.facts {
            cpus += u64::from(f.cpu_count);
            mem += f.memory_mib;
        }
    }
    let vms = inv.vms_under(sel);
    let (mut vcpus, mut vmem) = (0u64, 0u64);
    for v in vms.iter().filter_map(|id| inv.vms.get(id)) {
        if v.power_state == PowerState::PoweredOn {
            vcpus += u64::from(v.spec.vcpus);
            vmem += v.spec.memory_mib;
        }
    }
    section(ui, "Overview", |ui| {
        let mut rows = vec![
            ("Hosts", format!("{} ({connected} connected)", hosts.len())),
            ("Virtual machines", format!("{total} ({on} powered on)")),
        ];
        if let Selection::Datacenter(d) = sel {
            rows.push(("Clusters", inv.clusters_in(d).len().to_string()));
            let ds = inv
                .datastores
                .values()
                .filter(|s| s.datacenter == d)
                .count();
            rows.push(("Datastores", ds.to_string()));
        }
        facts(ui, "group_facts", &rows);
    });
    section(ui, "Capacity (allocated to powered-on VMs)", |ui| {
        theme::capacity_bar(
            ui,
            "CPU",
            vcpus as f64,
            cpus as f64,
            format!("{vcpus} of {cpus} logical CPUs"),
        );
        ui.add_space(4.0);
        theme::capacity_bar(
            ui,
            "Memory",
            vmem as f64,
            mem as f64,
            format!("{} of {}", theme::mib(vmem), theme::mib(mem)),
        );
    });
}
