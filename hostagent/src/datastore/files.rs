//! Browsing a datastore and moving files in and out of it in chunks. Paths are relative to
//! the datastore's root and cannot leave it (no `..`, no absolute paths, no symlinks out);
//! Strata's own hidden files (volume marker, leases) can be neither read nor written. An
//! upload goes to a hidden part file and appears under its name only when complete.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use strata_shared::model::{
    decode_chunk, encode_chunk, DatastoreEntry, DownloadParams, EntryKind, FileChunk, UploadParams,
    UploadProgress, MAX_CHUNK,
};

/// Why a file operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The request is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// Nothing there.
    #[error("{0} does not exist")]
    NotFound(String),
    /// Something is already there.
    #[error("{0} already exists (upload with overwrite to replace it)")]
    Exists(String),
    /// The datastore is full.
    #[error("the datastore is full: {0}")]
    NoSpace(String),
    /// Other I/O trouble.
    #[error("{0}")]
    Io(String),
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |e| match e.raw_os_error() {
        Some(libc::ENOSPC) => FileError::NoSpace(what.to_string()),
        _ if e.kind() == std::io::ErrorKind::NotFound => FileError::NotFound(what.to_string()),
        _ => FileError::Io(format!("{what}: {e}")),
    }
}

/// Resolves `rel` inside `root`, refusing anything that would leave it or touch hidden files.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, FileError> {
    let p = Path::new(rel.trim_start_matches("./"));
    if p.is_absolute() {
        return Err(FileError::Invalid(format!(
            "path {rel:?} must be relative to the datastore"
        )));
    }
    for c in p.components() {
        match c {
            Component::Normal(s) if s.to_string_lossy().starts_with('.') => {
                return Err(FileError::Invalid(format!(
                    "path {rel:?} names a hidden file"
                )))
            }
            Component::Normal(_) | Component::CurDir => {}
            _ => {
                return Err(FileError::Invalid(format!(
                    "path {rel:?} must stay inside the datastore"
                )))
            }
        }
    }
    let full = root.join(p);
    // Symlinks must not lead out: the deepest existing ancestor must be inside the root.
    let real_root = std::fs::canonicalize(root).map_err(io("the datastore"))?;
    let mut probe = full.clone();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    let real = std::fs::canonicalize(&probe).map_err(io(rel))?;
    if !real.starts_with(&real_root) {
        return Err(FileError::Invalid(format!(
            "path {rel:?} leads outside the datastore"
        )));
    }
    Ok(full)
}

fn modified_ms(m: &std::fs::Metadata) -> i64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Lists a directory (hidden entries left out), directories first, then by name.
pub fn browse(root: &Path, rel: &str) -> Result<Vec<DatastoreEntry>, FileError> {
    let dir = resolve(root, rel)?;
    let shown = if rel.is_empty() { "/" } else { rel };
    let rd = std::fs::read_dir(&dir).map_err(io(shown))?;
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let Ok(meta) = ent.metadata() else { continue };
        out.push(DatastoreEntry {
            name,
            kind: if meta.is_dir() {
                EntryKind::Directory
            } else {
                EntryKind::File
            },
            size_bytes: if meta.is_dir() { 0 } else { meta.len() },
            modified_ms: modified_ms(&meta),
        });
    }
    out.sort_by(|a, b| {
        (a.kind != EntryKind::Directory, &a.name).cmp(&(b.kind != EntryKind::Directory, &b.name))
    });
    Ok(out)
}

fn part_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.upload"))
}

/// Takes one upload chunk.
pub fn upload(root: &Path, p: &UploadParams) -> Result<UploadProgress, FileError> {
    let target = resolve(root, &p.path)?;
    if p.path.trim().is_empty() || target.is_dir() {
        return Err(FileError::Invalid(format!(
            "{:?} is not a file name",
            p.path
        )));
    }
    let data = decode_chunk(&p.data).map_err(FileError::Invalid)?;
    if target.exists() && !p.overwrite {
        return Err(FileError::Exists(p.path.clone()));
    }
    let part = part_path(&target);
    let mut f = if p.offset == 0 {
        std::fs::File::create(&part).map_err(io(&p.path))?
    } else {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .map_err(|_| {
                FileError::Invalid(format!(
                    "no upload of {} is under way: start again at offset 0",
                    p.path
                ))
            })?;
        let have = f.metadata().map_err(io(&p.path))?.len();
        if have != p.offset {
            return Err(FileError::Invalid(format!(
                "the upload of {} has {have} bytes; the next chunk must start there, not at {}",
                p.path, p.offset
            )));
        }
        f
    };
    f.seek(SeekFrom::Start(p.offset)).map_err(io(&p.path))?;
    if let Err(e) = f.write_all(&data) {
        let _ = f.set_len(p.offset);
        return Err(io(&p.path)(e));
    }
    let received = p.offset + data.len() as u64;
    if p.done {
        f.sync_all().map_err(io(&p.path))?;
        if target.exists() && !p.overwrite {
            return Err(FileError::Exists(p.path.clone()));
        }
        std::fs::rename(&part, &target).map_err(io(&p.path))?;
    }
    Ok(UploadProgress {
        received_bytes: received,
        done: p.done,
    })
}

/// Reads one download chunk.
pub fn download(root: &Path, p: &DownloadParams) -> Result<FileChunk, FileError> {
    let path = resolve(root, &p.path)?;
    let mut f = std::fs::File::open(&path).map_err(io(&p.path))?;
    let meta = f.metadata().map_err(io(&p.path))?;
    if !meta.is_file() {
        return Err(FileError::Invalid(format!("{} is not a file", p.path)));
    }
    let want = p
        .max_bytes
        .map_or(MAX_CHUNK, |m| (m as usize).min(MAX_CHUNK));
    f.seek(SeekFrom::Start(p.offset)).map_err(io(&p.path))?;
    let mut buf = Vec::with_capacity(want);
    f.take(want as u64)
        .read_to_end(&mut buf)
        .map_err(io(&p.path))?;
    Ok(FileChunk {
        offset: p.offset,
        data: encode_chunk(&buf),
        size_bytes: meta.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(path: &str, offset: u64, data: &[u8], done: bool) -> UploadParams {
        UploadParams {
            datastore: "ds".into(),
            path: path.into(),
            offset,
            data: encode_chunk(data),
            done,
            overwrite: false,
        }
    }

    #[test]
    fn paths_stay_inside_and_away_from_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("iso")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("escape")).unwrap();
        assert!(resolve(dir.path(), "iso/a.iso").is_ok());
        for bad in [
            "../x",
            "/etc/passwd",
            ".strata-datastore",
            "vm/.lease",
            "escape/passwd",
        ] {
            assert!(resolve(dir.path(), bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn uploads_arrive_whole_in_order_and_downloads_read_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        upload(r, &up("k.img", 0, b"hello ", false)).unwrap();
        assert!(!r.join("k.img").exists(), "not visible until done");
        let e = upload(r, &up("k.img", 3, b"x", false)).unwrap_err();
        assert!(e.to_string().contains("must start there"), "{e}");
        let p = upload(r, &up("k.img", 6, b"world", true)).unwrap();
        assert_eq!(p.received_bytes, 11);
        assert_eq!(std::fs::read(r.join("k.img")).unwrap(), b"hello world");
        let e = upload(r, &up("k.img", 0, b"again", true)).unwrap_err();
        assert!(matches!(e, FileError::Exists(_)), "{e}");
        let c = download(
            r,
            &DownloadParams {
                datastore: "ds".into(),
                path: "k.img".into(),
                offset: 6,
                max_bytes: Some(3),
            },
        )
        .unwrap();
        assert_eq!(decode_chunk(&c.data).unwrap(), b"wor");
        assert_eq!(c.size_bytes, 11);
        let names: Vec<String> = browse(r, "").unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            ["k.img"],
            "part files and hidden files are not listed"
        );
        let e = upload(r, &up("new.img", 5, b"x", false)).unwrap_err();
        assert!(e.to_string().contains("start again"), "{e}");
    }
}
