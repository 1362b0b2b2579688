//! Whether a datastore answers: its `.strata-datastore` file (which also holds the volume id
//! every host mounting it shares) must be readable and a small file must be writable. A
//! probe that hangs (dead NFS server) counts as a failure after a timeout.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use uuid::Uuid;

/// The file at a datastore's root naming its volume.
pub const MARKER: &str = ".strata-datastore";

/// How long a probe may take before the datastore counts as not answering.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A datastore's state as the last probe saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// What is wrong; none when it answers.
    pub problem: Option<String>,
}

/// Reads the volume id from `root`'s marker, writing a new one when there is none yet
/// (exclusively, so two hosts creating it at once agree on the first).
pub fn volume_id(root: &Path) -> Option<Uuid> {
    let marker = root.join(MARKER);
    if let Some(id) = read_id(&marker) {
        return Some(id);
    }
    let id = Uuid::new_v4();
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
    {
        Ok(mut f) => {
            let _ = writeln!(f, "id = \"{id}\"");
            let _ = f.sync_all();
            Some(id)
        }
        Err(_) => read_id(&marker),
    }
}

fn read_id(marker: &Path) -> Option<Uuid> {
    let text = std::fs::read_to_string(marker).ok()?;
    let line = text.lines().find(|l| l.trim_start().starts_with("id"))?;
    let value = line.split_once('=')?.1.trim().trim_matches('"');
    Uuid::parse_str(value).ok()
}

/// Checks a datastore once (blocking): the marker still names `id`, and a probe file can
/// be written, synced and removed.
pub fn probe_blocking(root: &Path, id: Uuid, host: Uuid) -> Result<(), String> {
    match read_id(&root.join(MARKER)) {
        Some(found) if found == id || id.is_nil() => {}
        Some(found) => {
            return Err(format!(
                "a different volume ({found}) is mounted at {}",
                root.display()
            ))
        }
        None => {
            return Err(format!(
                "{} is missing or unreadable (storage unmounted?)",
                root.join(MARKER).display()
            ))
        }
    }
    let probe = root.join(format!(".strata-probe-{}", host.simple()));
    let written = std::fs::File::create(&probe)
        .and_then(|mut f| {
            f.write_all(b"probe")?;
            f.sync_all()
        })
        .map_err(|e| format!("cannot write to {}: {e}", root.display()));
    let _ = std::fs::remove_file(&probe);
    written
}

/// [`probe_blocking`] on a blocking thread, failing after [`PROBE_TIMEOUT`].
pub async fn probe(root: &Path, id: Uuid, host: Uuid) -> Result<(), String> {
    let root2 = root.to_path_buf();
    let job = tokio::task::spawn_blocking(move || probe_blocking(&root2, id, host));
    match tokio::time::timeout(PROBE_TIMEOUT, job).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(format!("probe failed: {e}")),
        Err(_) => Err(format!(
            "{} did not answer within {} s",
            root.display(),
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_marker_or_a_foreign_volume_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let id = volume_id(dir.path()).unwrap();
        let host = Uuid::new_v4();
        assert_eq!(probe_blocking(dir.path(), id, host), Ok(()));
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 1,
            "the probe file is gone again"
        );
        let other = Uuid::new_v4();
        let e = probe_blocking(dir.path(), other, host).unwrap_err();
        assert!(e.contains("different volume"), "{e}");
        std::fs::remove_file(dir.path().join(MARKER)).unwrap();
        let e = probe_blocking(dir.path(), id, host).unwrap_err();
        assert!(e.contains("missing or unreadable"), "{e}");
    }
}
