//! The management dialogs as one open-at-a-time window: which one to open
//! ([`DialogRequest`], queued by menus), what it answers after a frame ([`DialogAction`]),
//! and the server's answer coming back ([`Dialog::finished`]): accepted closes the dialog,
//! refused keeps it open with the reason.

use uuid::Uuid;

use super::model::InventoryModel;
use super::net::Action;
use super::panels::add_host::AddHostDialog;
use super::panels::new_vm::{NewVmDialog, NewVmPreset};
use super::panels::vm_dialogs::{MoveVmDialog, NewClusterDialog, SettingsMode, VmSettingsDialog};
use strata_shared::model::ObjectRef;

/// A dialog to open.
#[derive(Debug, Clone, PartialEq)]
pub enum DialogRequest {
    /// The New Virtual Machine wizard, placed from where it was opened.
    NewVm(NewVmPreset),
    /// Add a host to a datacenter (and a cluster).
    AddHost {
        /// The datacenter.
        datacenter: Option<Uuid>,
        /// The cluster to join.
        cluster: Option<Uuid>,
    },
    /// A new cluster in a datacenter.
    NewCluster {
        /// The datacenter.
        datacenter: Uuid,
    },
    /// Rename a VM.
    RenameVm(Uuid),
    /// Change a VM's vCPUs, memory and command line.
    EditVm(Uuid),
    /// Move a VM to a resource pool.
    MoveVm(Uuid),
}

/// What a dialog asks for after a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum DialogAction {
    /// Close without doing anything.
    Cancel,
    /// Send this.
    Submit {
        /// What to do.
        action: Box<Action>,
        /// In words, for Recent Tasks and messages.
        label: String,
        /// The object it is about.
        target: Option<ObjectRef>,
    },
    /// Fetch the certificate thumbprint of a host agent at `HOST:PORT`.
    FetchThumbprint(String),
}

/// The open dialog.
#[derive(Debug, Clone)]
pub enum Dialog {
    /// New VM.
    NewVm(Box<NewVmDialog>),
    /// Add host.
    AddHost(Box<AddHostDialog>),
    /// New cluster.
    NewCluster(NewClusterDialog),
    /// Rename or edit settings.
    VmSettings(VmSettingsDialog),
    /// Move to a pool.
    MoveVm(MoveVmDialog),
}

impl Dialog {
    /// Opens a dialog; `None` when its object is gone.
    pub fn open(req: DialogRequest, inv: &InventoryModel) -> Option<Dialog> {
        Some(match req {
            DialogRequest::NewVm(p) => Dialog::NewVm(Box::new(NewVmDialog::open(p, inv)?)),
            DialogRequest::AddHost {
                datacenter,
                cluster,
            } => {
                let datacenter = datacenter.or_else(|| {
                    cluster
                        .and_then(|c| inv.clusters.get(&c))
                        .map(|c| c.datacenter)
                });
                Dialog::AddHost(Box::new(AddHostDialog::open(datacenter, cluster)))
            }
            DialogRequest::NewCluster { datacenter } => {
                Dialog::NewCluster(NewClusterDialog::open(datacenter))
            }
            DialogRequest::RenameVm(vm) => {
                Dialog::VmSettings(VmSettingsDialog::open(vm, SettingsMode::Rename, inv)?)
            }
            DialogRequest::EditVm(vm) => {
                Dialog::VmSettings(VmSettingsDialog::open(vm, SettingsMode::Edit, inv)?)
            }
            DialogRequest::MoveVm(vm) => {
                inv.vms.get(&vm)?;
                Dialog::MoveVm(MoveVmDialog::open(vm))
            }
        })
    }

    /// Draws it; returns what the user decided this frame.
    pub fn show(&mut self, ctx: &egui::Context, inv: &InventoryModel) -> Option<DialogAction> {
        match self {
            Dialog::NewVm(d) => d.show(ctx, inv),
            Dialog::AddHost(d) => d.show(ctx, inv),
            Dialog::NewCluster(d) => d.show(ctx, inv),
            Dialog::VmSettings(d) => d.show(ctx, inv),
            Dialog::MoveVm(d) => d.show(ctx, inv),
        }
    }

    fn slots(&mut self) -> (&mut Option<u64>, &mut Option<String>) {
        match self {
            Dialog::NewVm(d) => (&mut d.pending, &mut d.server_error),
            Dialog::AddHost(d) => (&mut d.pending, &mut d.server_error),
            Dialog::NewCluster(d) => (&mut d.pending, &mut d.server_error),
            Dialog::VmSettings(d) => (&mut d.pending, &mut d.server_error),
            Dialog::MoveVm(d) => (&mut d.pending, &mut d.server_error),
        }
    }

    /// Notes that the request with `token` was sent.
    pub fn sent(&mut self, token: u64) {
        let (pending, error) = self.slots();
        *pending = Some(token);
        *error = None;
    }

    /// Whether the request with `token` is this dialog's.
    pub fn owns(&mut self, token: u64) -> bool {
        *self.slots().0 == Some(token)
    }

    /// The server answered the request `token`: `true` when the dialog should close.
    pub fn finished(&mut self, token: u64, result: &Result<(), String>) -> bool {
        let (pending, error) = self.slots();
        if *pending != Some(token) {
            return false;
        }
        *pending = None;
        match result {
            Ok(()) => true,
            Err(e) => {
                *error = Some(e.clone());
                false
            }
        }
    }
}
