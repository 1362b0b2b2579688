//! `vm.reconfigure`: a VM's name, vCPUs, memory and kernel command line. The name shown
//! changes in `NAME.toml` only (the directory and the files in it keep their names); vCPUs
//! and memory change only while the VM has no process and no saved state.

use strata_shared::api::agent::VmReconfigureParams;
use strata_shared::model::VmInfo;
use strata_shared::rpc::{ErrorCode, RpcError};
use tracing::info;

use super::Agent;
use crate::registry::VmEntry;

/// Refuses a vCPU or memory change while the VM has a process or a saved state.
fn require_no_process(entry: &VmEntry) -> Result<(), RpcError> {
    let why = if entry.running().is_some() {
        if entry.paused() {
            "is paused (its process holds the vCPUs and memory it started with)"
        } else {
            "is powered on"
        }
    } else if entry.suspended() {
        "is suspended (its saved state expects the vCPUs and memory it had)"
    } else {
        return Ok(());
    };
    Err(RpcError::new(
        ErrorCode::InvalidState,
        format!(
            "VM {} {why}: power it off to change its vCPUs or memory",
            entry.display_name()
        ),
    ))
}

impl Agent {
    /// Renames a VM and/or changes its vCPUs, memory and kernel command line; nothing changes
    /// when any part is refused.
    pub async fn reconfigure(&self, p: &VmReconfigureParams) -> Result<VmInfo, RpcError> {
        let entry = self.entry(p.id)?;
        let _op = entry.op.lock().await;
        let mut spec = entry.spec();
        if p.changes_hardware(&spec) {
            require_no_process(&entry)?;
        }
        p.apply(&mut spec).map_err(RpcError::invalid)?;
        self.check_capacity(&spec)?;
        let old_name = entry.display_name();
        let name = p.name.clone().unwrap_or_else(|| old_name.clone());
        if name != old_name {
            let taken = self.lock_vms().values().any(|e| {
                e.id != entry.id && e.datastore == entry.datastore && e.display_name() == name
            });
            if taken {
                return Err(RpcError::new(
                    ErrorCode::Conflict,
                    format!("a VM named {name:?} already exists on {}", entry.datastore),
                ));
            }
        }
        entry
            .save_renamed(spec, &name)
            .map_err(RpcError::internal)?;
        info!(vm = %name, was = %old_name, id = %entry.id, vcpus = ?p.vcpus, memory_mib = ?p.memory_mib, "VM reconfigured");
        Ok(entry.info())
    }
}
