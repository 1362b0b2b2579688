//! The New Virtual Machine wizard: one form in sections — name and placement (a host, or a
//! cluster and one of its hosts; a datastore of that host), hardware (engine, machine,
//! vCPUs, memory), disks (created after the VM, each its own task), network (an optional
//! NIC on a tap), guest image (kernel, initrd, command line; filled in from a VM on the same
//! host when there is one) and whether to power it on. Every value is checked as it is typed,
//! the way the server and the host check it; what cannot work is refused before anything is
//! sent, with the reason next to the field.

use strata_shared::api::manager::VmCreateParams;
use strata_shared::model::{
    validate_name, BootSpec, ConnectionState, DiskFormat, Engine, HostInfo, Machine, NicSpec,
    Provisioning, VmSpec, MAX_DISKS, MAX_DISK_MIB, MAX_MEMORY_MIB, MAX_VCPUS, MIN_MEMORY_MIB,
};
use uuid::Uuid;

use super::super::model::{natural_cmp, InventoryModel};
use super::super::net::{Action, NewDisk};
use super::form::{self, Buttons};
use crate::app::dialogs::DialogAction;

/// Where the wizard starts (from the object it was opened on).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewVmPreset {
    /// The datacenter.
    pub datacenter: Option<Uuid>,
    /// A cluster to place it in.
    pub cluster: Option<Uuid>,
    /// A host to place it on.
    pub host: Option<Uuid>,
    /// A datastore to put it on.
    pub datastore: Option<Uuid>,
    /// A tap for its NIC.
    pub tap: Option<String>,
}

/// The host or cluster a VM goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A cluster (then one of its hosts).
    Cluster(Uuid),
    /// A standalone host.
    Host(Uuid),
}

/// One disk row, as typed.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskRow {
    /// Size in MiB, as typed.
    pub size: String,
    /// File format.
    pub format: DiskFormat,
    /// Thin or thick.
    pub provisioning: Provisioning,
}

impl Default for DiskRow {
    fn default() -> Self {
        DiskRow {
            size: "1024".into(),
            format: DiskFormat::Raw,
            provisioning: Provisioning::Thin,
        }
    }
}

/// Why the form cannot be sent, per field, in words.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewVmErrors {
    /// Next to the name.
    pub name: Option<String>,
    /// Next to the placement.
    pub placement: Option<String>,
    /// Next to the host of a cluster.
    pub host: Option<String>,
    /// Next to the datastore.
    pub datastore: Option<String>,
    /// Next to the engine.
    pub engine: Option<String>,
    /// Next to the vCPUs.
    pub vcpus: Option<String>,
    /// Next to the memory.
    pub memory: Option<String>,
    /// Next to each disk row.
    pub disks: Vec<Option<String>>,
    /// Next to the NIC.
    pub nic: Option<String>,
    /// Next to the kernel.
    pub kernel: Option<String>,
    /// Next to the command line.
    pub cmdline: Option<String>,
    /// Anything else the API's own check says.
    pub other: Option<String>,
}

/// What OK sends: the VM, its disks, and whether to power it on.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVmSubmission {
    /// `vm.create`'s params.
    pub params: VmCreateParams,
    /// Disks to add after it.
    pub disks: Vec<NewDisk>,
    /// Power on at the end.
    pub power_on: bool,
}

impl NewVmSubmission {
    /// What the dialog asks the app to send.
    pub fn into_action(self) -> DialogAction {
        DialogAction::Submit {
            label: format!("Create VM {}", self.params.name),
            action: Box::new(Action::CreateVm {
                params: self.params,
                disks: self.disks,
                power_on: self.power_on,
            }),
            target: None,
        }
    }
}

/// The open wizard.
#[derive(Debug, Clone)]
pub struct NewVmDialog {
    /// The datacenter the VM goes into.
    pub datacenter: Uuid,
    /// Name, as typed.
    pub name: String,
    /// Cluster or standalone host.
    pub placement: Option<Placement>,
    /// The host (for a cluster, one of its hosts).
    pub host: Option<Uuid>,
    /// Datastore name on the host.
    pub datastore: String,
    /// Engine.
    pub engine: Engine,
    /// Machine.
    pub machine: Machine,
    /// vCPUs, as typed.
    pub vcpus: String,
    /// Memory in MiB, as typed.
    pub memory: String,
    /// Disks to add.
    pub disks: Vec<DiskRow>,
    /// NIC tap; empty = no NIC.
    pub tap: String,
    /// Kernel path on the host.
    pub kernel: String,
    /// Initramfs path on the host; empty = none.
    pub initrd: String,
    /// Extra kernel command line.
    pub cmdline: String,
    /// Power on after creation.
    pub power_on: bool,
    /// The VM whose boot files were copied in.
    pub copied_from: Option<String>,
    /// The server's refusal of the last OK, in words.
    pub server_error: Option<String>,
    /// Token of the request sent and not yet answered.
    pub pending: Option<u64>,
}

fn engine_text(e: Engine) -> &'static str {
    match e {
        Engine::Auto => "Automatic",
        Engine::Native => "Native (strata-vmx)",
        Engine::Qemu => "QEMU",
    }
}

fn machine_text(m: Machine) -> &'static str {
    match m {
        Machine::Microvm => "microvm",
        Machine::Q35 => "q35 (PC)",
    }
}

fn format_text(f: DiskFormat) -> &'static str {
    match f {
        DiskFormat::Raw => "raw",
        DiskFormat::Qcow2 => "qcow2",
        DiskFormat::Rdm => "mapped device",
    }
}

fn provisioning_text(p: Provisioning) -> &'static str {
    match p {
        Provisioning::Thin => "thin",
        Provisioning::Thick => "thick",
    }
}

/// A datastore the chosen host offers.
#[derive(Debug, Clone, PartialEq)]
pub struct DatastoreChoice {
    /// Its name on the host.
    pub name: String,
    /// Free bytes, when known.
    pub free_bytes: Option<u64>,
    /// Why it cannot be used now.
    pub problem: Option<String>,
}

impl NewVmDialog {
    /// Opens the wizard, placed from `preset`; `None` when there is no datacenter.
    pub fn open(preset: NewVmPreset, inv: &InventoryModel) -> Option<Self> {
        let connected = |h: &HostInfo| h.connection_state == ConnectionState::Connected;
        let ds_host = preset.datastore.and_then(|d| {
            let ds = inv.datastores.get(&d)?;
            let mut hosts: Vec<&HostInfo> =
                ds.hosts.iter().filter_map(|h| inv.hosts.get(h)).collect();
            hosts.sort_by(|a, b| natural_cmp(&a.name, &b.name));
            hosts
                .iter()
                .find(|h| connected(h))
                .or(hosts.first())
                .map(|h| h.id)
        });
        let cluster_host = preset.cluster.and_then(|c| {
            let hosts = inv.hosts_in_cluster(c);
            hosts
                .iter()
                .find(|h| connected(h))
                .or(hosts.first())
                .map(|h| h.id)
        });
        let datacenter = preset
            .datacenter
            .or_else(|| {
                preset
                    .host
                    .and_then(|h| inv.hosts.get(&h))
                    .map(|h| h.datacenter)
            })
            .or_else(|| {
                preset
                    .cluster
                    .and_then(|c| inv.clusters.get(&c))
                    .map(|c| c.datacenter)
            })
            .or_else(|| {
                preset
                    .datastore
                    .and_then(|d| inv.datastores.get(&d))
                    .map(|d| d.datacenter)
            })
            .or_else(|| inv.datacenters.keys().next().copied())?;
        let any_host = || {
            let mut hosts: Vec<&HostInfo> = inv
                .hosts
                .values()
                .filter(|h| h.datacenter == datacenter)
                .collect();
            hosts.sort_by(|a, b| natural_cmp(&a.name, &b.name));
            hosts
                .iter()
                .find(|h| connected(h))
                .or(hosts.first())
                .map(|h| h.id)
        };
        let host = preset.host.or(ds_host).or(cluster_host).or_else(any_host);
        let placement = match (preset.cluster, host.and_then(|h| inv.hosts.get(&h))) {
            (Some(c), _) => Some(Placement::Cluster(c)),
            (None, Some(h)) => Some(match h.cluster {
                Some(c) => Placement::Cluster(c),
                None => Placement::Host(h.id),
            }),
            (None, None) => None,
        };
        let mut d = NewVmDialog {
            datacenter,
            name: String::new(),
            placement,
            host,
            datastore: String::new(),
            engine: Engine::Auto,
            machine: Machine::Microvm,
            vcpus: "1".into(),
            memory: "256".into(),
            disks: Vec::new(),
            tap: preset.tap.unwrap_or_default(),
            kernel: String::new(),
            initrd: String::new(),
            cmdline: String::new(),
            power_on: false,
            copied_from: None,
            server_error: None,
            pending: None,
        };
        if let Some(ds) = preset.datastore.and_then(|d| inv.datastores.get(&d)) {
            d.datastore = ds.name.clone();
        }
        d.host_changed(inv);
        Some(d)
    }

    /// After the host changed: a datastore it has, and boot files from one of its VMs when
    /// none are typed yet.
    fn host_changed(&mut self, inv: &InventoryModel) {
        let choices = self.datastore_choices(inv);
        if !choices.iter().any(|c| c.name == self.datastore) {
            self.datastore = choices
                .iter()
                .find(|c| c.problem.is_none())
                .or(choices.first())
                .map(|c| c.name.clone())
                .unwrap_or_default();
        }
        if self.kernel.trim().is_empty() {
            if let Some(v) = self.boot_sources(inv).first() {
                self.copy_boot_files(inv, *v);
            }
        }
    }

    /// VMs on the chosen host whose boot files can be copied, newest first.
    fn boot_sources(&self, inv: &InventoryModel) -> Vec<Uuid> {
        let Some(h) = self.host else {
            return Vec::new();
        };
        let mut vms: Vec<_> = inv
            .vms_on_host(h)
            .iter()
            .filter_map(|id| inv.vms.get(id))
            .filter(|v| !v.spec.boot.kernel.trim().is_empty())
            .collect();
        vms.sort_by(|a, b| {
            b.created_ms
                .cmp(&a.created_ms)
                .then_with(|| natural_cmp(&a.name, &b.name))
        });
        vms.into_iter().map(|v| v.id).collect()
    }

    fn copy_boot_files(&mut self, inv: &InventoryModel, vm: Uuid) {
        if let Some(v) = inv.vms.get(&vm) {
            self.kernel.clone_from(&v.spec.boot.kernel);
            self.initrd = v.spec.boot.initrd.clone().unwrap_or_default();
            self.copied_from = Some(v.name.clone());
        }
    }

    fn host_info<'a>(&self, inv: &'a InventoryModel) -> Option<&'a HostInfo> {
        self.host.and_then(|h| inv.hosts.get(&h))
    }

    /// The datastores of the chosen host: from what it reports, else from the inventory.
    pub fn datastore_choices(&self, inv: &InventoryModel) -> Vec<DatastoreChoice> {
        let Some(h) = self.host_info(inv) else {
            return Vec::new();
        };
        let mut v: Vec<DatastoreChoice> = match &h.facts {
            Some(f) if !f.datastores.is_empty() => f
                .datastores
                .iter()
                .map(|d| DatastoreChoice {
                    name: d.name.clone(),
                    free_bytes: Some(d.free_bytes),
                    problem: (!d.accessible)
                        .then(|| d.problem.clone().unwrap_or_else(|| "no answer".into())),
                })
                .collect(),
            _ => inv
                .datastores_of_host(h.id)
                .into_iter()
                .map(|d| DatastoreChoice {
                    name: d.name.clone(),
                    free_bytes: Some(d.free_bytes),
                    problem: d
                        .inaccessible_on
                        .iter()
                        .find(|p| p.host == h.id)
                        .map(|p| p.problem.clone()),
                })
                .collect(),
        };
        v.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        v
    }

    /// The engine the VM will run on: the chosen one, or what `auto` means on the host.
    fn effective_engine(&self, inv: &InventoryModel) -> Option<Engine> {
        match self.engine {
            Engine::Auto => self
                .host_info(inv)
                .and_then(|h| h.facts.as_ref())
                .map(|f| f.default_engine),
            e => Some(e),
        }
    }

    /// Runs every check; `Ok` carries what OK sends.
    pub fn check(&self, inv: &InventoryModel) -> Result<NewVmSubmission, Box<NewVmErrors>> {
        let mut e = NewVmErrors {
            disks: vec![None; self.disks.len()],
            ..Default::default()
        };
        // Name.
        if self.name.is_empty() {
            e.name = Some("Enter a name".into());
        } else if let Err(m) = validate_name("VM", &self.name) {
            e.name = Some(form::capitalized(&m));
        } else if inv.vm_name_taken(self.datacenter, &self.name, None) {
            e.name = Some(format!("A VM named {} already exists", self.name));
        }
        // Placement and host.
        let host = self.host_info(inv);
        match self.placement {
            None => e.placement = Some("Choose a cluster or a host".into()),
            Some(Placement::Cluster(c)) => {
                let name = inv.clusters.get(&c).map(|c| c.name.as_str()).unwrap_or("");
                if inv.hosts_in_cluster(c).is_empty() {
                    e.placement = Some(format!("Cluster {name} has no hosts"));
                } else if host.is_none_or(|h| h.cluster != Some(c)) {
                    e.host = Some(format!("Choose a host of cluster {name}"));
                }
            }
            Some(Placement::Host(h)) => {
                if self.host != Some(h) || host.is_none() {
                    e.placement = Some("Choose a host".into());
                }
            }
        }
        if let Some(h) = host {
            if h.connection_state != ConnectionState::Connected {
                let why = h
                    .state_reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                let msg = format!("Host {} is not connected{why}", h.name);
                match self.placement {
                    Some(Placement::Cluster(_)) => e.host = Some(msg),
                    _ => e.placement = Some(msg),
                }
            }
        }
        // Datastore.
        if let Some(h) = host {
            let choices = self.datastore_choices(inv);
            match choices.iter().find(|c| c.name == self.datastore) {
                None if self.datastore.is_empty() => {
                    e.datastore = Some(if choices.is_empty() {
                        format!("Host {} reports no datastores", h.name)
                    } else {
                        "Choose a datastore".into()
                    })
                }
                None => {
                    e.datastore = Some(format!(
                        "Host {} has no datastore {}",
                        h.name, self.datastore
                    ))
                }
                Some(DatastoreChoice {
                    problem: Some(p), ..
                }) => {
                    e.datastore = Some(format!(
                        "Datastore {} is inaccessible on {}: {p}",
                        self.datastore, h.name
                    ))
                }
                Some(_) => {}
            }
        }
        // Engine and sizes, against what the host has.
        let facts = host.and_then(|h| h.facts.as_ref());
        if let (Some(h), Some(f)) = (host, facts) {
            if self.engine != Engine::Auto && !f.engines.contains(&self.engine) {
                e.engine = Some(match self.engine {
                    Engine::Native => format!(
                        "Host {} cannot run the native engine: it has no hardware virtualization",
                        h.name
                    ),
                    _ => format!("Host {} cannot run QEMU: it is not installed", h.name),
                });
            }
        }
        let vcpus = form::parse_whole(
            &self.vcpus,
            "the number of vCPUs",
            "",
            1..=u64::from(MAX_VCPUS),
        )
        .and_then(|v| match (host, facts) {
            (Some(h), Some(f)) if v > u64::from(f.cpu_count.saturating_mul(4).max(1)) => {
                Err(format!(
                    "Host {} allows at most {} vCPUs per VM ({} CPUs × 4)",
                    h.name,
                    f.cpu_count.saturating_mul(4).max(1),
                    f.cpu_count
                ))
            }
            _ => Ok(v),
        });
        let memory = form::parse_whole(
            &self.memory,
            "the memory",
            "MiB",
            MIN_MEMORY_MIB..=MAX_MEMORY_MIB,
        )
        .and_then(|m| match (host, facts) {
            (Some(h), Some(f)) if f.memory_mib > 0 && m > f.memory_mib => Err(format!(
                "Host {} has only {} MiB of memory",
                h.name, f.memory_mib
            )),
            _ => Ok(m),
        });
        let vcpus = vcpus.map_err(|m| e.vcpus = Some(m)).ok();
        let memory = memory.map_err(|m| e.memory = Some(m)).ok();
        // Disks.
        let native = self.effective_engine(inv) == Some(Engine::Native);
        let mut disks = Vec::new();
        for (i, d) in self.disks.iter().enumerate() {
            match form::parse_whole(&d.size, "the disk's size", "MiB", 1..=MAX_DISK_MIB) {
                Err(m) => e.disks[i] = Some(m),
                Ok(_) if d.format == DiskFormat::Qcow2 && native => {
                    e.disks[i] = Some("qcow2 disks need the QEMU engine: choose raw".into())
                }
                Ok(size_mib) => disks.push(NewDisk {
                    size_mib,
                    format: d.format,
                    provisioning: d.provisioning,
                }),
            }
        }
        // NIC.
        let tap = self.tap.trim();
        let nics = if tap.is_empty() {
            Vec::new()
        } else {
            let nic = NicSpec {
                tap: tap.to_string(),
                mac: None,
            };
            if let Err(m) = nic.validate() {
                e.nic = Some(form::capitalized(&m.replacen("nic tap", "tap", 1)));
            }
            vec![nic]
        };
        // Guest image.
        if self.kernel.trim().is_empty() {
            e.kernel = Some("Enter the path of a kernel image on the host".into());
        }
        if self.cmdline.len() > 2048 {
            e.cmdline = Some("The command line can be at most 2048 bytes".into());
        } else if self.cmdline.chars().any(char::is_control) {
            e.cmdline = Some("The command line must not contain control characters".into());
        }
        let fields_ok = e.name.is_none()
            && e.placement.is_none()
            && e.host.is_none()
            && e.datastore.is_none()
            && e.engine.is_none()
            && e.disks.iter().all(Option::is_none)
            && e.nic.is_none()
            && e.kernel.is_none()
            && e.cmdline.is_none();
        let (Some(vcpus), Some(memory), Some(host), true) = (vcpus, memory, self.host, fields_ok)
        else {
            return Err(Box::new(e));
        };
        let initrd = self.initrd.trim();
        let spec = VmSpec {
            vcpus: u32::try_from(vcpus).unwrap_or(u32::MAX),
            memory_mib: memory,
            engine: self.engine,
            machine: self.machine,
            boot: BootSpec {
                kernel: self.kernel.trim().to_string(),
                initrd: (!initrd.is_empty()).then(|| initrd.to_string()),
                cmdline: self.cmdline.clone(),
            },
            allocation: Default::default(),
            disks: Vec::new(),
            template: false,
            nics,
        };
        if let Err(m) = spec.validate() {
            e.other = Some(form::capitalized(&m));
            return Err(Box::new(e));
        }
        Ok(NewVmSubmission {
            params: VmCreateParams {
                name: self.name.clone(),
                host,
                datastore: Some(self.datastore.clone()),
                spec,
            },
            disks,
            power_on: self.power_on,
        })
    }

    /// Draws the window; returns what the user decided this frame.
    pub fn show(&mut self, ctx: &egui::Context, inv: &InventoryModel) -> Option<DialogAction> {
        let mut action = None;
        let checked = self.check(inv);
        let errors = checked.clone().err().map(|e| *e).unwrap_or_default();
        let dc_name = inv
            .datacenters
            .get(&self.datacenter)
            .map(|d| d.name.clone())
            .unwrap_or_default();
        form::dialog(ctx, "New Virtual Machine", "new_vm_wizard", 760.0, |ui| {
            form::in_datacenter(ui, &dc_name);
            let host_before = self.host;
            form::section(ui, "Name and placement");
            form::grid("new_vm_place", ui, |ui| {
                form::text_row(
                    ui,
                    "Name",
                    &mut self.name,
                    240.0,
                    true,
                    errors.name.as_deref(),
                );
                self.placement_rows(ui, inv, &errors);
                self.datastore_row(ui, inv, &errors);
            });
            if self.host != host_before {
                self.host_changed(inv);
            }
            form::section(ui, "Hardware");
            form::grid("new_vm_hw", ui, |ui| {
                self.hardware_rows(ui, &errors);
            });
            self.disks_section(ui, &errors);
            form::section(ui, "Network");
            form::grid("new_vm_net", ui, |ui| {
                let l = ui.label("NIC tap");
                ui.horizontal(|ui| {
                    ui.add(
                        egui::TextEdit::singleline(&mut self.tap)
                            .hint_text("none")
                            .desired_width(140.0)
                            .min_size(egui::vec2(140.0, 0.0)),
                    )
                    .labelled_by(l.id);
                    ui.weak("empty: no network");
                });
                form::error_text(ui, errors.nic.as_deref());
                ui.end_row();
            });
            form::section(ui, "Guest image");
            form::grid("new_vm_boot", ui, |ui| {
                self.boot_rows(ui, inv, &errors);
            });
            ui.add_space(4.0);
            ui.checkbox(&mut self.power_on, "Power on after creation");
            if let Some(o) = &errors.other {
                ui.colored_label(super::super::theme::ERROR, o);
            }
            form::server_error(ui, self.server_error.as_deref());
            match form::ok_cancel(
                ui,
                "Create",
                checked.is_ok(),
                "Correct the fields marked in red first",
                self.pending.is_some(),
            ) {
                Buttons::Ok => {
                    if let Ok(s) = checked {
                        action = Some(s.into_action());
                    }
                }
                Buttons::Cancel => action = Some(DialogAction::Cancel),
                Buttons::None => {}
            }
        });
        action
    }

    fn placement_rows(&mut self, ui: &mut egui::Ui, inv: &InventoryModel, errors: &NewVmErrors) {
        let text = |p: Option<Placement>| match p {
            Some(Placement::Cluster(c)) => inv
                .clusters
                .get(&c)
                .map(|c| format!("Cluster {}", c.name))
                .unwrap_or_default(),
            Some(Placement::Host(h)) => inv
                .hosts
                .get(&h)
                .map(|h| format!("Host {}", h.name))
                .unwrap_or_default(),
            None => "Choose…".into(),
        };
        let l = ui.label("Placement");
        let before = self.placement;
        egui::ComboBox::from_id_salt("new_vm_placement")
            .selected_text(text(self.placement))
            .width(240.0)
            .show_ui(ui, |ui| {
                for c in inv.clusters_in(self.datacenter) {
                    let p = Some(Placement::Cluster(c.id));
                    ui.selectable_value(&mut self.placement, p, text(p));
                }
                for h in inv.standalone_hosts(self.datacenter) {
                    let p = Some(Placement::Host(h.id));
                    ui.selectable_value(&mut self.placement, p, text(p));
                }
            })
            .response
            .labelled_by(l.id);
        form::error_text(ui, errors.placement.as_deref());
        ui.end_row();
        if self.placement != before {
            self.host = match self.placement {
                Some(Placement::Host(h)) => Some(h),
                Some(Placement::Cluster(c)) => {
                    let hosts = inv.hosts_in_cluster(c);
                    hosts
                        .iter()
                        .find(|h| h.connection_state == ConnectionState::Connected)
                        .or(hosts.first())
                        .map(|h| h.id)
                }
                None => None,
            };
        }
        if let Some(Placement::Cluster(c)) = self.placement {
            let l = ui.label("Host in cluster");
            let name = |h: Option<Uuid>| {
                h.and_then(|h| inv.hosts.get(&h))
                    .map(|h| h.name.clone())
                    .unwrap_or_else(|| "Choose…".into())
            };
            egui::ComboBox::from_id_salt("new_vm_cluster_host")
                .selected_text(name(self.host))
                .width(240.0)
                .show_ui(ui, |ui| {
                    for h in inv.hosts_in_cluster(c) {
                        ui.selectable_value(&mut self.host, Some(h.id), &h.name);
                    }
                })
                .response
                .labelled_by(l.id);
            form::error_text(ui, errors.host.as_deref());
            ui.end_row();
        }
    }

    fn datastore_row(&mut self, ui: &mut egui::Ui, inv: &InventoryModel, errors: &NewVmErrors) {
        let choices = self.datastore_choices(inv);
        let text = |c: &DatastoreChoice| match (&c.problem, c.free_bytes) {
            (Some(_), _) => format!("{} (inaccessible)", c.name),
            (None, Some(f)) => format!("{} ({} free)", c.name, super::super::theme::bytes(f)),
            (None, None) => c.name.clone(),
        };
        let selected = choices
            .iter()
            .find(|c| c.name == self.datastore)
            .map(text)
            .unwrap_or_else(|| {
                if self.datastore.is_empty() {
                    "Choose…".into()
                } else {
                    self.datastore.clone()
                }
            });
        let l = ui.label("Datastore");
        egui::ComboBox::from_id_salt("new_vm_datastore")
            .selected_text(selected)
            .width(240.0)
            .show_ui(ui, |ui| {
                for c in &choices {
                    ui.selectable_value(&mut self.datastore, c.name.clone(), text(c));
                }
            })
            .response
            .labelled_by(l.id);
        form::error_text(ui, errors.datastore.as_deref());
        ui.end_row();
    }

    fn hardware_rows(&mut self, ui: &mut egui::Ui, errors: &NewVmErrors) {
        let l = ui.label("Engine");
        ui.horizontal(|ui| {
            egui::ComboBox::from_id_salt("new_vm_engine")
                .selected_text(engine_text(self.engine))
                .width(150.0)
                .show_ui(ui, |ui| {
                    for e in [Engine::Auto, Engine::Qemu, Engine::Native] {
                        ui.selectable_value(&mut self.engine, e, engine_text(e));
                    }
                })
                .response
                .labelled_by(l.id);
            let m = ui.label("Machine");
            egui::ComboBox::from_id_salt("new_vm_machine")
                .selected_text(machine_text(self.machine))
                .width(90.0)
                .show_ui(ui, |ui| {
                    for x in [Machine::Microvm, Machine::Q35] {
                        ui.selectable_value(&mut self.machine, x, machine_text(x));
                    }
                })
                .response
                .labelled_by(m.id);
        });
        form::error_text(ui, errors.engine.as_deref());
        ui.end_row();
        form::text_row(
            ui,
            "vCPUs",
            &mut self.vcpus,
            60.0,
            true,
            errors.vcpus.as_deref(),
        );
        form::text_row(
            ui,
            "Memory (MiB)",
            &mut self.memory,
            100.0,
            true,
            errors.memory.as_deref(),
        );
    }

    fn disks_section(&mut self, ui: &mut egui::Ui, errors: &NewVmErrors) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.strong("Disks");
            let full = self.disks.len() >= MAX_DISKS;
            if ui
                .add_enabled(!full, egui::Button::new("Add disk").small())
                .on_disabled_hover_text(format!("A VM can have at most {MAX_DISKS} disks"))
                .clicked()
            {
                self.disks.push(DiskRow::default());
            }
            if self.disks.is_empty() {
                ui.weak("none: the guest runs from its initramfs");
            } else {
                ui.weak("thin: space is used as the guest writes; thick: all of it now");
            }
        });
        ui.add_space(2.0);
        let mut remove = None;
        if !self.disks.is_empty() {
            form::grid("new_vm_disks", ui, |ui| {
                for (i, d) in self.disks.iter_mut().enumerate() {
                    let n = i + 1;
                    let l = ui.label(format!("Disk {n} size"));
                    ui.horizontal(|ui| {
                        ui.add(
                            egui::TextEdit::singleline(&mut d.size)
                                .desired_width(80.0)
                                .min_size(egui::vec2(80.0, 0.0)),
                        )
                        .labelled_by(l.id);
                        ui.label("MiB");
                        egui::ComboBox::from_id_salt(("new_vm_disk_format", i))
                            .selected_text(format_text(d.format))
                            .width(70.0)
                            .show_ui(ui, |ui| {
                                for f in [DiskFormat::Raw, DiskFormat::Qcow2] {
                                    ui.selectable_value(&mut d.format, f, format_text(f));
                                }
                            });
                        egui::ComboBox::from_id_salt(("new_vm_disk_prov", i))
                            .selected_text(provisioning_text(d.provisioning))
                            .width(64.0)
                            .show_ui(ui, |ui| {
                                for p in [Provisioning::Thin, Provisioning::Thick] {
                                    ui.selectable_value(
                                        &mut d.provisioning,
                                        p,
                                        provisioning_text(p),
                                    );
                                }
                            });
                        if ui.small_button("Remove").clicked() {
                            remove = Some(i);
                        }
                    });
                    form::error_text(ui, errors.disks.get(i).and_then(|e| e.as_deref()));
                    ui.end_row();
                }
            });
        }
        if let Some(i) = remove {
            self.disks.remove(i);
        }
    }

    fn boot_rows(&mut self, ui: &mut egui::Ui, inv: &InventoryModel, errors: &NewVmErrors) {
        form::text_row(
            ui,
            "Kernel",
            &mut self.kernel,
            380.0,
            true,
            errors.kernel.as_deref(),
        );
        form::text_row(ui, "Initrd", &mut self.initrd, 380.0, true, None);
        form::text_row(
            ui,
            "Command line",
            &mut self.cmdline,
            380.0,
            true,
            errors.cmdline.as_deref(),
        );
        let sources = self.boot_sources(inv);
        let l = ui.label("Copy from");
        let mut copy = None;
        ui.horizontal(|ui| {
            egui::ComboBox::from_id_salt("new_vm_copy_boot")
                .selected_text(
                    self.copied_from
                        .clone()
                        .unwrap_or_else(|| "a VM on this host…".into()),
                )
                .width(180.0)
                .show_ui(ui, |ui| {
                    for id in &sources {
                        if let Some(v) = inv.vms.get(id) {
                            if ui.selectable_label(false, &v.name).clicked() {
                                copy = Some(*id);
                            }
                        }
                    }
                })
                .response
                .labelled_by(l.id);
            ui.weak(if sources.is_empty() {
                "no VM on this host to copy kernel and initrd from"
            } else {
                "kernel and initrd paths of that VM"
            });
        });
        ui.label("");
        ui.end_row();
        if let Some(id) = copy {
            self.copy_boot_files(inv, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::{
        ClusterInfo, DatacenterInfo, DatastoreFacts, HostFacts, Inventory, VmInfo,
    };

    fn facts(engines: Vec<Engine>, default_engine: Engine) -> HostFacts {
        HostFacts {
            id: Uuid::new_v4(),
            hostname: "h".into(),
            cpu_count: 2,
            cpu_mhz: 2000,
            memory_mib: 4096,
            hardware_virtualization: engines.contains(&Engine::Native),
            engines,
            default_engine,
            qemu_version: None,
            agent_version: "0".into(),
            datastores: vec![
                DatastoreFacts {
                    id: Uuid::nil(),
                    name: "datastore1".into(),
                    path: "/ds1".into(),
                    capacity_bytes: 10 << 30,
                    free_bytes: 5 << 30,
                    accessible: true,
                    problem: None,
                },
                DatastoreFacts {
                    id: Uuid::nil(),
                    name: "lost".into(),
                    path: "/lost".into(),
                    capacity_bytes: 0,
                    free_bytes: 0,
                    accessible: false,
                    problem: Some("stale NFS handle".into()),
                },
            ],
            managed_by: None,
        }
    }

    /// A datacenter with a cluster (one host) and a standalone host with a VM on it.
    fn inventory() -> (InventoryModel, Uuid, Uuid, Uuid) {
        let dc = Uuid::new_v4();
        let cluster = ClusterInfo {
            id: Uuid::new_v4(),
            name: "Prod".into(),
            datacenter: dc,
        };
        let host = |name: &str, cluster: Option<Uuid>| HostInfo {
            id: Uuid::new_v4(),
            name: name.into(),
            address: format!("{name}:9443"),
            datacenter: dc,
            cluster,
            thumbprint: String::new(),
            connection_state: ConnectionState::Connected,
            state_reason: None,
            facts: Some(facts(vec![Engine::Qemu], Engine::Qemu)),
        };
        let standalone = host("h1", None);
        let member = host("h2", Some(cluster.id));
        let vm: VmInfo = serde_json::from_value(serde_json::json!({
            "id": Uuid::new_v4(), "name": "web01", "host": standalone.id,
            "datastore": "datastore1", "powerState": "poweredOff", "createdMs": 5,
            "spec": {"vcpus": 1, "memoryMib": 256, "boot": {"kernel": "/g/vmlinuz", "initrd": "/g/initrd"}}
        }))
        .unwrap();
        let inv = InventoryModel::from_snapshot(Inventory {
            datacenters: vec![DatacenterInfo {
                id: dc,
                name: "DC".into(),
            }],
            clusters: vec![cluster.clone()],
            hosts: vec![standalone.clone(), member.clone()],
            vms: vec![vm],
            ..Default::default()
        });
        (inv, standalone.id, member.id, cluster.id)
    }

    #[test]
    fn the_wizard_is_placed_from_where_it_was_opened_and_fills_in_boot_files() {
        let (inv, h1, h2, cluster) = inventory();
        let d = NewVmDialog::open(
            NewVmPreset {
                host: Some(h1),
                ..Default::default()
            },
            &inv,
        )
        .unwrap();
        assert_eq!(d.placement, Some(Placement::Host(h1)));
        assert_eq!(d.datastore, "datastore1", "the first accessible datastore");
        assert_eq!(d.kernel, "/g/vmlinuz");
        assert_eq!(d.initrd, "/g/initrd");
        assert_eq!(d.copied_from.as_deref(), Some("web01"));
        let d = NewVmDialog::open(
            NewVmPreset {
                cluster: Some(cluster),
                ..Default::default()
            },
            &inv,
        )
        .unwrap();
        assert_eq!(
            (d.placement, d.host),
            (Some(Placement::Cluster(cluster)), Some(h2))
        );
        assert!(d.kernel.is_empty(), "no VM on h2 to copy from");
    }

    #[test]
    fn values_that_cannot_work_are_refused_with_reasons() {
        let (inv, h1, _, _) = inventory();
        let mut d = NewVmDialog::open(
            NewVmPreset {
                host: Some(h1),
                ..Default::default()
            },
            &inv,
        )
        .unwrap();
        let e = d.check(&inv).unwrap_err();
        assert_eq!(e.name.as_deref(), Some("Enter a name"));
        d.name = "web01".into();
        assert_eq!(
            d.check(&inv).unwrap_err().name.as_deref(),
            Some("A VM named web01 already exists")
        );
        d.name = "db/01".into();
        assert!(d.check(&inv).unwrap_err().name.unwrap().contains("'/'"));
        d.name = "db01".into();
        let ok = d.check(&inv).unwrap();
        assert_eq!(ok.params.host, h1);
        assert_eq!(ok.params.datastore.as_deref(), Some("datastore1"));
        assert_eq!((ok.params.spec.vcpus, ok.params.spec.memory_mib), (1, 256));

        d.vcpus = "9".into();
        d.memory = "8192".into();
        d.datastore = "lost".into();
        d.engine = Engine::Native;
        d.tap = "tap 0".into();
        d.kernel.clear();
        d.disks = vec![
            DiskRow {
                size: "0".into(),
                ..Default::default()
            },
            DiskRow::default(),
        ];
        let e = d.check(&inv).unwrap_err();
        assert_eq!(
            e.vcpus.as_deref(),
            Some("Host h1 allows at most 8 vCPUs per VM (2 CPUs × 4)")
        );
        assert_eq!(
            e.memory.as_deref(),
            Some("Host h1 has only 4096 MiB of memory")
        );
        assert_eq!(
            e.datastore.as_deref(),
            Some("Datastore lost is inaccessible on h1: stale NFS handle")
        );
        assert!(e.engine.unwrap().contains("cannot run the native engine"));
        assert!(e.nic.unwrap().contains("must not contain"));
        assert!(e.kernel.is_some());
        assert_eq!(
            e.disks,
            vec![
                Some("The disk's size must be 1 to 67108864 MiB".into()),
                None
            ]
        );

        // qcow2 is for QEMU only.
        d.engine = Engine::Native;
        d.disks = vec![DiskRow {
            format: DiskFormat::Qcow2,
            ..Default::default()
        }];
        assert!(d.check(&inv).unwrap_err().disks[0]
            .as_deref()
            .unwrap()
            .contains("need the QEMU engine"));
    }
}
