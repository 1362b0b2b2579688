//! What can be done to each kind of object, as menu items: the inventory views' context
//! menus and the Actions menu above the selected object both draw these, so the two always
//! offer the same things. Items only queue [`Command`]s.

use strata_shared::model::PowerState;

use super::dialogs::DialogRequest;
use super::model::{InventoryModel, Selection};
use super::net::Operation;
use super::panels::new_vm::NewVmPreset;
use super::panels::pool_editor::EditTarget;
use super::panels::tree::GroupKind;
use super::{Command, Tab, ViewCtx};

fn item(ui: &mut egui::Ui, cx: &mut ViewCtx<'_>, text: &str, commands: Vec<Command>) {
    if ui.button(text).clicked() {
        for c in commands {
            cx.commands.send(c);
        }
        ui.close();
    }
}

fn item_if(
    ui: &mut egui::Ui,
    cx: &mut ViewCtx<'_>,
    text: &str,
    enabled: bool,
    why_not: &str,
    commands: Vec<Command>,
) {
    let r = ui.add_enabled(enabled, egui::Button::new(text));
    if r.on_disabled_hover_text(why_not).clicked() {
        for c in commands {
            cx.commands.send(c);
        }
        ui.close();
    }
}

fn open(req: DialogRequest) -> Vec<Command> {
    vec![Command::OpenDialog(req)]
}

fn new_vm(preset: NewVmPreset) -> Vec<Command> {
    open(DialogRequest::NewVm(preset))
}

/// The menu of an inventory object.
pub fn object_menu(ui: &mut egui::Ui, sel: Selection, inv: &InventoryModel, cx: &mut ViewCtx<'_>) {
    let show_vms = vec![Command::Select(sel), Command::ShowTab(Tab::VirtualMachines)];
    // A new pool goes into the tree of the standalone host or cluster (a manager's).
    let new_pool = match sel {
        _ if inv.direct => None,
        Selection::Pool(p) => inv.pools.get(&p).map(|x| EditTarget::NewPool {
            owner: x.owner,
            parent: Some(p),
        }),
        Selection::Host(_) | Selection::Cluster(_) => {
            inv.pool_owner(sel).map(|owner| EditTarget::NewPool {
                owner,
                parent: None,
            })
        }
        _ => None,
    };
    let new_pool_item = |ui: &mut egui::Ui, cx: &mut ViewCtx<'_>| {
        if let Some(t) = new_pool {
            item(ui, cx, "New Resource Pool…", vec![Command::OpenEditor(t)]);
        }
    };
    match sel {
        Selection::Vm(id) => vm_menu(ui, id, inv, cx),
        Selection::Host(id) => {
            item(ui, cx, "Show virtual machines", show_vms);
            item(
                ui,
                cx,
                "New Virtual Machine…",
                new_vm(NewVmPreset {
                    host: Some(id),
                    ..Default::default()
                }),
            );
            new_pool_item(ui, cx);
            if inv.direct {
                return;
            }
            ui.separator();
            let empty = inv.vms_on_host(id).is_empty();
            item_if(
                ui,
                cx,
                "Remove Host…",
                empty,
                "Only a host without VMs can be removed",
                vec![Command::Run(Operation::RemoveHost, id)],
            );
        }
        Selection::Cluster(id) => {
            item(ui, cx, "Show virtual machines", show_vms);
            item(
                ui,
                cx,
                "New Virtual Machine…",
                new_vm(NewVmPreset {
                    cluster: Some(id),
                    ..Default::default()
                }),
            );
            item(
                ui,
                cx,
                "Add Host…",
                open(DialogRequest::AddHost {
                    datacenter: inv.clusters.get(&id).map(|c| c.datacenter),
                    cluster: Some(id),
                }),
            );
            new_pool_item(ui, cx);
        }
        Selection::Datacenter(id) => {
            item(ui, cx, "Show virtual machines", show_vms);
            item(
                ui,
                cx,
                "New Virtual Machine…",
                new_vm(NewVmPreset {
                    datacenter: Some(id),
                    ..Default::default()
                }),
            );
            if inv.direct {
                return;
            }
            item(
                ui,
                cx,
                "Add Host…",
                open(DialogRequest::AddHost {
                    datacenter: Some(id),
                    cluster: None,
                }),
            );
            item(
                ui,
                cx,
                "New Cluster…",
                open(DialogRequest::NewCluster { datacenter: id }),
            );
        }
        Selection::Pool(id) => {
            item(ui, cx, "Show virtual machines", show_vms);
            new_pool_item(ui, cx);
            item(
                ui,
                cx,
                "Edit Settings…",
                vec![
                    Command::Select(sel),
                    Command::OpenEditor(EditTarget::Pool(id)),
                ],
            );
            item(ui, cx, "Remove", vec![Command::RemovePool(id)]);
        }
        Selection::Datastore(id) => {
            item(ui, cx, "Show virtual machines", show_vms);
            let usable = inv
                .datastores
                .get(&id)
                .is_some_and(|d| d.inaccessible_on.len() < d.hosts.len());
            item_if(
                ui,
                cx,
                "New Virtual Machine…",
                usable,
                "No host can reach this datastore now",
                new_vm(NewVmPreset {
                    datastore: Some(id),
                    ..Default::default()
                }),
            );
        }
    }
}

fn vm_menu(ui: &mut egui::Ui, id: uuid::Uuid, inv: &InventoryModel, cx: &mut ViewCtx<'_>) {
    let sel = Selection::Vm(id);
    let vm = inv.vms.get(&id);
    let power = vm.map(|v| v.power_state);
    let template = vm.is_some_and(|v| v.spec.template);
    let on = power.is_some_and(PowerState::has_process);
    let off = power == Some(PowerState::PoweredOff);
    let resumable = (off || power == Some(PowerState::Suspended)) && !template;
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
    ];
    for (op, enabled) in items {
        let why = if template && op == Operation::PowerOn {
            "A template is never powered on: clone it"
        } else {
            "Not in this power state"
        };
        item_if(
            ui,
            cx,
            op.label(),
            enabled,
            why,
            vec![Command::Select(sel), Command::Run(op, id)],
        );
    }
    item_if(
        ui,
        cx,
        "Open Console",
        on,
        "The VM is not running",
        vec![Command::Select(sel), Command::ShowTab(Tab::Console)],
    );
    ui.separator();
    item(ui, cx, "Rename…", open(DialogRequest::RenameVm(id)));
    item(ui, cx, "Edit Settings…", open(DialogRequest::EditVm(id)));
    if !inv.direct {
        item(
            ui,
            cx,
            "Edit Resource Allocation…",
            vec![
                Command::Select(sel),
                Command::OpenEditor(EditTarget::Vm(id)),
            ],
        );
        item(
            ui,
            cx,
            "Move to Resource Pool…",
            open(DialogRequest::MoveVm(id)),
        );
    }
    ui.separator();
    item_if(
        ui,
        cx,
        "Remove VM…",
        off,
        "Power the VM off first",
        vec![Command::Run(Operation::Destroy, id)],
    );
}

/// The menu of a folder or network node.
pub fn group_menu(
    ui: &mut egui::Ui,
    kind: &GroupKind,
    _inv: &InventoryModel,
    cx: &mut ViewCtx<'_>,
) {
    match kind {
        GroupKind::Vms { datacenter }
        | GroupKind::Templates { datacenter }
        | GroupKind::NoNetwork { datacenter } => item(
            ui,
            cx,
            "New Virtual Machine…",
            new_vm(NewVmPreset {
                datacenter: Some(*datacenter),
                ..Default::default()
            }),
        ),
        GroupKind::Network { datacenter, tap } => item(
            ui,
            cx,
            "New Virtual Machine on this Network…",
            new_vm(NewVmPreset {
                datacenter: Some(*datacenter),
                tap: Some(tap.clone()),
                ..Default::default()
            }),
        ),
    }
}
