//! The small dialogs: New Cluster, Rename VM, Edit Settings (vCPUs, memory, kernel command
//! line) and Move VM to a resource pool. Each checks what it can before sending (names as
//! the server checks them and unique where the server wants them unique; vCPUs and memory
//! only while the VM has no process) and keeps the server's refusal in words.

use strata_shared::api::manager::VmReconfigureParams;
use strata_shared::model::{
    validate_name, ClusterCreateParams, ObjectKind, ObjectRef, PowerState, VmMoveParams,
    MAX_MEMORY_MIB, MAX_VCPUS, MIN_MEMORY_MIB,
};
use uuid::Uuid;

use super::super::model::{InventoryModel, Selection};
use super::super::net::Action;
use super::super::theme;
use super::form::{self, Buttons};
use crate::app::dialogs::DialogAction;

fn vm_ref(inv: &InventoryModel, id: Uuid) -> Option<ObjectRef> {
    inv.vms.get(&id).map(|v| ObjectRef {
        kind: ObjectKind::Vm,
        id,
        name: v.name.clone(),
    })
}

/// Checks a new VM name for `vm` (`None` for a new VM) in `datacenter`.
pub fn check_vm_name(
    inv: &InventoryModel,
    datacenter: Option<Uuid>,
    name: &str,
    vm: Option<Uuid>,
) -> Result<(), String> {
    if name.is_empty() {
        return Err("Enter a name".into());
    }
    validate_name("VM", name).map_err(|e| form::capitalized(&e))?;
    if datacenter.is_some_and(|d| inv.vm_name_taken(d, name, vm)) {
        return Err(format!("A VM named {name} already exists"));
    }
    Ok(())
}

/// The New Cluster dialog.
#[derive(Debug, Clone)]
pub struct NewClusterDialog {
    /// The datacenter.
    pub datacenter: Uuid,
    /// Name, as typed.
    pub name: String,
    /// The server's refusal, in words.
    pub server_error: Option<String>,
    /// Token of the request sent.
    pub pending: Option<u64>,
}

impl NewClusterDialog {
    /// A blank dialog.
    pub fn open(datacenter: Uuid) -> Self {
        NewClusterDialog {
            datacenter,
            name: String::new(),
            server_error: None,
            pending: None,
        }
    }

    /// The name's problem, if any.
    pub fn check(&self, inv: &InventoryModel) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("Enter a name".into());
        }
        validate_name("cluster", &self.name).map_err(|e| form::capitalized(&e))?;
        if inv
            .clusters_in(self.datacenter)
            .iter()
            .any(|c| c.name == self.name)
        {
            return Err(format!("A cluster named {} already exists", self.name));
        }
        Ok(())
    }

    /// Draws the window; returns what the user decided this frame.
    pub fn show(&mut self, ctx: &egui::Context, inv: &InventoryModel) -> Option<DialogAction> {
        let mut action = None;
        let checked = self.check(inv);
        let dc = inv
            .datacenters
            .get(&self.datacenter)
            .map(|d| d.name.clone())
            .unwrap_or_default();
        form::dialog(ctx, "New Cluster", "new_cluster_dialog", 520.0, |ui| {
            form::in_datacenter(ui, &dc);
            form::grid("new_cluster_grid", ui, |ui| {
                form::text_row(
                    ui,
                    "Name",
                    &mut self.name,
                    220.0,
                    true,
                    checked.as_ref().err().map(String::as_str),
                );
            });
            form::server_error(ui, self.server_error.as_deref());
            match form::ok_cancel(
                ui,
                "Create",
                checked.is_ok(),
                "Correct the name first",
                self.pending.is_some(),
            ) {
                Buttons::Ok => {
                    action = Some(DialogAction::Submit {
                        action: Box::new(Action::CreateCluster(ClusterCreateParams {
                            name: self.name.clone(),
                            datacenter: Some(self.datacenter),
                        })),
                        label: format!("Create cluster {}", self.name),
                        target: Some(ObjectRef {
                            kind: ObjectKind::Datacenter,
                            id: self.datacenter,
                            name: dc.clone(),
                        }),
                    })
                }
                Buttons::Cancel => action = Some(DialogAction::Cancel),
                Buttons::None => {}
            }
        });
        action
    }
}

/// Which part of a VM's settings the dialog edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsMode {
    /// Its name.
    Rename,
    /// vCPUs, memory and kernel command line.
    Edit,
}

/// Why the settings cannot be sent, per field.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsErrors {
    /// Next to the name.
    pub name: Option<String>,
    /// Next to the vCPUs.
    pub vcpus: Option<String>,
    /// Next to the memory.
    pub memory: Option<String>,
    /// Next to the command line.
    pub cmdline: Option<String>,
    /// Nothing to send (nothing changed), in words.
    pub unchanged: Option<String>,
}

impl SettingsErrors {
    fn fields_ok(&self) -> bool {
        self.name.is_none()
            && self.vcpus.is_none()
            && self.memory.is_none()
            && self.cmdline.is_none()
    }
}

/// The Rename VM and Edit Settings dialogs (`vm.reconfigure`).
#[derive(Debug, Clone)]
pub struct VmSettingsDialog {
    /// The VM.
    pub vm: Uuid,
    /// What it edits.
    pub mode: SettingsMode,
    /// Name, as typed.
    pub name: String,
    /// vCPUs, as typed.
    pub vcpus: String,
    /// Memory in MiB, as typed.
    pub memory: String,
    /// Kernel command line, as typed.
    pub cmdline: String,
    /// The server's refusal, in words.
    pub server_error: Option<String>,
    /// Token of the request sent.
    pub pending: Option<u64>,
}

/// Why a VM in this state cannot change its vCPUs or memory, if it cannot.
pub fn hardware_locked(p: PowerState) -> Option<&'static str> {
    match p {
        PowerState::PoweredOn => Some("it is powered on"),
        PowerState::Paused => Some("it is paused"),
        PowerState::Suspended => Some("it is suspended (its saved state expects what it had)"),
        PowerState::Unknown => Some("its state is unknown (its host is not connected)"),
        PowerState::PoweredOff => None,
    }
}

impl VmSettingsDialog {
    /// Opens on `vm`, filled from the inventory; `None` when it is gone.
    pub fn open(vm: Uuid, mode: SettingsMode, inv: &InventoryModel) -> Option<Self> {
        let v = inv.vms.get(&vm)?;
        Some(VmSettingsDialog {
            vm,
            mode,
            name: v.name.clone(),
            vcpus: v.spec.vcpus.to_string(),
            memory: v.spec.memory_mib.to_string(),
            cmdline: v.spec.boot.cmdline.clone(),
            server_error: None,
            pending: None,
        })
    }

    /// Runs every check; `Ok` carries the change (only what differs).
    pub fn check(&self, inv: &InventoryModel) -> Result<VmReconfigureParams, SettingsErrors> {
        let mut e = SettingsErrors::default();
        let Some(v) = inv.vms.get(&self.vm) else {
            e.unchanged = Some("The VM no longer exists".into());
            return Err(e);
        };
        let mut p = VmReconfigureParams {
            id: self.vm,
            ..Default::default()
        };
        match self.mode {
            SettingsMode::Rename => {
                if self.name != v.name {
                    let dc = inv.datacenter_of(Selection::Vm(self.vm));
                    match check_vm_name(inv, dc, &self.name, Some(self.vm)) {
                        Ok(()) => p.name = Some(self.name.clone()),
                        Err(m) => e.name = Some(m),
                    }
                }
            }
            SettingsMode::Edit => {
                let locked = hardware_locked(v.power_state).is_some();
                let host = v.host.and_then(|h| inv.hosts.get(&h));
                let facts = host.and_then(|h| h.facts.as_ref());
                if !locked {
                    match form::parse_whole(
                        &self.vcpus,
                        "the number of vCPUs",
                        "",
                        1..=u64::from(MAX_VCPUS),
                    ) {
                        Err(m) => e.vcpus = Some(m),
                        Ok(n) => {
                            let limit =
                                facts.map(|f| u64::from(f.cpu_count.saturating_mul(4).max(1)));
                            match (limit, host) {
                                (Some(l), Some(h)) if n > l => {
                                    e.vcpus = Some(format!(
                                        "Host {} allows at most {l} vCPUs per VM",
                                        h.name
                                    ))
                                }
                                _ if n != u64::from(v.spec.vcpus) => {
                                    p.vcpus = u32::try_from(n).ok()
                                }
                                _ => {}
                            }
                        }
                    }
                    match form::parse_whole(
                        &self.memory,
                        "the memory",
                        "MiB",
                        MIN_MEMORY_MIB..=MAX_MEMORY_MIB,
                    ) {
                        Err(m) => e.memory = Some(m),
                        Ok(m) => {
                            let reserved = v.spec.allocation.memory.reservation;
                            match (facts, host) {
                                (Some(f), Some(h)) if f.memory_mib > 0 && m > f.memory_mib => {
                                    e.memory = Some(format!(
                                        "Host {} has only {} MiB of memory",
                                        h.name, f.memory_mib
                                    ))
                                }
                                _ if m < reserved => {
                                    e.memory = Some(format!(
                                        "The VM reserves {reserved} MiB: give it at least that, \
                                         or lower its reservation first"
                                    ))
                                }
                                _ if m != v.spec.memory_mib => p.memory_mib = Some(m),
                                _ => {}
                            }
                        }
                    }
                }
                if self.cmdline.len() > 2048 {
                    e.cmdline = Some("The command line can be at most 2048 bytes".into());
                } else if self.cmdline.chars().any(char::is_control) {
                    e.cmdline = Some("The command line must not contain control characters".into());
                } else if self.cmdline != v.spec.boot.cmdline {
                    p.cmdline = Some(self.cmdline.clone());
                }
            }
        }
        if e.fields_ok() && p.is_empty() {
            e.unchanged = Some("Nothing changed yet".into());
        }
        if e == SettingsErrors::default() {
            Ok(p)
        } else {
            Err(e)
        }
    }

    fn title(&self, inv: &InventoryModel) -> String {
        let name = inv.vms.get(&self.vm).map(|v| v.name.as_str()).unwrap_or("");
        match self.mode {
            SettingsMode::Rename => format!("Rename VM {name}"),
            SettingsMode::Edit => format!("Edit Settings of {name}"),
        }
    }

    /// Draws the window; returns what the user decided this frame.
    pub fn show(&mut self, ctx: &egui::Context, inv: &InventoryModel) -> Option<DialogAction> {
        let mut action = None;
        let checked = self.check(inv);
        let errors = checked.clone().err().unwrap_or_default();
        let vm = inv.vms.get(&self.vm);
        let locked = vm.and_then(|v| hardware_locked(v.power_state));
        form::dialog(ctx, self.title(inv), "vm_settings_dialog", 620.0, |ui| {
            form::grid("vm_settings_grid", ui, |ui| match self.mode {
                SettingsMode::Rename => {
                    form::text_row(
                        ui,
                        "New name",
                        &mut self.name,
                        240.0,
                        true,
                        errors.name.as_deref(),
                    );
                }
                SettingsMode::Edit => {
                    form::text_row(
                        ui,
                        "vCPUs",
                        &mut self.vcpus,
                        60.0,
                        locked.is_none(),
                        errors.vcpus.as_deref(),
                    );
                    form::text_row(
                        ui,
                        "Memory (MiB)",
                        &mut self.memory,
                        100.0,
                        locked.is_none(),
                        errors.memory.as_deref(),
                    );
                    form::text_row(
                        ui,
                        "Command line",
                        &mut self.cmdline,
                        360.0,
                        true,
                        errors.cmdline.as_deref(),
                    );
                }
            });
            match self.mode {
                SettingsMode::Rename => {
                    ui.weak("The VM's directory and files on the datastore keep their names.");
                }
                SettingsMode::Edit => {
                    if let Some(why) = locked {
                        ui.colored_label(
                            theme::WARN,
                            format!("Power the VM off to change its vCPUs or memory: {why}."),
                        );
                    }
                    ui.weak("A new command line is used from the VM's next boot.");
                }
            }
            form::server_error(ui, self.server_error.as_deref());
            let why = errors
                .unchanged
                .clone()
                .filter(|_| errors.fields_ok())
                .unwrap_or_else(|| "Correct the fields marked in red first".into());
            match form::ok_cancel(ui, "OK", checked.is_ok(), &why, self.pending.is_some()) {
                Buttons::Ok => {
                    if let Ok(p) = &checked {
                        let name = vm.map(|v| v.name.clone()).unwrap_or_default();
                        let label = match (&p.name, self.mode) {
                            (Some(n), SettingsMode::Rename) => {
                                format!("Rename VM {name} to {n}")
                            }
                            _ => format!("Reconfigure VM {name}"),
                        };
                        action = Some(DialogAction::Submit {
                            action: Box::new(Action::Reconfigure(p.clone())),
                            label,
                            target: vm_ref(inv, self.vm),
                        });
                    }
                }
                Buttons::Cancel => action = Some(DialogAction::Cancel),
                Buttons::None => {}
            }
        });
        action
    }
}

/// The Move VM dialog: the resource pools of the VM's host or cluster.
#[derive(Debug, Clone)]
pub struct MoveVmDialog {
    /// The VM.
    pub vm: Uuid,
    /// The destination: `Some(None)` is the root of the host's or cluster's tree.
    pub destination: Option<Option<Uuid>>,
    /// The server's refusal, in words.
    pub server_error: Option<String>,
    /// Token of the request sent.
    pub pending: Option<u64>,
}

impl MoveVmDialog {
    /// Opens on `vm`.
    pub fn open(vm: Uuid) -> Self {
        MoveVmDialog {
            vm,
            destination: None,
            server_error: None,
            pending: None,
        }
    }

    /// The places the VM can go: the root of its host's or cluster's tree, then its pools
    /// in tree order with their depth.
    pub fn destinations(&self, inv: &InventoryModel) -> Vec<(Option<Uuid>, usize)> {
        let Some(owner) = inv.pool_owner(Selection::Vm(self.vm)) else {
            return Vec::new();
        };
        let mut out = vec![(None, 0)];
        let mut stack: Vec<(Uuid, usize)> = inv
            .child_pools(owner)
            .iter()
            .rev()
            .map(|p| (*p, 1))
            .collect();
        let mut seen = std::collections::HashSet::new();
        while let Some((p, depth)) = stack.pop() {
            if !seen.insert(p) {
                continue;
            }
            out.push((Some(p), depth));
            stack.extend(inv.child_pools(p).iter().rev().map(|c| (*c, depth + 1)));
        }
        out
    }

    /// Where the VM is now (`None` = the root).
    fn current(&self, inv: &InventoryModel) -> Option<Uuid> {
        let v = inv.vms.get(&self.vm)?;
        if inv.vm_in_root(v) {
            None
        } else {
            v.pool
        }
    }

    /// The move OK sends, or why not.
    pub fn check(&self, inv: &InventoryModel) -> Result<VmMoveParams, String> {
        if !inv.vms.contains_key(&self.vm) {
            return Err("The VM no longer exists".into());
        }
        match self.destination {
            None => Err("Choose where the VM goes".into()),
            Some(d) if d == self.current(inv) => Err("The VM is already there".into()),
            Some(pool) => Ok(VmMoveParams { id: self.vm, pool }),
        }
    }

    /// Draws the window; returns what the user decided this frame.
    pub fn show(&mut self, ctx: &egui::Context, inv: &InventoryModel) -> Option<DialogAction> {
        let mut action = None;
        let checked = self.check(inv);
        let name = inv
            .vms
            .get(&self.vm)
            .map(|v| v.name.clone())
            .unwrap_or_default();
        let owner = inv.pool_owner(Selection::Vm(self.vm));
        let root_name = owner
            .map(|o| inv.pool_parent_name(o, None))
            .unwrap_or_else(|| "the root".into());
        let current = self.current(inv);
        let label_of = |d: Option<Uuid>| match d {
            None => format!("{} (no resource pool)", form::capitalized(&root_name)),
            Some(p) => inv
                .pools
                .get(&p)
                .map(|p| p.name.clone())
                .unwrap_or_default(),
        };
        form::dialog(
            ctx,
            format!("Move {name} to a Resource Pool"),
            "move_vm_dialog",
            460.0,
            |ui| {
                ui.weak(format!("The resource pools of {root_name}:"));
                ui.add_space(4.0);
                egui::ScrollArea::vertical()
                    .max_height(320.0)
                    .show(ui, |ui| {
                        for (d, depth) in self.destinations(inv) {
                            ui.horizontal(|ui| {
                                ui.add_space(depth as f32 * 16.0);
                                if d.is_some() {
                                    theme::icon(ui, theme::Shape::Pool, theme::POOL);
                                } else {
                                    theme::icon(ui, theme::Shape::Host, theme::DATACENTER);
                                }
                                let text = if d == current {
                                    format!("{} (current)", label_of(d))
                                } else {
                                    label_of(d)
                                };
                                if ui
                                    .selectable_label(self.destination == Some(d), text)
                                    .clicked()
                                {
                                    self.destination = Some(d);
                                }
                            });
                        }
                    });
                form::server_error(ui, self.server_error.as_deref());
                let why = checked.clone().err().unwrap_or_default();
                match form::ok_cancel(ui, "Move", checked.is_ok(), &why, self.pending.is_some()) {
                    Buttons::Ok => {
                        if let Ok(p) = &checked {
                            action = Some(DialogAction::Submit {
                                action: Box::new(Action::MoveVm(p.clone())),
                                label: format!(
                                    "Move VM {name} to {}",
                                    match p.pool {
                                        Some(_) => format!("resource pool {}", label_of(p.pool)),
                                        None => root_name.clone(),
                                    }
                                ),
                                target: vm_ref(inv, self.vm),
                            });
                        }
                    }
                    Buttons::Cancel => action = Some(DialogAction::Cancel),
                    Buttons::None => {}
                }
            },
        );
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::{DatacenterInfo, HostInfo, Inventory, PoolInfo, VmInfo};

    fn inventory(power: &str) -> (InventoryModel, Uuid, Uuid) {
        let dc = Uuid::new_v4();
        let host = HostInfo {
            id: Uuid::new_v4(),
            name: "h1".into(),
            address: "h1:9443".into(),
            datacenter: dc,
            cluster: None,
            thumbprint: String::new(),
            connection_state: strata_shared::model::ConnectionState::Connected,
            state_reason: None,
            facts: None,
        };
        let vm = |name: &str| -> VmInfo {
            serde_json::from_value(serde_json::json!({
                "id": Uuid::new_v4(), "name": name, "host": host.id,
                "datastore": "datastore1", "powerState": power, "createdMs": 0,
                "spec": {"vcpus": 1, "memoryMib": 256, "boot": {"kernel": "/k"},
                         "allocation": {"memory": {"reservation": 128}}}
            }))
            .unwrap()
        };
        let (a, b) = (vm("web01"), vm("db01"));
        let pool = PoolInfo {
            id: Uuid::new_v4(),
            name: "Prod".into(),
            owner: host.id,
            parent: None,
            allocation: Default::default(),
        };
        let inv = InventoryModel::from_snapshot(Inventory {
            datacenters: vec![DatacenterInfo {
                id: dc,
                name: "DC".into(),
            }],
            hosts: vec![host],
            vms: vec![a.clone(), b],
            pools: vec![pool.clone()],
            ..Default::default()
        });
        (inv, a.id, pool.id)
    }

    #[test]
    fn renames_and_settings_are_checked_and_only_changes_are_sent() {
        let (inv, vm, _) = inventory("poweredOff");
        let mut d = VmSettingsDialog::open(vm, SettingsMode::Rename, &inv).unwrap();
        assert_eq!(
            d.check(&inv).unwrap_err().unchanged.as_deref(),
            Some("Nothing changed yet")
        );
        d.name = "db01".into();
        assert_eq!(
            d.check(&inv).unwrap_err().name.as_deref(),
            Some("A VM named db01 already exists")
        );
        d.name = "web02".into();
        assert_eq!(d.check(&inv).unwrap().name.as_deref(), Some("web02"));

        let mut d = VmSettingsDialog::open(vm, SettingsMode::Edit, &inv).unwrap();
        d.memory = "64".into();
        assert!(d
            .check(&inv)
            .unwrap_err()
            .memory
            .unwrap()
            .contains("reserves 128 MiB"));
        d.memory = "512".into();
        d.vcpus = "0".into();
        assert!(d.check(&inv).unwrap_err().vcpus.is_some());
        d.vcpus = "1".into();
        let p = d.check(&inv).unwrap();
        assert_eq!((p.vcpus, p.memory_mib, p.cmdline), (None, Some(512), None));
    }

    #[test]
    fn a_running_vm_keeps_its_vcpus_and_memory() {
        let (inv, vm, _) = inventory("poweredOn");
        let mut d = VmSettingsDialog::open(vm, SettingsMode::Edit, &inv).unwrap();
        d.vcpus = "4".into();
        assert_eq!(
            d.check(&inv).unwrap_err().unchanged.as_deref(),
            Some("Nothing changed yet"),
            "locked fields are not sent"
        );
        d.cmdline = "quiet".into();
        let p = d.check(&inv).unwrap();
        assert_eq!((p.vcpus, p.cmdline.as_deref()), (None, Some("quiet")));
    }

    #[test]
    fn a_vm_moves_to_another_place_of_its_own_tree() {
        let (inv, vm, pool) = inventory("poweredOff");
        let mut d = MoveVmDialog::open(vm);
        assert_eq!(d.destinations(&inv), vec![(None, 0), (Some(pool), 1)]);
        assert!(d.check(&inv).is_err());
        d.destination = Some(None);
        assert_eq!(d.check(&inv), Err("The VM is already there".into()));
        d.destination = Some(Some(pool));
        assert_eq!(d.check(&inv).unwrap().pool, Some(pool));
    }
}
