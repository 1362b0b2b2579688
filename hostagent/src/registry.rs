//! The VMs on this host's datastores: each a directory `NAME/` holding `NAME.toml`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use strata_shared::model::{Engine, LinkedBase, PowerState, SnapshotTree, VmInfo, VmSpec};
use tracing::warn;
use uuid::Uuid;

use crate::datastore::Datastore;

/// What `NAME.toml` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfigFile {
    /// Stable id.
    pub id: Uuid,
    /// The directory's name (the VM's name when it was made).
    pub name: String,
    /// The name shown, when it differs from the directory's: the VM was renamed (renaming
    /// does not move its directory), or its name's directory was taken when it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    /// Configuration.
    pub spec: VmSpec,
    /// Snapshots of its disks.
    #[serde(default)]
    pub snapshots: SnapshotTree,
    /// For a linked clone: the VM and snapshot its disks read through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_base: Option<LinkedBase>,
}

impl VmConfigFile {
    /// Path of the config file inside a VM directory.
    pub fn path_in(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}.toml"))
    }

    /// Reads and parses `dir/NAME.toml` where NAME is the directory's name.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("directory name is not UTF-8")?;
        let path = Self::path_in(dir, name);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cfg: VmConfigFile =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        if cfg.name != name {
            return Err(format!(
                "{}: name {:?} does not match its directory",
                path.display(),
                cfg.name
            ));
        }
        Ok(cfg)
    }

    /// Serialises to TOML.
    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string(self).map_err(|e| e.to_string())
    }
}

/// A running VM's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunState {
    /// VMM pid.
    pub pid: u32,
    /// Engine that runs it.
    pub engine: Engine,
}

/// One VM known to the agent.
pub struct VmEntry {
    /// Stable id.
    pub id: Uuid,
    /// The directory's name (fixed; files inside are named after it). The name shown is
    /// [`VmEntry::display_name`].
    pub name: String,
    /// The name shown when it differs from the directory's (see [`VmConfigFile`]).
    label: Mutex<Option<String>>,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    /// What changes: configuration and snapshots, changed only through [`VmEntry::save`],
    /// which writes `NAME.toml` first.
    state: Mutex<(VmSpec, SnapshotTree)>,
    /// For a linked clone: where its disks read through.
    pub linked_base: Option<LinkedBase>,
    /// Datastore name.
    pub datastore: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Serialises power and configuration operations on this VM.
    pub op: tokio::sync::Mutex<()>,
    /// Process while powered on.
    pub run: Mutex<Option<RunState>>,
    /// Whether the process's vCPUs are stopped (`vm.pause`).
    paused: std::sync::atomic::AtomicBool,
    /// Whether the VM's state is saved in `suspend/` (see [`crate::engine::saved_state`]).
    suspended: std::sync::atomic::AtomicBool,
}

impl VmEntry {
    /// A new entry, powered off.
    pub fn new(config: VmConfigFile, datastore: &str, dir: PathBuf) -> Self {
        Self {
            id: config.id,
            label: Mutex::new(config.display_name.filter(|d| *d != config.name)),
            name: config.name,
            created_ms: config.created_ms,
            state: Mutex::new((config.spec, config.snapshots)),
            linked_base: config.linked_base,
            datastore: datastore.to_string(),
            op: tokio::sync::Mutex::new(()),
            run: Mutex::new(None),
            paused: Default::default(),
            suspended: std::sync::atomic::AtomicBool::new(
                crate::engine::saved_state::read(&dir).is_some(),
            ),
            dir,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (VmSpec, SnapshotTree)> {
        match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The VM's name as the API shows it (the directory's name unless renamed).
    pub fn display_name(&self) -> String {
        match self.label.lock() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
        .unwrap_or_else(|| self.name.clone())
    }

    /// The configuration now.
    pub fn spec(&self) -> VmSpec {
        self.state().0.clone()
    }

    /// The snapshot tree now.
    pub fn snapshots(&self) -> SnapshotTree {
        self.state().1.clone()
    }

    /// What `NAME.toml` holds.
    pub fn config(&self) -> VmConfigFile {
        let (spec, snapshots) = self.state().clone();
        let label = self.display_name();
        VmConfigFile {
            id: self.id,
            display_name: (label != self.name).then_some(label),
            name: self.name.clone(),
            created_ms: self.created_ms,
            spec,
            snapshots,
            linked_base: self.linked_base,
        }
    }

    /// Replaces the configuration and snapshot tree: writes `NAME.toml` (atomically) first,
    /// so memory and disk never disagree.
    pub fn save(&self, spec: VmSpec, snapshots: SnapshotTree) -> Result<(), String> {
        let file = VmConfigFile {
            spec: spec.clone(),
            snapshots: snapshots.clone(),
            ..self.config()
        };
        self.write_config(&file)?;
        *self.state() = (spec, snapshots);
        Ok(())
    }

    /// Writes `NAME.toml` atomically.
    fn write_config(&self, file: &VmConfigFile) -> Result<(), String> {
        let text = file.to_toml()?;
        crate::atomic_file::write(
            &VmConfigFile::path_in(&self.dir, &self.name),
            text.as_bytes(),
        )
        .map_err(|e| format!("cannot write the VM config: {e}"))
    }

    /// Replaces the configuration, keeping the snapshot tree.
    pub fn save_spec(&self, spec: VmSpec) -> Result<(), String> {
        self.save(spec, self.snapshots())
    }

    /// Replaces the configuration and the name shown (the directory stays): writes
    /// `NAME.toml` first, like [`VmEntry::save`].
    pub fn save_renamed(&self, spec: VmSpec, display_name: &str) -> Result<(), String> {
        let label = (display_name != self.name).then(|| display_name.to_string());
        let file = VmConfigFile {
            spec: spec.clone(),
            display_name: label.clone(),
            ..self.config()
        };
        self.write_config(&file)?;
        self.state().0 = spec;
        match self.label.lock() {
            Ok(mut l) => *l = label,
            Err(poisoned) => *poisoned.into_inner() = label,
        }
        Ok(())
    }

    /// The process, when powered on.
    pub fn running(&self) -> Option<RunState> {
        self.run.lock().ok().and_then(|r| *r)
    }

    /// Records the process (or its end; a new or ended process is not paused).
    pub fn set_running(&self, state: Option<RunState>) {
        if let Ok(mut r) = self.run.lock() {
            *r = state;
        }
        self.set_paused(false);
    }

    /// Whether the vCPUs are stopped.
    pub fn paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records that the vCPUs stopped or run again.
    pub fn set_paused(&self, paused: bool) {
        self.paused
            .store(paused, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the VM is suspended (its state saved in its directory).
    pub fn suspended(&self) -> bool {
        self.suspended.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records that the VM's state was saved, or resumed / discarded.
    pub fn set_suspended(&self, suspended: bool) {
        self.suspended
            .store(suspended, std::sync::atomic::Ordering::SeqCst);
    }

    /// Refuses a change while the VM is not powered off (running, paused or suspended).
    pub fn require_powered_off(&self, what: &str) -> Result<(), strata_shared::rpc::RpcError> {
        let state = if self.running().is_some() {
            "powered on"
        } else if self.suspended() {
            "suspended (power it on, or off to discard its saved state)"
        } else {
            return Ok(());
        };
        Err(strata_shared::rpc::RpcError::new(
            strata_shared::rpc::ErrorCode::InvalidState,
            format!("VM {} is {state}: {what} needs it powered off", self.name),
        ))
    }

    /// How the API reports it.
    pub fn info(&self) -> VmInfo {
        let run = self.running();
        VmInfo {
            id: self.id,
            name: self.display_name(),
            host: None,
            pool: None,
            datastore: self.datastore.clone(),
            spec: self.spec(),
            power_state: match run {
                Some(_) if self.paused() => PowerState::Paused,
                Some(_) => PowerState::PoweredOn,
                None if self.suspended() => PowerState::Suspended,
                None => PowerState::PoweredOff,
            },
            running_engine: run.map(|r| r.engine),
            pid: run.map(|r| r.pid),
            created_ms: self.created_ms,
        }
    }
}

/// Scans datastores for VM directories; unreadable ones are logged and skipped.
pub fn scan(datastores: &[Datastore]) -> Vec<VmEntry> {
    let mut out: Vec<VmEntry> = Vec::new();
    for ds in datastores {
        let Ok(rd) = std::fs::read_dir(&ds.root) else {
            continue;
        };
        for ent in rd.flatten() {
            let dir = ent.path();
            if !dir.is_dir() {
                continue;
            }
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !VmConfigFile::path_in(&dir, &name).exists() {
                continue;
            }
            match VmConfigFile::load(&dir) {
                Ok(cfg) if out.iter().any(|e| e.id == cfg.id) => {
                    warn!(dir = %dir.display(), id = %cfg.id, "skipping a VM whose id is already registered");
                }
                Ok(cfg) => out.push(VmEntry::new(cfg, &ds.name, dir)),
                Err(e) => warn!(error = %e, "skipping an unreadable VM directory"),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::{BootSpec, Machine};

    fn cfg(name: &str) -> VmConfigFile {
        VmConfigFile {
            id: Uuid::new_v4(),
            name: name.into(),
            display_name: None,
            created_ms: 1,
            spec: VmSpec {
                vcpus: 1,
                memory_mib: 128,
                engine: Engine::Qemu,
                machine: Machine::Microvm,
                boot: BootSpec {
                    kernel: "/k".into(),
                    initrd: None,
                    cmdline: String::new(),
                },
                allocation: Default::default(),
                disks: Vec::new(),
                template: false,
                nics: vec![strata_shared::model::NicSpec {
                    tap: "tap-web".into(),
                    mac: Some("52:54:00:00:00:01".into()),
                }],
            },
            snapshots: SnapshotTree::default(),
            linked_base: None,
        }
    }

    #[test]
    fn config_round_trips_and_scan_finds_vms() {
        let root = tempfile::tempdir().unwrap();
        let ds = Datastore::new("ds", root.path().into());
        let c = cfg("web");
        let dir = root.path().join("web");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(VmConfigFile::path_in(&dir, "web"), c.to_toml().unwrap()).unwrap();
        std::fs::create_dir(root.path().join("junk")).unwrap();
        let bad = root.path().join("bad");
        std::fs::create_dir(&bad).unwrap();
        std::fs::write(bad.join("bad.toml"), "not = [valid").unwrap();
        let found = scan(&[ds]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].config(), c);
        assert_eq!(found[0].info().power_state, PowerState::PoweredOff);
    }

    #[test]
    fn power_state_comes_from_process_pause_and_saved_state() {
        let root = tempfile::tempdir().unwrap();
        let ds = Datastore::new("ds", root.path().into());
        let dir = root.path().join("web");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            VmConfigFile::path_in(&dir, "web"),
            cfg("web").to_toml().unwrap(),
        )
        .unwrap();
        // An interrupted save is not a suspended VM; a committed one is, after a rescan.
        crate::engine::saved_state::prepare(&dir).unwrap();
        let e = scan(std::slice::from_ref(&ds)).remove(0);
        assert_eq!(e.info().power_state, PowerState::PoweredOff);
        crate::engine::saved_state::commit(&dir, Engine::Native).unwrap();
        let e = scan(&[ds]).remove(0);
        assert_eq!(e.info().power_state, PowerState::Suspended);
        assert!(e.require_powered_off("grow a disk").is_err());
        let run = RunState {
            pid: 1,
            engine: Engine::Native,
        };
        e.set_suspended(false);
        e.set_running(Some(run));
        assert_eq!(e.info().power_state, PowerState::PoweredOn);
        e.set_paused(true);
        assert_eq!(e.info().power_state, PowerState::Paused);
        e.set_running(None);
        assert_eq!(
            e.info().power_state,
            PowerState::PoweredOff,
            "an ended process is not paused"
        );
        assert!(e.require_powered_off("grow a disk").is_ok());
    }

    #[test]
    fn a_rename_is_kept_in_the_config_and_the_directory_stays() {
        let root = tempfile::tempdir().unwrap();
        let ds = Datastore::new("ds", root.path().into());
        let dir = root.path().join("web");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            VmConfigFile::path_in(&dir, "web"),
            cfg("web").to_toml().unwrap(),
        )
        .unwrap();
        let e = scan(std::slice::from_ref(&ds)).remove(0);
        let mut spec = e.spec();
        spec.vcpus = 2;
        e.save_renamed(spec, "db").unwrap();
        assert_eq!((e.info().name.as_str(), e.info().spec.vcpus), ("db", 2));
        assert_eq!(e.name, "web", "the directory keeps its name");
        let text = std::fs::read_to_string(VmConfigFile::path_in(&dir, "web")).unwrap();
        assert!(text.contains("display_name = \"db\""), "{text}");
        // After a rescan (an agent restart) the name shown is still the new one.
        let again = scan(std::slice::from_ref(&ds)).remove(0);
        assert_eq!(again.info().name, "db");
        // Renaming back to the directory's name drops the extra field.
        again.save_renamed(again.spec(), "web").unwrap();
        let text = std::fs::read_to_string(VmConfigFile::path_in(&dir, "web")).unwrap();
        assert!(!text.contains("display_name"), "{text}");
        assert_eq!(scan(&[ds]).remove(0).info().name, "web");
    }
}
