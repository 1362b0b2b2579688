//! A VM's virtual disks: list, create, grow, attach and remove, on powered-off VMs. Each
//! change writes the disk file first and the VM's configuration second, and undoes the file
//! step when the configuration cannot be written.

use strata_shared::api::agent::{
    DiskAttachParams, DiskCreateParams, DiskGrowParams, DiskMapDeviceParams, DiskRemoveParams,
};
use strata_shared::model::{DiskFormat, DiskInfo, DiskSpec, VmInfo, VmSpec};
use strata_shared::rpc::{ErrorCode, RpcError};
use tracing::info;
use uuid::Uuid;

use super::Agent;
use crate::datastore::disk::{self, DiskError};
use crate::engine::VmEngine;
use crate::registry::VmEntry;

/// A disk file error as the API reports it.
pub(super) fn disk_err(e: DiskError) -> RpcError {
    match e {
        DiskError::Invalid(m) => RpcError::invalid(m),
        DiskError::Exists(_) => RpcError::new(ErrorCode::Conflict, e.to_string()),
        DiskError::Missing(_) => RpcError::new(ErrorCode::NotFound, e.to_string()),
        DiskError::NoSpace { .. } => RpcError::new(ErrorCode::InsufficientResources, e.to_string()),
        other => RpcError::internal(other.to_string()),
    }
}

/// Refuses disk changes while the VM has snapshots (their files would no longer match).
fn refuse_with_snapshots(entry: &VmEntry, what: &str) -> Result<(), RpcError> {
    if entry.suspended() {
        return Err(RpcError::new(
            ErrorCode::InvalidState,
            format!(
                "VM {} is suspended: its saved state expects the disks it has; resume or power it off before you {what}",
                entry.display_name()
            ),
        ));
    }
    if !entry.snapshots().snapshots.is_empty() {
        return Err(RpcError::new(
            ErrorCode::InvalidState,
            format!(
                "VM {} has snapshots: delete them before you {what}",
                entry.display_name()
            ),
        ));
    }
    Ok(())
}

/// Refuses configuration changes that cannot be made while the VM runs.
fn require_powered_off(entry: &VmEntry, what: &str) -> Result<(), RpcError> {
    refuse_with_snapshots(entry, what)?;
    if entry.running().is_some() {
        return Err(RpcError::new(
            ErrorCode::InvalidState,
            format!(
                "VM {} is powered on: power it off to {what} (disks cannot be changed while it runs yet)",
                entry.display_name()
            ),
        ));
    }
    entry.require_powered_off(what)
}

fn find_disk<'a>(spec: &'a VmSpec, vm: &str, file: &str) -> Result<&'a DiskSpec, RpcError> {
    spec.disks
        .iter()
        .find(|d| d.file == file)
        .ok_or_else(|| RpcError::new(ErrorCode::NotFound, format!("VM {vm} has no disk {file:?}")))
}

impl Agent {
    /// When the VM runs, plugs the last disk of `spec` into it (hot-add); nothing otherwise.
    async fn plug_if_running(&self, entry: &VmEntry, spec: &VmSpec) -> Result<(), RpcError> {
        let Some(run) = entry.running() else {
            return Ok(());
        };
        let mut ctx = self.context(entry, false)?;
        ctx.spec = spec.clone();
        ctx.disk_paths = spec
            .disks
            .iter()
            .map(|d| disk::data_path(&entry.dir, d))
            .collect::<Result<_, _>>()
            .map_err(disk_err)?;
        let index = spec.disks.len().saturating_sub(1);
        self.engine(run.engine)?
            .hot_add_disk(&ctx, index)
            .await
            .map_err(super::engine_err)?;
        info!(vm = %entry.display_name(), index, "disk hot-added");
        Ok(())
    }

    /// A VM's disks with their current sizes; a missing file is an error naming it.
    pub fn disk_list(&self, id: Uuid) -> Result<Vec<DiskInfo>, RpcError> {
        let entry = self.entry(id)?;
        entry
            .spec()
            .disks
            .iter()
            .map(|d| disk::inspect(&entry.dir, d).map_err(disk_err))
            .collect()
    }

    /// Creates a new disk file and attaches it as the VM's last disk.
    pub async fn disk_create(&self, p: &DiskCreateParams) -> Result<VmInfo, RpcError> {
        let entry = self.entry(p.id)?;
        let _op = entry.op.lock().await;
        refuse_with_snapshots(&entry, "add a disk")?;
        let bytes = disk::size_bytes(p.size_mib).map_err(disk_err)?;
        let mut spec = entry.spec();
        let file = match &p.file {
            Some(f) => f.clone(),
            None => disk::next_file_name(&entry.dir, &entry.name, p.format, &spec.disks),
        };
        let new = DiskSpec {
            file,
            format: p.format,
            read_only: p.read_only,
        };
        spec.disks.push(new.clone());
        spec.validate().map_err(RpcError::invalid)?;
        let path = disk::path_in(&entry.dir, &new);
        // Thick disks take a while: keep the runtime's worker threads free meanwhile.
        let (fmt, prov) = (p.format, p.provisioning);
        let made = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || disk::create(&path, bytes, fmt, prov))
                .await
                .map_err(|e| RpcError::internal(format!("disk creation stopped: {e}")))?
        };
        made.map_err(disk_err)?;
        if let Err(e) = self.plug_if_running(&entry, &spec).await {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        if let Err(e) = entry.save_spec(spec) {
            let _ = std::fs::remove_file(&path);
            return Err(RpcError::internal(e));
        }
        info!(vm = %entry.display_name(), file = %new.file, mib = p.size_mib, format = %p.format, "disk created");
        Ok(entry.info())
    }

    /// Grows one of the VM's disks.
    pub async fn disk_grow(&self, p: &DiskGrowParams) -> Result<VmInfo, RpcError> {
        let entry = self.entry(p.id)?;
        let _op = entry.op.lock().await;
        require_powered_off(&entry, "grow a disk")?;
        let spec = entry.spec();
        let d = find_disk(&spec, &entry.display_name(), &p.file)?.clone();
        let bytes = disk::size_bytes(p.size_mib).map_err(disk_err)?;
        let path = disk::path_in(&entry.dir, &d);
        tokio::task::spawn_blocking(move || disk::grow(&path, d.format, bytes))
            .await
            .map_err(|e| RpcError::internal(format!("disk growth stopped: {e}")))?
            .map_err(disk_err)?;
        info!(vm = %entry.display_name(), file = %p.file, mib = p.size_mib, "disk grown");
        Ok(entry.info())
    }

    /// Attaches a disk file that is already in the VM's directory.
    pub async fn disk_attach(&self, p: &DiskAttachParams) -> Result<VmInfo, RpcError> {
        let entry = self.entry(p.id)?;
        let _op = entry.op.lock().await;
        refuse_with_snapshots(&entry, "attach a disk")?;
        p.disk.validate().map_err(RpcError::invalid)?;
        let mut spec = entry.spec();
        if spec.disks.iter().any(|d| d.file == p.disk.file) {
            return Err(RpcError::new(
                ErrorCode::Conflict,
                format!(
                    "disk {:?} is already attached to {}",
                    p.disk.file,
                    entry.display_name()
                ),
            ));
        }
        // The file must be there and readable in the stated format.
        disk::inspect(&entry.dir, &p.disk).map_err(disk_err)?;
        spec.disks.push(p.disk.clone());
        spec.validate().map_err(RpcError::invalid)?;
        self.plug_if_running(&entry, &spec).await?;
        entry.save_spec(spec).map_err(RpcError::internal)?;
        info!(vm = %entry.display_name(), file = %p.disk.file, "disk attached");
        Ok(entry.info())
    }

    /// Detaches a disk; with `delete_file` its file goes too.
    pub async fn disk_remove(&self, p: &DiskRemoveParams) -> Result<VmInfo, RpcError> {
        let entry = self.entry(p.id)?;
        let _op = entry.op.lock().await;
        require_powered_off(&entry, "remove a disk")?;
        let mut spec = entry.spec();
        let d = find_disk(&spec, &entry.display_name(), &p.file)?.clone();
        spec.disks.retain(|x| x.file != p.file);
        // Configuration first: a crash in between leaves an unattached file, never a VM that
        // names a deleted disk.
        entry.save_spec(spec).map_err(RpcError::internal)?;
        if p.delete_file {
            let path = disk::path_in(&entry.dir, &d);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(RpcError::internal(format!(
                        "disk detached, but {} could not be deleted: {e}",
                        path.display()
                    )));
                }
            }
        }
        info!(vm = %entry.display_name(), file = %p.file, deleted = p.delete_file, "disk removed");
        Ok(entry.info())
    }

    /// Maps a host block device into the VM: a mapping file `NAME.rdm` (or `NAME_N.rdm`) in
    /// its directory names the device, and the guest sees the device as its last disk.
    pub async fn disk_map_device(&self, p: &DiskMapDeviceParams) -> Result<VmInfo, RpcError> {
        let entry = self.entry(p.id)?;
        let _op = entry.op.lock().await;
        require_powered_off(&entry, "map a device")?;
        let device = std::path::PathBuf::from(&p.device);
        let mut spec = entry.spec();
        let already = spec.disks.iter().find(|d| {
            d.format == DiskFormat::Rdm
                && disk::data_path(&entry.dir, d)
                    .map(|x| x == device)
                    .unwrap_or(false)
        });
        if let Some(d) = already {
            return Err(RpcError::new(
                ErrorCode::Conflict,
                format!("{} is already mapped as {}", p.device, d.file),
            ));
        }
        let new = DiskSpec {
            file: disk::next_file_name(&entry.dir, &entry.name, DiskFormat::Rdm, &spec.disks),
            format: DiskFormat::Rdm,
            read_only: p.read_only,
        };
        spec.disks.push(new.clone());
        spec.validate().map_err(RpcError::invalid)?;
        let path = disk::path_in(&entry.dir, &new);
        disk::map_device(&path, &device).map_err(disk_err)?;
        if let Err(e) = entry.save_spec(spec) {
            let _ = std::fs::remove_file(&path);
            return Err(RpcError::internal(e));
        }
        info!(vm = %entry.display_name(), file = %new.file, device = %p.device, "device mapped");
        Ok(entry.info())
    }
}
