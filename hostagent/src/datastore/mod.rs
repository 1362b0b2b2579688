//! Datastores: directories that hold VM directories, with on-disk leases so a VM never runs
//! on two hosts at once.

pub mod disk;
pub mod files;
pub mod health;
pub mod lease;
pub mod lease_keeper;
pub mod overlay;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use strata_shared::model::DatastoreFacts;
use uuid::Uuid;

/// One datastore on this host.
#[derive(Debug, Clone)]
pub struct Datastore {
    /// Name.
    pub name: String,
    /// Root directory.
    pub root: PathBuf,
    /// The volume's id (from its `.strata-datastore` file; nil until it could be read).
    pub id: Uuid,
    /// Whether it answers now, and why not.
    pub health: Arc<Mutex<health::Health>>,
}

impl Datastore {
    /// A datastore at `root`; reads (or, the first time, writes) its volume id.
    pub fn new(name: &str, root: PathBuf) -> Self {
        let id = health::volume_id(&root).unwrap_or_default();
        Self {
            name: name.to_string(),
            root,
            id,
            health: Arc::new(Mutex::new(health::Health::default())),
        }
    }

    /// The last probe's verdict.
    pub fn health(&self) -> health::Health {
        match self.health.lock() {
            Ok(h) => h.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Capacity and free space of the file system holding it.
    // fsblkcnt_t and friends are not u64 on every platform.
    #[allow(clippy::unnecessary_cast)]
    pub fn facts(&self) -> DatastoreFacts {
        let (capacity_bytes, free_bytes) = match nix::sys::statvfs::statvfs(&self.root) {
            Ok(s) => {
                let frag = s.fragment_size() as u64;
                (s.blocks() as u64 * frag, s.blocks_available() as u64 * frag)
            }
            Err(_) => (0, 0),
        };
        let health = self.health();
        DatastoreFacts {
            id: self.id,
            name: self.name.clone(),
            path: self.root.display().to_string(),
            capacity_bytes,
            free_bytes,
            accessible: health.problem.is_none(),
            problem: health.problem,
        }
    }

    /// Resolves a path a VM config names: absolute as is, relative under the datastore root
    /// (refusing `..` so a config cannot point outside it).
    pub fn resolve(&self, p: &str) -> Result<PathBuf, String> {
        let path = Path::new(p);
        if path.is_absolute() {
            return Ok(path.to_path_buf());
        }
        if path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!("path {p:?} must not contain '..'"));
        }
        Ok(self.root.join(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_paths_inside_the_datastore_only() {
        let d = Datastore::new("ds", "/srv/ds".into());
        assert_eq!(
            d.resolve("images/k").unwrap(),
            PathBuf::from("/srv/ds/images/k")
        );
        assert_eq!(d.resolve("/boot/k").unwrap(), PathBuf::from("/boot/k"));
        assert!(d.resolve("../etc/shadow").is_err());
    }

    #[test]
    fn reports_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let d = Datastore::new("t", dir.path().into());
        let f = d.facts();
        assert!(f.capacity_bytes > 0 && f.free_bytes <= f.capacity_bytes);
        assert!(f.accessible);
        assert!(!f.id.is_nil());
        assert_eq!(
            Datastore::new("again", dir.path().into()).id,
            d.id,
            "the volume id is the directory's, whoever opens it"
        );
    }
}
