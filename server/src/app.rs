//! The manager's shared state and the few things every part does: record events, publish
//! inventory changes and track VM power states.

use std::sync::Arc;

use strata_shared::api::notifications;
use strata_shared::model::{
    EventInfo, InventoryChange, InventoryObject, ObjectKind, ObjectRef, PowerState, Severity,
    VmInfo,
};
use strata_shared::rpc::{Notification, RpcError};
use tokio::sync::broadcast;
use tracing::warn;
use uuid::Uuid;

use crate::config::ServerConfig;
use crate::db::Db;
use crate::hosts::HostLinks;
use crate::tasks::Tasks;

/// The manager.
pub struct App {
    /// This manager's id.
    pub id: Uuid,
    /// Settings.
    pub config: ServerConfig,
    /// Database.
    pub db: Db,
    /// Notifications for subscribed sessions.
    pub notes: broadcast::Sender<Notification>,
    /// Host agent connections.
    pub hosts: HostLinks,
    /// Running tasks.
    pub tasks: Tasks,
    /// Resource-pool admission control.
    pub admission: crate::pools::Admission,
    /// VMs with a power operation of the manager under way.
    pub vm_ops: VmOps,
    /// Performance sampling.
    pub stats: crate::stats::Sampler,
    /// Alarm state (usage levels; active alarms live in the database).
    pub alarms: crate::alarms::Alarms,
}

/// The set of VMs with a manager-driven power operation under way.
#[derive(Default)]
pub struct VmOps(std::sync::Mutex<std::collections::HashSet<Uuid>>);

impl VmOps {
    /// Marks `vm` busy.
    pub fn begin(&self, vm: Uuid) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(vm);
        }
    }
    /// Marks `vm` no longer busy.
    pub fn end(&self, vm: Uuid) {
        if let Ok(mut s) = self.0.lock() {
            s.remove(&vm);
        }
    }
    /// True while an operation on `vm` runs.
    pub fn contains(&self, vm: Uuid) -> bool {
        self.0.lock().map(|s| s.contains(&vm)).unwrap_or(false)
    }
}

impl App {
    /// Records an event and pushes it to subscribers; failures are logged, never fatal.
    pub async fn event(
        &self,
        kind: &str,
        severity: Severity,
        object: Option<&ObjectRef>,
        user: Option<&str>,
        message: &str,
    ) {
        match self
            .db
            .insert_event(kind, severity, object, user, message)
            .await
        {
            Ok(e) => self.publish(notifications::EVENT_NEW, &e),
            Err(e) => warn!(error = %e, kind, "cannot record an event"),
        }
    }

    /// Pushes a notification to subscribed sessions.
    pub fn publish<T: serde::Serialize>(&self, method: &str, payload: &T) {
        let _ = self.notes.send(Notification::new(method, payload));
    }

    /// Pushes an inventory upsert.
    pub fn changed(&self, object: InventoryObject) {
        self.publish(
            notifications::INVENTORY_CHANGED,
            &InventoryChange::Upsert {
                object: Box::new(object),
            },
        );
    }

    /// Pushes an inventory removal.
    pub fn removed(&self, kind: ObjectKind, id: Uuid) {
        self.publish(
            notifications::INVENTORY_CHANGED,
            &InventoryChange::Remove { kind, id },
        );
    }

    /// Records a VM's power state; when it changed, writes the event and pushes the delta.
    pub async fn apply_power_state(
        &self,
        vm: Uuid,
        state: PowerState,
        reason: &str,
        user: Option<&str>,
    ) -> Result<(), RpcError> {
        let before = self.db.vm(vm).await.map(|v| v.power_state).ok();
        if !self.db.set_vm_power(vm, state).await? {
            return Ok(());
        }
        let info = self.db.vm(vm).await?;
        let (kind, sev, what) = match (before, state) {
            (Some(PowerState::Paused), PowerState::PoweredOn) => {
                ("vm.unpaused", Severity::Info, "unpaused")
            }
            (Some(PowerState::Suspended), PowerState::PoweredOn) => {
                ("vm.resumed", Severity::Info, "resumed")
            }
            (_, PowerState::PoweredOn) => ("vm.poweredOn", Severity::Info, "powered on"),
            (_, PowerState::PoweredOff) => ("vm.poweredOff", Severity::Info, "powered off"),
            (_, PowerState::Paused) => ("vm.paused", Severity::Info, "paused"),
            (_, PowerState::Suspended) => ("vm.suspended", Severity::Info, "suspended"),
            (_, PowerState::Unknown) => {
                ("vm.stateUnknown", Severity::Warning, "in an unknown state")
            }
        };
        let msg = if reason.is_empty() {
            format!("{} {what}", info.name)
        } else {
            format!("{} {what}: {reason}", info.name)
        };
        self.event(kind, sev, Some(&vm_ref(&info)), user, &msg)
            .await;
        if !state.has_process() {
            crate::alarms::vm_stopped(self, &info).await;
        }
        // Where VMs run decides how pools divide among hosts, and what expandable pools reserve.
        if let Some(host) = info.host {
            if let Ok(owner) = crate::pools::owner_of_host(self, host).await {
                crate::pools::enforce::push_owner(self, owner).await;
            }
        }
        self.changed(InventoryObject::Vm(info));
        Ok(())
    }

    /// Recent events (for tests and the API).
    pub async fn recent_events(&self, limit: u32) -> Vec<EventInfo> {
        self.db.events(None, None, limit).await.unwrap_or_default()
    }
}

/// An object reference to a VM.
pub fn vm_ref(vm: &VmInfo) -> ObjectRef {
    ObjectRef {
        kind: ObjectKind::Vm,
        id: vm.id,
        name: vm.name.clone(),
    }
}

/// Shared handle.
pub type AppRef = Arc<App>;
