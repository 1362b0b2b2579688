//! A suspended VM's saved state: the directory `NAME/suspend/` holding what the engine wrote
//! (strata-vmx: a snapshot directory; QEMU: one migration stream file) and, written last,
//! `saved.json`, which says which engine wrote it. A directory without `saved.json` is an
//! interrupted save and does not count: the VM is then powered off, not suspended.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_shared::model::Engine;

use super::EngineError;

/// The directory inside a VM's directory.
pub const SUSPEND_DIR: &str = "suspend";
/// The marker written last.
pub const MARKER_FILE: &str = "saved.json";
/// The QEMU engine's migration stream inside [`SUSPEND_DIR`].
pub const QEMU_STATE_FILE: &str = "qemu.state";

/// What `saved.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// The engine that wrote the state (and must read it back).
    pub engine: Engine,
    /// When, Unix ms.
    pub saved_ms: i64,
    /// Bytes the state takes on disk (allocated blocks; memory files are sparse).
    pub bytes: u64,
}

/// The saved-state directory of a VM directory.
pub fn dir_of(vm_dir: &Path) -> PathBuf {
    vm_dir.join(SUSPEND_DIR)
}

/// The complete saved state in `vm_dir`, if there is one.
pub fn read(vm_dir: &Path) -> Option<SavedState> {
    let bytes = std::fs::read(dir_of(vm_dir).join(MARKER_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Empties (or creates) the saved-state directory for a new save.
pub fn prepare(vm_dir: &Path) -> Result<PathBuf, EngineError> {
    discard(vm_dir)?;
    let dir = dir_of(vm_dir);
    std::fs::create_dir_all(&dir).map_err(|source| EngineError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    Ok(dir)
}

/// Marks the save complete: writes `saved.json` with the state's size.
pub fn commit(vm_dir: &Path, engine: Engine) -> Result<SavedState, EngineError> {
    let dir = dir_of(vm_dir);
    let state = SavedState {
        engine,
        saved_ms: strata_shared::now_ms(),
        bytes: disk_usage(&dir),
    };
    let text = serde_json::to_vec(&state).map_err(|e| EngineError::Io {
        what: "encoding saved.json".into(),
        source: std::io::Error::other(e),
    })?;
    crate::atomic_file::write(&dir.join(MARKER_FILE), &text).map_err(|source| EngineError::Io {
        what: format!("writing {}", dir.join(MARKER_FILE).display()),
        source,
    })?;
    Ok(state)
}

/// Deletes the saved state (complete or not).
pub fn discard(vm_dir: &Path) -> Result<(), EngineError> {
    let dir = dir_of(vm_dir);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(EngineError::Io {
            what: format!("deleting {}", dir.display()),
            source,
        }),
    }
}

/// Allocated bytes of the files directly in `dir`.
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_committed_save_counts_and_discard_removes_it() {
        let vm = tempfile::tempdir().unwrap();
        assert_eq!(read(vm.path()), None);
        let dir = prepare(vm.path()).unwrap();
        std::fs::write(dir.join("memory.raw"), vec![1u8; 8192]).unwrap();
        assert_eq!(
            read(vm.path()),
            None,
            "an interrupted save is no saved state"
        );
        let s = commit(vm.path(), Engine::Native).unwrap();
        assert!(s.bytes >= 8192, "{s:?}");
        assert_eq!(read(vm.path()), Some(s));
        prepare(vm.path()).unwrap();
        assert_eq!(read(vm.path()), None, "a new save starts empty");
        discard(vm.path()).unwrap();
        assert!(!dir.exists());
        discard(vm.path()).unwrap();
    }
}
