//! Copy-on-write overlays and whole copies of disk files, with `qemu-img`: what snapshots and
//! clones are made of. An overlay is a qcow2 file that reads through to its backing file
//! (named relative to the overlay's directory, so a datastore can be mounted anywhere) and
//! takes every write itself.

use std::path::Path;
use std::process::Command;

use strata_shared::model::DiskFormat;

use super::disk::DiskError;

fn qemu_img(what: &'static str, dir: &Path, args: &[&str]) -> Result<String, DiskError> {
    let out = Command::new("qemu-img")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|source| DiskError::Io {
            what: format!("running qemu-img {what}"),
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if detail.contains("No space left") {
        return Err(DiskError::NoSpace {
            what: format!("qemu-img {what}"),
            detail,
        });
    }
    Err(DiskError::QemuImg { what, detail })
}

/// Creates `overlay` (in `dir`) reading through `backing` (a path relative to `dir`).
pub fn create(
    dir: &Path,
    overlay: &str,
    backing: &str,
    backing_format: DiskFormat,
) -> Result<(), DiskError> {
    if dir.join(overlay).exists() {
        return Err(DiskError::Exists(dir.join(overlay).display().to_string()));
    }
    qemu_img(
        "create",
        dir,
        &[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            backing_format.as_str(),
            "-b",
            backing,
            overlay,
        ],
    )
    .map(|_| ())
}

/// Makes `overlay` read through `backing` instead of its current backing file, copying into
/// it whatever differs (so the guest sees exactly the same data).
pub fn rebase(
    dir: &Path,
    overlay: &str,
    backing: &str,
    backing_format: DiskFormat,
) -> Result<(), DiskError> {
    rebase_with(dir, overlay, backing, backing_format, "-q")
}

/// Points `overlay` at `backing` without copying: only for a backing file with the same
/// contents as the old one.
pub fn relink(
    dir: &Path,
    overlay: &str,
    backing: &str,
    backing_format: DiskFormat,
) -> Result<(), DiskError> {
    rebase_with(dir, overlay, backing, backing_format, "-u")
}

fn rebase_with(
    dir: &Path,
    overlay: &str,
    backing: &str,
    backing_format: DiskFormat,
    mode: &str,
) -> Result<(), DiskError> {
    qemu_img(
        "rebase",
        dir,
        &[
            "rebase",
            mode,
            "-f",
            "qcow2",
            "-F",
            backing_format.as_str(),
            "-b",
            backing,
            overlay,
        ],
    )
    .map(|_| ())
}

/// Writes `overlay`'s data down into its backing file.
pub fn commit(dir: &Path, overlay: &str) -> Result<(), DiskError> {
    qemu_img("commit", dir, &["commit", "-q", "-f", "qcow2", overlay]).map(|_| ())
}

/// Copies what a disk's guest sees (its whole backing chain, flattened) into a new file
/// `dst` of `dst_format`. Sparse regions stay sparse.
pub fn copy(
    src: &Path,
    src_format: DiskFormat,
    dst: &Path,
    dst_format: DiskFormat,
) -> Result<(), DiskError> {
    if dst.exists() {
        return Err(DiskError::Exists(dst.display().to_string()));
    }
    let dir = src.parent().unwrap_or(Path::new("."));
    let (Some(s), Some(d)) = (src.to_str(), dst.to_str()) else {
        return Err(DiskError::Invalid("disk paths must be UTF-8".into()));
    };
    let r = qemu_img(
        "convert",
        dir,
        &[
            "convert",
            "-f",
            src_format.as_str(),
            "-O",
            dst_format.as_str(),
            s,
            d,
        ],
    );
    if r.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    r.map(|_| ())
}

/// Copies a raw file: a reflink (instant, shares blocks) where the file system can, else a
/// sparse copy. `dst` must not exist; nothing is left behind on failure.
pub fn clone_raw(src: &Path, dst: &Path) -> Result<(), DiskError> {
    use std::os::fd::AsRawFd;
    if dst.exists() {
        return Err(DiskError::Exists(dst.display().to_string()));
    }
    let shown = dst.display().to_string();
    let from = std::fs::File::open(src).map_err(|source| DiskError::Io {
        what: format!("opening {}", src.display()),
        source,
    })?;
    let to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|source| DiskError::Io {
            what: format!("creating {shown}"),
            source,
        })?;
    // SAFETY: both fds are open files owned by this function for the whole call; FICLONE
    // only reads the source fd number.
    let rc = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) };
    if rc == 0 {
        return Ok(());
    }
    drop(to);
    let _ = std::fs::remove_file(dst);
    copy(src, DiskFormat::Raw, dst, DiskFormat::Raw)
}

/// The format of the bottom of a disk's backing chain (what a full copy is made as).
pub fn base_format(path: &Path, format: DiskFormat) -> Result<DiskFormat, DiskError> {
    if format == DiskFormat::Raw {
        return Ok(DiskFormat::Raw);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let Some(p) = path.to_str() else {
        return Err(DiskError::Invalid("disk paths must be UTF-8".into()));
    };
    let out = qemu_img(
        "info",
        dir,
        &[
            "info",
            "-U",
            "--backing-chain",
            "--output=json",
            "-f",
            format.as_str(),
            p,
        ],
    )?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| DiskError::QemuImg {
        what: "info",
        detail: format!("unreadable output: {e}"),
    })?;
    let last = v
        .as_array()
        .and_then(|a| a.last())
        .and_then(|x| x.get("format"))
        .and_then(|f| f.as_str());
    Ok(match last {
        Some("raw") => DiskFormat::Raw,
        _ => DiskFormat::Qcow2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::process::Command;

    fn write_at(path: &Path, off: u64, data: &[u8]) {
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(data).unwrap();
    }

    /// Reads what a guest would see at `off` through the chain, via a raw copy.
    fn guest_view(path: &Path, off: u64, len: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("view.raw");
        copy(path, DiskFormat::Qcow2, &out, DiskFormat::Raw).unwrap();
        let mut f = std::fs::File::open(&out).unwrap();
        f.seek(SeekFrom::Start(off)).unwrap();
        let mut buf = vec![0; len];
        f.read_exact(&mut buf).unwrap();
        buf
    }

    #[test]
    fn overlays_read_through_and_commit_writes_back() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("b.raw");
        super::super::disk::create(
            &base,
            4 << 20,
            DiskFormat::Raw,
            strata_shared::model::Provisioning::Thin,
        )
        .unwrap();
        write_at(&base, 0, b"base data");
        create(dir.path(), "o.qcow2", "b.raw", DiskFormat::Raw).unwrap();
        assert_eq!(guest_view(&dir.path().join("o.qcow2"), 0, 9), b"base data");
        assert!(create(dir.path(), "o.qcow2", "b.raw", DiskFormat::Raw).is_err());
        // The base's format is found through the chain.
        assert_eq!(
            base_format(&dir.path().join("o.qcow2"), DiskFormat::Qcow2).unwrap(),
            DiskFormat::Raw
        );
        // A write through the overlay (as a guest would) leaves the base alone …
        let ok = Command::new("qemu-io")
            .current_dir(dir.path())
            .args(["-f", "qcow2", "-c", "write -P 0x41 0 4k", "o.qcow2"])
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "qemu-io write");
        assert_eq!(guest_view(&dir.path().join("o.qcow2"), 0, 4), b"AAAA");
        let mut buf = [0u8; 9];
        std::fs::File::open(&base)
            .unwrap()
            .read_exact(&mut buf)
            .unwrap();
        assert_eq!(&buf, b"base data", "the base is untouched");
        // … until it is committed down.
        commit(dir.path(), "o.qcow2").unwrap();
        std::fs::File::open(&base)
            .unwrap()
            .read_exact(&mut buf)
            .unwrap();
        assert_eq!(&buf[..4], b"AAAA");
    }

    #[test]
    fn a_failed_copy_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = copy(
            &dir.path().join("missing.qcow2"),
            DiskFormat::Qcow2,
            &dir.path().join("out.raw"),
            DiskFormat::Raw,
        )
        .unwrap_err();
        assert!(matches!(e, DiskError::QemuImg { .. }), "{e}");
        assert!(!dir.path().join("out.raw").exists());
    }
}
