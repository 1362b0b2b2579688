//! Snapshots, clones and templates of powered-off VMs, built from qcow2 overlays.
//!
//! Taking a snapshot freezes the VM's disk files and gives the VM a new overlay per disk
//! that reads through them; reverting throws the overlays away and starts new ones on the
//! snapshot's files; deleting a snapshot merges its files into what depends on them. A linked
//! clone's disks are overlays in its own directory reading through a snapshot of its source.
//! Every step changes files first and `NAME.toml` second, and old files go only after the
//! new configuration is written, so a crash never leaves a VM naming a missing file.

use std::sync::Arc;

use strata_shared::api::agent::{
    AgentVmCloneParams, SetTemplateParams, SnapshotCreateParams, SnapshotParams,
};
use strata_shared::model::{
    DiskSpec, Engine, LinkedBase, SnapshotInfo, SnapshotTree, VmInfo, VmSpec,
};
use strata_shared::rpc::{ErrorCode, RpcError};
use tracing::{info, warn};
use uuid::Uuid;

use super::disks::disk_err;
use super::Agent;
use crate::datastore::overlay;
use crate::registry::{VmConfigFile, VmEntry};

fn require_off(entry: &VmEntry, what: &str) -> Result<(), RpcError> {
    if entry.suspended() {
        return Err(RpcError::new(
            ErrorCode::InvalidState,
            format!(
                "VM {} is suspended: power it on and off (or off hard) to {what}",
                entry.display_name()
            ),
        ));
    }
    if entry.running().is_some() {
        return Err(RpcError::new(
            ErrorCode::InvalidState,
            format!(
                "VM {} is powered on: power it off to {what}",
                entry.display_name()
            ),
        ));
    }
    entry.require_powered_off(what)
}

fn snapshot_of<'a>(
    tree: &'a SnapshotTree,
    vm: &str,
    id: Uuid,
) -> Result<&'a SnapshotInfo, RpcError> {
    tree.get(id)
        .ok_or_else(|| RpcError::new(ErrorCode::NotFound, format!("VM {vm} has no snapshot {id}")))
}

/// The stem a disk's overlays are named after: `web01` for `web01.raw` and
/// `web01-000002.qcow2` alike.
fn disk_stem(file: &str) -> &str {
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    match stem.rsplit_once('-') {
        Some((base, n)) if n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => stem,
    }
}

/// A new overlay file name for disk `file` in `dir`: `STEM-000001.qcow2`, … (first free).
fn overlay_name(dir: &std::path::Path, file: &str, tree: &SnapshotTree) -> String {
    numbered_name(dir, file, tree, "qcow2")
}

/// A new file name `STEM-NNNNNN.EXT` for disk `file` in `dir` (first free).
fn numbered_name(dir: &std::path::Path, file: &str, tree: &SnapshotTree, ext: &str) -> String {
    let stem = disk_stem(file);
    (1..)
        .map(|n| format!("{stem}-{n:06}.{ext}"))
        .find(|f| {
            !dir.join(f).exists()
                && !tree
                    .snapshots
                    .iter()
                    .any(|s| s.disks.iter().any(|d| &d.file == f))
        })
        .unwrap_or_else(|| format!("{stem}-overlay.{ext}"))
}

/// Creates one overlay per disk in `dir` on top of `bases` (paths relative to `dir`);
/// removes what it made when one fails.
fn make_overlays(
    dir: &std::path::Path,
    bases: &[(String, DiskSpec)],
    names: &[String],
) -> Result<Vec<DiskSpec>, RpcError> {
    let mut made: Vec<DiskSpec> = Vec::new();
    for ((rel, base), name) in bases.iter().zip(names) {
        if let Err(e) = overlay::create(dir, name, rel, base.format) {
            for m in &made {
                let _ = std::fs::remove_file(dir.join(&m.file));
            }
            return Err(disk_err(e));
        }
        made.push(DiskSpec {
            file: name.clone(),
            format: strata_shared::model::DiskFormat::Qcow2,
            read_only: base.read_only,
        });
    }
    Ok(made)
}

/// Copies each disk of `from` to the matching name in `to` (reflink or sparse copy) on a
/// blocking thread; removes what it made when one fails.
async fn copy_disks(
    dir: &std::path::Path,
    from: &[DiskSpec],
    to: &[String],
) -> Result<Vec<DiskSpec>, RpcError> {
    let dir = dir.to_path_buf();
    let from = from.to_vec();
    let to = to.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut made = Vec::new();
        for (d, name) in from.iter().zip(&to) {
            if let Err(e) = overlay::clone_raw(&dir.join(&d.file), &dir.join(name)) {
                remove_files(&dir, &made);
                return Err(disk_err(e));
            }
            made.push(name.clone());
        }
        Ok(from
            .iter()
            .zip(&to)
            .map(|(d, name)| DiskSpec {
                file: name.clone(),
                format: strata_shared::model::DiskFormat::Raw,
                read_only: d.read_only,
            })
            .collect())
    })
    .await
    .map_err(|e| RpcError::internal(format!("disk copy stopped: {e}")))?
}

fn remove_files(dir: &std::path::Path, files: &[String]) {
    for f in files {
        if let Err(e) = std::fs::remove_file(dir.join(f)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(file = %f, error = %e, "cannot delete a disk file no longer used");
            }
        }
    }
}

/// Mapped host devices can be neither snapshotted nor cloned (their data is not ours).
fn refuse_mapped(spec: &VmSpec, vm: &str, what: &str) -> Result<(), RpcError> {
    match spec
        .disks
        .iter()
        .find(|d| d.format == strata_shared::model::DiskFormat::Rdm)
    {
        Some(d) => Err(RpcError::invalid(format!(
            "cannot {what} {vm}: disk {} maps a host device; detach it first",
            d.file
        ))),
        None => Ok(()),
    }
}

/// A guest host name: letters, digits and '-', 1..=63, not starting or ending with '-'.
fn validate_hostname(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && h.len() <= 63
        && !h.starts_with('-')
        && !h.ends_with('-')
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "host name {h:?} must be 1 to 63 letters, digits or '-', not starting or ending with '-'"
        ))
    }
}

impl Agent {
    /// VMs on this host that are linked clones reading through `vm`'s snapshots.
    pub(super) fn linked_clones_of(&self, vm: Uuid) -> Vec<(String, Uuid)> {
        self.lock_vms()
            .values()
            .filter_map(|e| {
                e.linked_base
                    .filter(|b| b.vm == vm)
                    .map(|b| (e.display_name(), b.snapshot))
            })
            .collect()
    }

    /// A VM's snapshot tree.
    pub fn snapshot_list(&self, id: Uuid) -> Result<SnapshotTree, RpcError> {
        Ok(self.entry(id)?.snapshots())
    }

    /// Takes a snapshot of a powered-off VM's disks.
    pub async fn snapshot_create(
        &self,
        p: &SnapshotCreateParams,
    ) -> Result<SnapshotTree, RpcError> {
        let entry = self.entry(p.id)?;
        let _op = entry.op.lock().await;
        require_off(
            &entry,
            "take a snapshot (memory snapshots are not supported yet)",
        )?;
        strata_shared::model::validate_name("snapshot", &p.name).map_err(RpcError::invalid)?;
        let (mut spec, mut tree) = (entry.spec(), entry.snapshots());
        if tree.snapshots.iter().any(|s| s.name == p.name) {
            return Err(RpcError::new(
                ErrorCode::Conflict,
                format!(
                    "VM {} already has a snapshot named {:?}",
                    entry.display_name(),
                    p.name
                ),
            ));
        }
        if spec.disks.is_empty() {
            return Err(RpcError::invalid(format!(
                "VM {} has no disks to snapshot",
                entry.display_name()
            )));
        }
        refuse_mapped(&spec, &entry.display_name(), "snapshot")?;
        for d in &spec.disks {
            crate::datastore::disk::inspect(&entry.dir, d).map_err(disk_err)?;
        }
        let copies = self.resolve_engine(spec.engine)? == Engine::Native;
        if tree.snapshots.iter().any(|s| s.copies != copies) {
            return Err(RpcError::new(
                ErrorCode::InvalidState,
                format!(
                    "VM {}'s snapshots were taken for the other engine: delete them first",
                    entry.display_name()
                ),
            ));
        }
        let (names, frozen) = if copies {
            // The native engine reads raw files only: the snapshot keeps whole copies
            // (reflinks where the file system can) and the VM writes on in its own files.
            let names: Vec<String> = spec
                .disks
                .iter()
                .map(|d| numbered_name(&entry.dir, &d.file, &tree, "raw"))
                .collect();
            let frozen = copy_disks(&entry.dir, &spec.disks, &names).await?;
            (names, frozen)
        } else {
            let bases: Vec<(String, DiskSpec)> = spec
                .disks
                .iter()
                .map(|d| (d.file.clone(), d.clone()))
                .collect();
            let names: Vec<String> = spec
                .disks
                .iter()
                .map(|d| overlay_name(&entry.dir, &d.file, &tree))
                .collect();
            let overlays = make_overlays(&entry.dir, &bases, &names)?;
            (names, std::mem::replace(&mut spec.disks, overlays))
        };
        let snap = SnapshotInfo {
            id: Uuid::new_v4(),
            name: p.name.clone(),
            description: p.description.clone(),
            created_ms: strata_shared::now_ms(),
            parent: tree.current,
            disks: frozen,
            copies,
        };
        tree.current = Some(snap.id);
        tree.snapshots.push(snap);
        if let Err(e) = entry.save(spec, tree.clone()) {
            remove_files(&entry.dir, &names);
            return Err(RpcError::internal(e));
        }
        info!(vm = %entry.display_name(), snapshot = %p.name, "snapshot taken");
        Ok(tree)
    }

    /// Returns a powered-off VM's disks to a snapshot; what was written since is discarded.
    pub async fn snapshot_revert(&self, p: &SnapshotParams) -> Result<VmInfo, RpcError> {
        let entry = self.entry(p.id)?;
        let _op = entry.op.lock().await;
        require_off(&entry, "revert to a snapshot")?;
        let (mut spec, mut tree) = (entry.spec(), entry.snapshots());
        let snap = snapshot_of(&tree, &entry.display_name(), p.snapshot)?.clone();
        if snap.copies {
            // Copy the frozen files next to the live ones, then swap them in.
            let temps: Vec<String> = spec
                .disks
                .iter()
                .map(|d| format!(".{}.revert", d.file))
                .collect();
            copy_disks(&entry.dir, &snap.disks, &temps).await?;
            for (t, d) in temps.iter().zip(&spec.disks) {
                std::fs::rename(entry.dir.join(t), entry.dir.join(&d.file)).map_err(|e| {
                    remove_files(&entry.dir, &temps);
                    RpcError::internal(format!("cannot put {} back: {e}", d.file))
                })?;
            }
            tree.current = Some(snap.id);
            entry.save(spec, tree).map_err(RpcError::internal)?;
            info!(vm = %entry.display_name(), snapshot = %snap.name, "reverted to snapshot (copies)");
            return Ok(entry.info());
        }
        let bases: Vec<(String, DiskSpec)> = snap
            .disks
            .iter()
            .map(|d| (d.file.clone(), d.clone()))
            .collect();
        let names: Vec<String> = snap
            .disks
            .iter()
            .map(|d| overlay_name(&entry.dir, &d.file, &tree))
            .collect();
        let overlays = make_overlays(&entry.dir, &bases, &names)?;
        // The old overlays go, unless a snapshot froze them (they never are, but be sure).
        let old: Vec<String> = spec
            .disks
            .iter()
            .map(|d| d.file.clone())
            .filter(|f| {
                !tree
                    .snapshots
                    .iter()
                    .any(|s| s.disks.iter().any(|d| &d.file == f))
            })
            .collect();
        spec.disks = overlays;
        tree.current = Some(snap.id);
        if let Err(e) = entry.save(spec, tree) {
            remove_files(&entry.dir, &names);
            return Err(RpcError::internal(e));
        }
        remove_files(&entry.dir, &old);
        info!(vm = %entry.display_name(), snapshot = %snap.name, "reverted to snapshot");
        Ok(entry.info())
    }

    /// Deletes a snapshot: the data it froze is merged into the files that read through it.
    pub async fn snapshot_delete(&self, p: &SnapshotParams) -> Result<SnapshotTree, RpcError> {
        let entry = self.entry(p.id)?;
        let _op = entry.op.lock().await;
        require_off(&entry, "delete a snapshot")?;
        let (mut spec, mut tree) = (entry.spec(), entry.snapshots());
        let snap = snapshot_of(&tree, &entry.display_name(), p.snapshot)?.clone();
        if let Some((clone, _)) = self
            .linked_clones_of(entry.id)
            .into_iter()
            .find(|(_, s)| *s == snap.id)
        {
            return Err(RpcError::new(
                ErrorCode::Conflict,
                format!(
                    "snapshot {} is the base of linked clone {clone}: delete the clone first",
                    snap.name
                ),
            ));
        }
        let children: Vec<Uuid> = tree.children(snap.id).map(|c| c.id).collect();
        let live = tree.current == Some(snap.id);
        let dir = entry.dir.clone();
        let mut gone: Vec<String> = Vec::new();
        if snap.copies {
            // Whole copies depend on nothing: the files go, the tree closes up.
            gone.extend(snap.disks.iter().map(|d| d.file.clone()));
            for s in tree.snapshots.iter_mut() {
                if s.parent == Some(snap.id) {
                    s.parent = snap.parent;
                }
            }
            if live {
                tree.current = snap.parent;
            }
            tree.snapshots.retain(|s| s.id != snap.id);
            entry.save(spec, tree.clone()).map_err(RpcError::internal)?;
            remove_files(&dir, &gone);
            info!(vm = %entry.display_name(), snapshot = %snap.name, "snapshot deleted");
            return Ok(tree);
        }
        match snap.parent {
            Some(parent_id) => {
                // Everything that read through this snapshot reads through its parent now,
                // with the differences copied in.
                let parent = snapshot_of(&tree, &entry.display_name(), parent_id)?.clone();
                for (i, frozen) in snap.disks.iter().enumerate() {
                    let Some(pd) = parent.disks.get(i) else {
                        return Err(RpcError::internal("snapshot disk lists differ"));
                    };
                    let mut dependents: Vec<String> = children
                        .iter()
                        .filter_map(|c| tree.get(*c).and_then(|c| c.disks.get(i)))
                        .map(|d| d.file.clone())
                        .collect();
                    if live {
                        dependents.extend(spec.disks.get(i).map(|d| d.file.clone()));
                    }
                    for d in &dependents {
                        overlay::rebase(&dir, d, &pd.file, pd.format).map_err(disk_err)?;
                    }
                    gone.push(frozen.file.clone());
                }
                for s in tree.snapshots.iter_mut() {
                    if s.parent == Some(snap.id) {
                        s.parent = Some(parent_id);
                    }
                }
                if live {
                    tree.current = Some(parent_id);
                }
            }
            None => {
                // The first snapshot froze the original disks: its one dependent is written
                // down into them and replaced by them.
                let count = children.len() + usize::from(live);
                if count != 1 {
                    return Err(RpcError::new(
                        ErrorCode::InvalidState,
                        format!(
                            "snapshot {} has {count} snapshots or states built on it: delete those first",
                            snap.name
                        ),
                    ));
                }
                for (i, base) in snap.disks.iter().enumerate() {
                    let upper = if live {
                        spec.disks.get(i).cloned()
                    } else {
                        children
                            .first()
                            .and_then(|c| tree.get(*c))
                            .and_then(|c| c.disks.get(i).cloned())
                    };
                    let Some(upper) = upper else {
                        return Err(RpcError::internal("snapshot disk lists differ"));
                    };
                    overlay::commit(&dir, &upper.file).map_err(disk_err)?;
                    if !live {
                        // Files that read through the child's frozen file now read the base,
                        // which holds the same data after the commit.
                        let child = children[0];
                        let mut readers: Vec<String> = tree
                            .children(child)
                            .filter_map(|g| g.disks.get(i))
                            .map(|d| d.file.clone())
                            .collect();
                        if tree.current == Some(child) {
                            readers.extend(spec.disks.get(i).map(|d| d.file.clone()));
                        }
                        for r in &readers {
                            overlay::relink(&dir, r, &base.file, base.format).map_err(disk_err)?;
                        }
                    }
                    gone.push(upper.file.clone());
                }
                if live {
                    spec.disks = snap
                        .disks
                        .iter()
                        .zip(spec.disks.iter())
                        .map(|(b, l)| DiskSpec {
                            read_only: l.read_only,
                            ..b.clone()
                        })
                        .collect();
                    tree.current = None;
                } else if let Some(c) = tree.snapshots.iter_mut().find(|s| s.id == children[0]) {
                    c.disks = snap.disks.clone();
                    c.parent = None;
                }
            }
        }
        tree.snapshots.retain(|s| s.id != snap.id);
        entry.save(spec, tree.clone()).map_err(RpcError::internal)?;
        remove_files(&dir, &gone);
        info!(vm = %entry.display_name(), snapshot = %snap.name, "snapshot deleted");
        Ok(tree)
    }

    /// Marks a powered-off VM as a template or back.
    pub async fn set_template(&self, p: &SetTemplateParams) -> Result<VmInfo, RpcError> {
        let entry = self.entry(p.id)?;
        let _op = entry.op.lock().await;
        require_off(&entry, "change whether it is a template")?;
        let mut spec = entry.spec();
        spec.template = p.template;
        entry.save_spec(spec).map_err(RpcError::internal)?;
        Ok(entry.info())
    }

    /// Clones a powered-off VM into a new directory on the same datastore.
    pub async fn clone_vm(&self, p: &AgentVmCloneParams) -> Result<VmInfo, RpcError> {
        let c = &p.clone;
        let source = self.entry(c.id)?;
        let _op = source.op.lock().await;
        require_off(&source, "clone it")?;
        strata_shared::model::validate_name("VM", &c.name).map_err(RpcError::invalid)?;
        if let Some(h) = &c.hostname {
            validate_hostname(h).map_err(RpcError::invalid)?;
        }
        let ds = self.datastore(Some(&source.datastore))?.clone();
        let id = p.new_id.unwrap_or_else(Uuid::new_v4);
        if self
            .lock_vms()
            .values()
            .any(|e| e.display_name() == c.name && e.datastore == ds.name)
        {
            return Err(RpcError::new(
                ErrorCode::Conflict,
                format!("a VM named {:?} already exists on {}", c.name, ds.name),
            ));
        }
        let (spec, tree) = (source.spec(), source.snapshots());
        refuse_mapped(&spec, &source.display_name(), "clone")?;
        let snapshot = match c.snapshot {
            Some(s) => Some(snapshot_of(&tree, &source.display_name(), s)?.clone()),
            None if c.linked => match tree.current {
                Some(s) => Some(snapshot_of(&tree, &source.display_name(), s)?.clone()),
                None => {
                    return Err(RpcError::invalid(format!(
                        "a linked clone reads through a snapshot: take a snapshot of {} first",
                        source.display_name()
                    )))
                }
            },
            None => None,
        };
        if c.linked && snapshot.as_ref().is_some_and(|s| s.copies) {
            return Err(RpcError::invalid(format!(
                "{}'s snapshots are whole copies for the native engine: a linked clone needs \
                 qcow2 overlays (qemu engine); make a full clone",
                source.display_name()
            )));
        }
        let (dir, dir_name) = super::create_vm_dir(&ds, &c.name)?;
        let made = self
            .fill_clone(&source, &spec, snapshot.as_ref(), p, id, (&dir, &dir_name))
            .await;
        let config = match made {
            Ok(config) => config,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let entry = Arc::new(VmEntry::new(config, &ds.name, dir));
        let info = entry.info();
        self.lock_vms().insert(id, entry);
        info!(vm = %c.name, source = %source.display_name(), linked = c.linked, "VM cloned");
        Ok(info)
    }

    /// Makes the clone's disks and writes its configuration into `dir`.
    async fn fill_clone(
        &self,
        source: &VmEntry,
        spec: &VmSpec,
        snapshot: Option<&SnapshotInfo>,
        p: &AgentVmCloneParams,
        id: Uuid,
        (dir, dir_name): (&std::path::Path, &str),
    ) -> Result<VmConfigFile, RpcError> {
        let c = &p.clone;
        let from: Vec<DiskSpec> = snapshot.map_or_else(|| spec.disks.clone(), |s| s.disks.clone());
        let mut disks = Vec::new();
        for (i, d) in from.iter().enumerate() {
            let stem = if i == 0 {
                dir_name.to_string()
            } else {
                format!("{dir_name}_{i}")
            };
            if c.linked {
                let rel = format!("../{}/{}", source.name, d.file);
                let name = format!("{stem}.qcow2");
                overlay::create(dir, &name, &rel, d.format).map_err(disk_err)?;
                disks.push(DiskSpec {
                    file: name,
                    format: strata_shared::model::DiskFormat::Qcow2,
                    read_only: d.read_only,
                });
            } else {
                let src = source.dir.join(&d.file);
                let fmt = overlay::base_format(&src, d.format).map_err(disk_err)?;
                let name = format!("{stem}.{}", fmt.as_str());
                let dst = dir.join(&name);
                let src_fmt = d.format;
                tokio::task::spawn_blocking(move || overlay::copy(&src, src_fmt, &dst, fmt))
                    .await
                    .map_err(|e| RpcError::internal(format!("disk copy stopped: {e}")))?
                    .map_err(disk_err)?;
                disks.push(DiskSpec {
                    file: name,
                    format: fmt,
                    read_only: d.read_only,
                });
            }
        }
        let mut new_spec = spec.clone();
        new_spec.disks = disks;
        new_spec.template = c.template;
        // A clone is a new machine: its NICs get MACs derived from its own id.
        for nic in &mut new_spec.nics {
            nic.mac = None;
        }
        if let Some(h) = &c.hostname {
            let kept: Vec<&str> = new_spec
                .boot
                .cmdline
                .split_whitespace()
                .filter(|a| !a.starts_with("strata.hostname="))
                .collect();
            new_spec.boot.cmdline = kept
                .into_iter()
                .chain(std::iter::once(format!("strata.hostname={h}").as_str()))
                .collect::<Vec<_>>()
                .join(" ");
        }
        new_spec.validate().map_err(RpcError::invalid)?;
        let config = VmConfigFile {
            id,
            name: dir_name.to_string(),
            display_name: (dir_name != c.name).then(|| c.name.clone()),
            created_ms: strata_shared::now_ms(),
            spec: new_spec,
            snapshots: SnapshotTree::default(),
            linked_base: match (c.linked, snapshot) {
                (true, Some(s)) => Some(LinkedBase {
                    vm: source.id,
                    snapshot: s.id,
                }),
                _ => None,
            },
        };
        let text = config.to_toml().map_err(RpcError::internal)?;
        crate::atomic_file::write(&VmConfigFile::path_in(dir, dir_name), text.as_bytes())
            .map_err(|e| RpcError::internal(format!("cannot write the VM config: {e}")))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_names_follow_the_disk_they_belong_to() {
        assert_eq!(disk_stem("web01.raw"), "web01");
        assert_eq!(disk_stem("web01-000002.qcow2"), "web01");
        assert_eq!(disk_stem("web01_1-000010.qcow2"), "web01_1");
        assert_eq!(disk_stem("my-vm.raw"), "my-vm");
        let dir = tempfile::tempdir().unwrap();
        let tree = SnapshotTree::default();
        assert_eq!(overlay_name(dir.path(), "a.raw", &tree), "a-000001.qcow2");
        std::fs::write(dir.path().join("a-000001.qcow2"), b"").unwrap();
        assert_eq!(
            overlay_name(dir.path(), "a-000001.qcow2", &tree),
            "a-000002.qcow2"
        );
    }

    #[test]
    fn host_names_are_checked() {
        assert!(validate_hostname("web-02").is_ok());
        for bad in ["", "-a", "a-", "a b", "a;reboot", &"x".repeat(64)] {
            assert!(validate_hostname(bad).is_err(), "{bad:?}");
        }
    }
}
