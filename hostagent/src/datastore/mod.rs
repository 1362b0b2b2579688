//! Datastores: directories that hold VM directories, with on-disk leases so a VM never runs
//! on two hosts at once.

pub mod disk;
pub mod lease;
pub mod lease_keeper;
pub mod overlay;

use std::path::{Path, PathBuf};

use strata_shared::model::DatastoreFacts;

/// One datastore on this host.
#[derive(Debug, Clone)]
pub struct Datastore {
    /// Name.
    pub name: String,
    /// Root directory.
    pub root: PathBuf,
}

impl Datastore {
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
        DatastoreFacts {
            name: self.name.clone(),
            path: self.root.display().to_string(),
            capacity_bytes,
            free_bytes,
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
        let d = Datastore {
            name: "ds".into(),
            root: "/srv/ds".into(),
        };
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
        let f = Datastore {
            name: "t".into(),
            root: dir.path().into(),
        }
        .facts();
        assert!(f.capacity_bytes > 0 && f.free_bytes <= f.capacity_bytes);
    }
}
