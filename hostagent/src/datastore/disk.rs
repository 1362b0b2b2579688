//! Virtual disk files: create (thin or thick, raw or qcow2), grow, and inspect. Raw files are
//! handled here directly; qcow2 goes through `qemu-img`, which the qemu engine needs anyway.
//! A failed create leaves no file behind; a failed grow leaves the disk at its old size.

use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_shared::model::{DiskFormat, DiskInfo, DiskSpec, Provisioning, MAX_DISK_MIB};

/// Why a disk operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A value the caller gave is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The file already exists.
    #[error("disk file {0} already exists")]
    Exists(String),
    /// The file is missing.
    #[error("disk file {0} does not exist")]
    Missing(String),
    /// The datastore has no room.
    #[error("not enough free space on the datastore for {what}: {detail}")]
    NoSpace {
        /// What needed the space.
        what: String,
        /// The system's words.
        detail: String,
    },
    /// Another I/O failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// qemu-img failed.
    #[error("qemu-img {what} failed: {detail}")]
    QemuImg {
        /// Which operation.
        what: &'static str,
        /// Its error output.
        detail: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DiskError {
    let what = what.into();
    move |source| {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            DiskError::NoSpace {
                what,
                detail: source.to_string(),
            }
        } else {
            DiskError::Io { what, source }
        }
    }
}

/// Bytes in `mib` MiB, refusing sizes out of range.
pub fn size_bytes(mib: u64) -> Result<u64, DiskError> {
    if mib == 0 || mib > MAX_DISK_MIB {
        return Err(DiskError::Invalid(format!(
            "disk size must be between 1 MiB and {MAX_DISK_MIB} MiB, not {mib} MiB"
        )));
    }
    Ok(mib << 20)
}

/// Removes a half-made file when dropped unless disarmed.
struct Cleanup<'a>(Option<&'a Path>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Creates a new disk file of `bytes` at `path`; fails if it exists.
pub fn create(
    path: &Path,
    bytes: u64,
    format: DiskFormat,
    provisioning: Provisioning,
) -> Result<(), DiskError> {
    let shown = path.display().to_string();
    match format {
        DiskFormat::Rdm => Err(DiskError::Invalid(
            "a raw device mapping is made by mapping a device, not created".into(),
        )),
        DiskFormat::Raw => {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        DiskError::Exists(shown.clone())
                    } else {
                        io_err(format!("creating {shown}"))(e)
                    }
                })?;
            let mut guard = Cleanup(Some(path));
            file.set_len(bytes)
                .map_err(io_err(format!("sizing {shown}")))?;
            if provisioning == Provisioning::Thick {
                allocate(&file, 0, bytes).map_err(io_err(format!("preallocating {shown}")))?;
            }
            file.sync_all()
                .map_err(io_err(format!("syncing {shown}")))?;
            guard.0 = None;
            Ok(())
        }
        DiskFormat::Qcow2 => {
            if path.exists() {
                return Err(DiskError::Exists(shown));
            }
            let mut cmd = Command::new("qemu-img");
            cmd.args(["create", "-q", "-f", "qcow2"]);
            if provisioning == Provisioning::Thick {
                cmd.args(["-o", "preallocation=falloc"]);
            }
            cmd.arg(path).arg(bytes.to_string());
            let mut guard = Cleanup(Some(path));
            run_qemu_img("create", &mut cmd, &shown)?;
            guard.0 = None;
            Ok(())
        }
    }
}

/// Grows a disk to `bytes`; refuses to shrink (the guest's data would be cut off).
pub fn grow(path: &Path, format: DiskFormat, bytes: u64) -> Result<(), DiskError> {
    let shown = path.display().to_string();
    let current = inspect_size(path, format)?.0;
    if bytes < current {
        return Err(DiskError::Invalid(format!(
            "disk {shown} is {} MiB; shrinking to {} MiB would destroy the guest's data",
            current >> 20,
            bytes >> 20
        )));
    }
    if bytes == current {
        return Ok(());
    }
    match format {
        DiskFormat::Rdm => Err(DiskError::Invalid(format!(
            "{shown} maps a host device: its size is the device's"
        ))),
        DiskFormat::Raw => {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err(format!("opening {shown}")))?;
            // A thick disk stays thick: claim the new space first, so a full datastore
            // leaves the disk as it was.
            let thick = is_fully_allocated(path)?;
            if thick {
                if let Err(e) = allocate(&file, current, bytes - current) {
                    // Some file systems keep what they managed to claim: give it back.
                    let _ = file.set_len(current);
                    return Err(io_err(format!("preallocating {shown}"))(e));
                }
            }
            file.set_len(bytes)
                .map_err(io_err(format!("growing {shown}")))?;
            file.sync_all()
                .map_err(io_err(format!("syncing {shown}")))?;
            Ok(())
        }
        DiskFormat::Qcow2 => {
            let mut cmd = Command::new("qemu-img");
            cmd.args(["resize", "-q", "-f", "qcow2"])
                .arg(path)
                .arg(bytes.to_string());
            run_qemu_img("resize", &mut cmd, &shown)
        }
    }
}

/// What a disk's file holds now.
pub fn inspect(dir: &Path, spec: &DiskSpec) -> Result<DiskInfo, DiskError> {
    let path = dir.join(&spec.file);
    let (capacity_bytes, allocated_bytes) = inspect_size(&path, spec.format)?;
    Ok(DiskInfo {
        file: spec.file.clone(),
        format: spec.format,
        read_only: spec.read_only,
        capacity_bytes,
        allocated_bytes,
    })
}

/// (capacity, allocated) bytes of a disk file.
fn inspect_size(path: &Path, format: DiskFormat) -> Result<(u64, u64), DiskError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DiskError::Missing(shown.clone())
        } else {
            io_err(format!("reading {shown}"))(e)
        }
    })?;
    let allocated = meta.blocks() * 512;
    match format {
        DiskFormat::Raw => Ok((meta.len(), allocated)),
        DiskFormat::Rdm => {
            let size = device_size(&mapped_device(path)?)?;
            Ok((size, size))
        }
        DiskFormat::Qcow2 => {
            let mut cmd = Command::new("qemu-img");
            cmd.args(["info", "--output=json", "-f", "qcow2", "-U"])
                .arg(path);
            let out = cmd.output().map_err(io_err("running qemu-img info"))?;
            if !out.status.success() {
                return Err(DiskError::QemuImg {
                    what: "info",
                    detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            let v: serde_json::Value =
                serde_json::from_slice(&out.stdout).map_err(|e| DiskError::QemuImg {
                    what: "info",
                    detail: format!("unreadable output: {e}"),
                })?;
            let size = v
                .get("virtual-size")
                .and_then(|s| s.as_u64())
                .ok_or_else(|| DiskError::QemuImg {
                    what: "info",
                    detail: "no virtual-size in its output".into(),
                })?;
            Ok((size, allocated))
        }
    }
}

/// What a raw device mapping file holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Mapping {
    /// The host block device.
    device: PathBuf,
}

/// Checks that `device` is a block device and returns its size in bytes.
pub fn device_size(device: &Path) -> Result<u64, DiskError> {
    use std::io::Seek;
    use std::os::unix::fs::FileTypeExt;
    let shown = device.display().to_string();
    let meta = std::fs::metadata(device).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DiskError::Missing(shown.clone())
        } else {
            io_err(format!("reading {shown}"))(e)
        }
    })?;
    if !meta.file_type().is_block_device() {
        return Err(DiskError::Invalid(format!("{shown} is not a block device")));
    }
    let mut f = std::fs::File::open(device).map_err(io_err(format!("opening {shown}")))?;
    f.seek(std::io::SeekFrom::End(0))
        .map_err(io_err(format!("sizing {shown}")))
}

/// Writes a mapping file at `path` naming `device` (which must be a block device).
pub fn map_device(path: &Path, device: &Path) -> Result<(), DiskError> {
    if !device.is_absolute() {
        return Err(DiskError::Invalid(format!(
            "device {} must be an absolute path",
            device.display()
        )));
    }
    device_size(device)?;
    refuse_mounted(device)?;
    if path.exists() {
        return Err(DiskError::Exists(path.display().to_string()));
    }
    let text = toml::to_string(&Mapping {
        device: device.to_path_buf(),
    })
    .map_err(|e| DiskError::Invalid(e.to_string()))?;
    crate::atomic_file::write(path, text.as_bytes())
        .map_err(io_err(format!("writing {}", path.display())))
}

/// Refuses a device the host has mounted (or a disk with a mounted partition): giving it to
/// a guest would corrupt the host's file system.
fn refuse_mounted(device: &Path) -> Result<(), DiskError> {
    let real = std::fs::canonicalize(device).unwrap_or_else(|_| device.to_path_buf());
    let real_s = real.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for line in mounts.lines() {
        let Some(src) = line.split_whitespace().next() else {
            continue;
        };
        if !src.starts_with('/') {
            continue;
        }
        let src_real = std::fs::canonicalize(src).unwrap_or_else(|_| PathBuf::from(src));
        let src_s = src_real.to_string_lossy();
        let partition_of = src_s.strip_prefix(real_s.as_str()).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .trim_start_matches('p')
                    .bytes()
                    .all(|b| b.is_ascii_digit())
        });
        if src_real == real || partition_of {
            return Err(DiskError::Invalid(format!(
                "{} is mounted on this host ({src}); it cannot be given to a VM",
                device.display()
            )));
        }
    }
    Ok(())
}

/// The device a mapping file names.
pub fn mapped_device(path: &Path) -> Result<PathBuf, DiskError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DiskError::Missing(shown.clone())
        } else {
            io_err(format!("reading {shown}"))(e)
        }
    })?;
    let m: Mapping = toml::from_str(&text).map_err(|e| {
        DiskError::Invalid(format!("{shown} is not a device mapping: {}", e.message()))
    })?;
    Ok(m.device)
}

/// Where a disk's data is: its file, or the device its mapping file names.
pub fn data_path(dir: &Path, spec: &DiskSpec) -> Result<PathBuf, DiskError> {
    let path = path_in(dir, spec);
    match spec.format {
        DiskFormat::Rdm => mapped_device(&path),
        _ => Ok(path),
    }
}

/// True when every byte of the file has space behind it.
fn is_fully_allocated(path: &Path) -> Result<bool, DiskError> {
    let meta = std::fs::metadata(path).map_err(io_err(format!("reading {}", path.display())))?;
    Ok(meta.blocks() * 512 >= meta.len())
}

/// Claims space for `len` bytes at `offset` (posix_fallocate: ENOSPC when it does not fit).
fn allocate(file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(std::io::Error::from_raw_os_error(libc::EFBIG));
    };
    // SAFETY: the fd belongs to `file`, which outlives the call; posix_fallocate only
    // reads its integer arguments.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), off, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

fn run_qemu_img(what: &'static str, cmd: &mut Command, shown: &str) -> Result<(), DiskError> {
    let out = cmd
        .output()
        .map_err(io_err(format!("running qemu-img {what} for {shown}")))?;
    if out.status.success() {
        return Ok(());
    }
    let detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if detail.contains("No space left") {
        return Err(DiskError::NoSpace {
            what: shown.to_string(),
            detail,
        });
    }
    Err(DiskError::QemuImg { what, detail })
}

/// The first free default file name for a new disk of VM `name`: `NAME.ext`, `NAME_1.ext`,
/// … — numbered by disk, whatever the other disks' formats.
pub fn next_file_name(dir: &Path, name: &str, format: DiskFormat, taken: &[DiskSpec]) -> String {
    let ext = format.as_str();
    let stem_taken = |stem: &str| {
        taken
            .iter()
            .any(|d| Path::new(&d.file).file_stem().and_then(|s| s.to_str()) == Some(stem))
    };
    (0..)
        .map(|i| {
            if i == 0 {
                name.to_string()
            } else {
                format!("{name}_{i}")
            }
        })
        .find(|stem| !stem_taken(stem) && !dir.join(format!("{stem}.{ext}")).exists())
        .map(|stem| format!("{stem}.{ext}"))
        .unwrap_or_else(|| format!("{name}.{ext}"))
}

/// A disk file's path in a VM directory.
pub fn path_in(dir: &Path, spec: &DiskSpec) -> PathBuf {
    dir.join(&spec.file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(file: &str, format: DiskFormat) -> DiskSpec {
        DiskSpec {
            file: file.into(),
            format,
            read_only: false,
        }
    }

    #[test]
    fn thin_raw_disks_are_sparse_and_thick_ones_are_allocated() {
        let dir = tempfile::tempdir().unwrap();
        create(
            &dir.path().join("thin.raw"),
            64 << 20,
            DiskFormat::Raw,
            Provisioning::Thin,
        )
        .unwrap();
        create(
            &dir.path().join("thick.raw"),
            64 << 20,
            DiskFormat::Raw,
            Provisioning::Thick,
        )
        .unwrap();
        let thin = inspect(dir.path(), &spec("thin.raw", DiskFormat::Raw)).unwrap();
        let thick = inspect(dir.path(), &spec("thick.raw", DiskFormat::Raw)).unwrap();
        assert_eq!(thin.capacity_bytes, 64 << 20);
        assert_eq!(thick.capacity_bytes, 64 << 20);
        assert!(thin.allocated_bytes < 1 << 20, "{thin:?}");
        assert!(thick.allocated_bytes >= 64 << 20, "{thick:?}");
    }

    #[test]
    fn create_refuses_an_existing_file_and_bad_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.raw");
        std::fs::write(&p, b"keep me").unwrap();
        let e = create(&p, 1 << 20, DiskFormat::Raw, Provisioning::Thin).unwrap_err();
        assert!(matches!(e, DiskError::Exists(_)), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"keep me");
        assert!(size_bytes(0).is_err());
        assert!(size_bytes(MAX_DISK_MIB + 1).is_err());
        assert_eq!(size_bytes(2).unwrap(), 2 << 20);
    }

    #[test]
    fn raw_disks_grow_keep_their_data_and_refuse_to_shrink() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.raw");
        create(&p, 1 << 20, DiskFormat::Raw, Provisioning::Thick).unwrap();
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = OpenOptions::new().write(true).open(&p).unwrap();
            f.seek(SeekFrom::Start(4096)).unwrap();
            f.write_all(b"guest data").unwrap();
        }
        grow(&p, DiskFormat::Raw, 3 << 20).unwrap();
        let info = inspect(dir.path(), &spec("g.raw", DiskFormat::Raw)).unwrap();
        assert_eq!(info.capacity_bytes, 3 << 20);
        assert!(
            info.allocated_bytes >= 3 << 20,
            "thick stays thick: {info:?}"
        );
        assert_eq!(&std::fs::read(&p).unwrap()[4096..4106], b"guest data");
        let e = grow(&p, DiskFormat::Raw, 2 << 20).unwrap_err();
        assert!(e.to_string().contains("shrinking"), "{e}");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3 << 20);
    }

    #[test]
    fn qcow2_disks_are_created_grown_and_measured_with_qemu_img() {
        if Command::new("qemu-img").arg("--version").output().is_err() {
            panic!("qemu-img is missing: run scripts/setup");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.qcow2");
        create(&p, 32 << 20, DiskFormat::Qcow2, Provisioning::Thin).unwrap();
        let header = std::fs::read(&p).unwrap();
        assert_eq!(&header[..4], b"QFI\xfb", "a qcow2 header");
        let s = spec("q.qcow2", DiskFormat::Qcow2);
        assert_eq!(inspect(dir.path(), &s).unwrap().capacity_bytes, 32 << 20);
        grow(&p, DiskFormat::Qcow2, 48 << 20).unwrap();
        assert_eq!(inspect(dir.path(), &s).unwrap().capacity_bytes, 48 << 20);
        assert!(grow(&p, DiskFormat::Qcow2, 16 << 20).is_err());
    }

    /// A small tmpfs mounted for one test and unmounted when dropped.
    struct SmallFs(tempfile::TempDir);

    impl SmallFs {
        fn mount(mib: u32) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "strata-test"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "mounting a tmpfs needs root");
            SmallFs(dir)
        }
    }

    impl Drop for SmallFs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0.path()).status();
        }
    }

    #[test]
    fn a_full_datastore_gives_a_clear_error_and_leaves_nothing_behind() {
        let fs = SmallFs::mount(8);
        let p = fs.0.path().join("big.raw");
        let e = create(&p, 64 << 20, DiskFormat::Raw, Provisioning::Thick).unwrap_err();
        assert!(matches!(e, DiskError::NoSpace { .. }), "{e}");
        assert!(e.to_string().contains("not enough free space"), "{e}");
        assert!(!p.exists(), "the half-made file is gone");
        // Thin disks do not claim space up front.
        create(&p, 64 << 20, DiskFormat::Raw, Provisioning::Thin).unwrap();
        // Growing a thick disk beyond the space fails and keeps the old size.
        let t = fs.0.path().join("thick.raw");
        create(&t, 2 << 20, DiskFormat::Raw, Provisioning::Thick).unwrap();
        let e = grow(&t, DiskFormat::Raw, 32 << 20).unwrap_err();
        assert!(matches!(e, DiskError::NoSpace { .. }), "{e}");
        assert_eq!(std::fs::metadata(&t).unwrap().len(), 2 << 20);
    }

    #[test]
    fn a_missing_file_is_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let e = inspect(dir.path(), &spec("gone.raw", DiskFormat::Raw)).unwrap_err();
        assert!(
            matches!(e, DiskError::Missing(ref p) if p.ends_with("gone.raw")),
            "{e}"
        );
    }

    #[test]
    fn default_names_skip_taken_ones() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            next_file_name(dir.path(), "web", DiskFormat::Raw, &[]),
            "web.raw"
        );
        std::fs::write(dir.path().join("web.raw"), b"").unwrap();
        let taken = [spec("web_1.raw", DiskFormat::Raw)];
        assert_eq!(
            next_file_name(dir.path(), "web", DiskFormat::Raw, &taken),
            "web_2.raw"
        );
        let taken = [spec("web.raw", DiskFormat::Raw)];
        assert_eq!(
            next_file_name(dir.path(), "web", DiskFormat::Qcow2, &taken),
            "web_1.qcow2",
            "numbered by disk, not by format"
        );
    }

    #[test]
    fn device_mappings_name_block_devices_only() {
        let dir = tempfile::tempdir().unwrap();
        let map = dir.path().join("m.rdm");
        let e = map_device(&map, Path::new("/etc/hostname")).unwrap_err();
        assert!(e.to_string().contains("not a block device"), "{e}");
        let e = map_device(&map, Path::new("/dev/strata-none")).unwrap_err();
        assert!(matches!(e, DiskError::Missing(_)), "{e}");
        assert!(map_device(&map, Path::new("loop0")).is_err(), "relative");
        assert!(!map.exists(), "nothing written on refusal");
        std::fs::write(&map, "device = 3").unwrap();
        let e = mapped_device(&map).unwrap_err();
        assert!(e.to_string().contains("not a device mapping"), "{e}");
        let rdm = DiskSpec {
            file: "m.rdm".into(),
            format: DiskFormat::Rdm,
            read_only: false,
        };
        assert!(grow(&map, DiskFormat::Rdm, 1 << 20).is_err());
        assert!(inspect(dir.path(), &rdm).is_err());
    }
}
