//! Builds the small Linux test guest used by VM tests: Debian's cloud kernel plus a
//! busybox initramfs, both taken from Debian packages with `apt-get download` and cached.
//!
//! The guest's `/init` loads the virtio modules, starts busybox `acpid` so that an ACPI
//! power-button press (QMP `system_powerdown`) powers the guest off, prints
//! [`READY_MARKER`] on `/dev/ttyS0` and then runs an interactive shell on `/dev/ttyS0`
//! forever (prompt [`PROMPT`]; leaving the shell starts a new one).
//!
//! Layout of the cache (see [`default_cache_dir`]):
//!
//! ```text
//! <cache>/<kernel-version>/vmlinuz       the kernel (bzImage)
//! <cache>/<kernel-version>/initrd.cpio   uncompressed newc initramfs
//! <cache>/<kernel-version>/recipe        fingerprint of the initramfs recipe
//! <cache>/.lock                          serialises builders (flock)
//! ```
//!
//! Every file is written to a temporary name and renamed into place, and `recipe` is
//! written last, so an interrupted build never leaves a cache entry that looks complete.
//! Once an entry exists [`build`] returns it without running apt (delete the cache
//! directory to pick up a newer kernel).
//!
//! Measured with QEMU 7.2 / TCG (`-M microvm,pit=on,rtc=on`, 1 vCPU, 256 MiB):
//! - the marker appears ~2.1 s after QEMU starts; `system_powerdown` ends QEMU in ~40 ms
//!   (needs microvm's ACPI, on by default, and `button.ko` + `evdev.ko`);
//! - guest-initiated reboots need `reboot=t` on microvm (the default method hangs
//!   within a few reboots); `system_reset` works either way;
//! - a client connected to the serial socket must keep reading: QEMU sends one byte per
//!   socket write, so a client that reads nothing stalls the console after ~280 bytes
//!   (with no client connected, output goes on into the chardev `logfile`);
//! - a client typing must stay connected until the guest has read the input (wait for
//!   the echo): on disconnect QEMU drops what the 16550 had not taken yet;
//! - ash's line editing prints `ESC [ 6 n` (cursor-position query) after each prompt.

pub mod cpio;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};

use self::cpio::CpioWriter;

/// The line `/init` prints on `/dev/ttyS0` once the guest is up and its shell is ready.
pub const READY_MARKER: &str = "STRATA-GUEST-READY";
/// The prompt of the guest's serial shell.
pub const PROMPT: &str = "strata# ";
/// The Debian meta-package whose dependency names the cloud kernel package.
pub const KERNEL_META_PACKAGE: &str = "linux-image-cloud-amd64";
/// The Debian package that provides a static busybox at `/bin/busybox`.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// Kernel modules put into the initramfs and loaded by `/init`, in load (dependency)
/// order, as `(file stem, required)`. A required module must be in the kernel package
/// or listed in its `modules.builtin`; optional ones are skipped when absent.
pub const MODULES: &[(&str, bool)] = &[
    ("virtio_ring", true),
    ("virtio", true),
    ("virtio_mmio", true),
    ("virtio_pci_modern_dev", true),
    ("virtio_pci_legacy_dev", true),
    ("virtio_pci", true),
    ("virtio_blk", true),
    ("failover", true),
    ("net_failover", true),
    ("virtio_net", true),
    ("virtio_console", true),
    ("virtio_balloon", false),
    ("virtio-rng", false),
    ("virtio_input", false),
    // ACPI power button -> input event -> acpid -> poweroff.
    ("evdev", false),
    ("button", false),
];

/// Bump when the layout of the initramfs changes in a way the fingerprint does not see.
const FORMAT: u32 = 1;

/// The handler busybox acpid runs for the power button. busybox acpid maps the
/// `KEY_POWER` input event to the action `PWRF/00000080`, relative to its `-c` directory.
/// It must not write to the serial port: a host that stops reading the console would
/// block it and so the power-off.
const ACPI_POWER_HANDLER: &str = "#!/bin/sh\n\
# Run by busybox acpid on an ACPI power-button press.\n\
sync\n\
exec poweroff -f\n";

/// A built test guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    /// The kernel (bzImage), for `-kernel`.
    pub kernel: PathBuf,
    /// The initramfs (uncompressed cpio "newc"), for `-initrd`.
    pub initrd: PathBuf,
    /// The kernel release, e.g. `6.1.0-56-cloud-amd64`.
    pub kernel_version: String,
}

/// Why a guest image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GuestImageError {
    /// A tool the builder runs is not installed.
    #[error("{tool} not found: the guest image builder needs Debian's apt-get, apt-cache and dpkg-deb on PATH")]
    ToolNotFound {
        /// The program name.
        tool: &'static str,
    },
    /// A tool could not be started for another reason.
    #[error("could not run {tool}: {source}")]
    Spawn {
        /// The program name.
        tool: &'static str,
        /// The error from spawning it.
        source: io::Error,
    },
    /// The kernel meta-package could not be resolved to a versioned kernel package.
    #[error("could not find the cloud kernel package with `apt-cache depends {KERNEL_META_PACKAGE}`: {detail} (run scripts/setup as root first)")]
    ResolveKernel {
        /// What went wrong.
        detail: String,
    },
    /// `apt-get download` failed.
    #[error("apt-get download failed: {detail} (run scripts/setup as root first)")]
    AptDownload {
        /// apt's error output.
        detail: String,
    },
    /// `dpkg-deb -x` failed.
    #[error("dpkg-deb -x {} failed: {detail}", deb.display())]
    Extract {
        /// The package file.
        deb: PathBuf,
        /// dpkg-deb's error output.
        detail: String,
    },
    /// The downloaded packages lack a file the guest needs.
    #[error("the downloaded packages lack {what} (looked under {})", dir.display())]
    Missing {
        /// What is missing.
        what: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, GuestImageError>;

fn io_err(context: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> GuestImageError {
    move |source| GuestImageError::Io {
        context: context(),
        source,
    }
}

/// The cache directory for guest images: `$STRATA_GUEST_CACHE` if set, else
/// `<target>/strata-guest` where `<target>` is `$CARGO_TARGET_DIR` or the `target`
/// directory of the Cargo workspace that contains the current directory, else
/// `./target/strata-guest` (made absolute, so it can be handed to QEMU as is).
pub fn default_cache_dir() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if let Some(dir) = std::env::var_os("STRATA_GUEST_CACHE").filter(|v| !v.is_empty()) {
        return cwd.join(dir);
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        return cwd.join(dir).join("strata-guest");
    }
    find_workspace_root(&cwd)
        .unwrap_or(cwd)
        .join("target")
        .join("strata-guest")
}

/// The nearest ancestor of `start` (or `start` itself) whose Cargo.toml has a
/// `[workspace]` table.
fn find_workspace_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| {
            fs::read_to_string(dir.join("Cargo.toml"))
                .map(|text| is_workspace_manifest(&text))
                .unwrap_or(false)
        })
        .map(Path::to_path_buf)
}

fn is_workspace_manifest(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        line == "[workspace]" || line.starts_with("[workspace.")
    })
}

/// Builds the test guest into `cache_dir` (or returns the cached one at once).
///
/// Needs `apt-cache`, `apt-get` (with package lists that know the cloud kernel and
/// busybox-static) and `dpkg-deb`; runs as the current user, root or not. Safe to call
/// from several threads or processes at once: builders take a lock on `cache_dir/.lock`.
pub fn build(cache_dir: &Path) -> std::result::Result<GuestImage, GuestImageError> {
    let recipe = recipe_fingerprint();
    if let Some(image) = find_cached(cache_dir, &recipe) {
        return Ok(image);
    }
    fs::create_dir_all(cache_dir)
        .map_err(io_err(|| format!("cannot create {}", cache_dir.display())))?;
    let _lock = lock_cache(cache_dir)?;
    if let Some(image) = find_cached(cache_dir, &recipe) {
        return Ok(image);
    }
    remove_leftovers(cache_dir);

    let kernel_package = resolve_kernel_package()?;
    let version = kernel_package
        .strip_prefix("linux-image-")
        .unwrap_or(&kernel_package)
        .to_owned();
    tracing::info!(%kernel_package, cache = %cache_dir.display(), "building the test guest image");

    let work = WorkDir::create(cache_dir)?;
    apt_download(work.path(), &[&kernel_package, BUSYBOX_PACKAGE])?;
    let root = work.path().join("root");
    fs::create_dir(&root).map_err(io_err(|| format!("cannot create {}", root.display())))?;
    for deb in list_debs(work.path())? {
        extract_deb(&deb, &root)?;
    }
    let parts = collect_parts(&root, &version)?;

    let out_dir = cache_dir.join(&version);
    fs::create_dir_all(&out_dir)
        .map_err(io_err(|| format!("cannot create {}", out_dir.display())))?;
    let kernel = out_dir.join("vmlinuz");
    let initrd = out_dir.join("initrd.cpio");
    write_atomic(&kernel, |out| {
        let mut src = File::open(&parts.vmlinuz)?;
        io::copy(&mut src, out).map(drop)
    })?;
    write_atomic(&initrd, |out| write_initramfs(out, &parts))?;
    write_atomic(&out_dir.join("recipe"), |out| {
        out.write_all(recipe.as_bytes())
    })?;
    tracing::info!(kernel = %kernel.display(), initrd = %initrd.display(), "test guest image built");
    Ok(GuestImage {
        kernel,
        initrd,
        kernel_version: version,
    })
}

/// The `/init` script of the guest, loading `modules` (file stems) in the given order.
pub fn init_script(modules: &[&str]) -> String {
    let modules = modules.join(" ");
    format!(
        r#"#!/bin/busybox sh
# Strata test guest /init (written by strata-hostagent's guest_image builder).
/bin/busybox --install -s /bin
export PATH=/bin HOME=/root TERM=vt100 PS1='{PROMPT}'
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in {modules}; do
	[ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko
done
hostname strata-guest
# A clone deployed with a host name gets it on the kernel command line.
for a in $(cat /proc/cmdline); do
	case "$a" in strata.hostname=*) hostname "${{a#strata.hostname=}}" ;; esac
done
# Power button (QMP system_powerdown) -> /etc/acpi/PWRF/00000080 -> poweroff -f.
if [ -e /dev/input/event0 ]; then
	acpid -c /etc/acpi -l /tmp/acpid.log -p /tmp/acpid.pid
fi
cd /root
# A second shell on the first virtual console, when the VM has a screen (VGA): what a
# console viewer shows and types into.
if [ -c /dev/tty1 ] && grep -q 'console=tty0' /proc/cmdline; then
	(while :; do setsid sh -c 'exec sh -i </dev/tty1 >/dev/tty1 2>&1' || sleep 1; done) &
fi
# PID 1 keeps ttyS0 open (it is no session leader, so this does not make ttyS0 its
# controlling tty): input typed between two shells is kept, not dropped.
exec 3<>/dev/ttyS0
echo {READY_MARKER} >&3
while :; do
	setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1' 3>&- || sleep 1
done
"#
    )
}

/// A fingerprint of everything that goes into the initramfs apart from the package
/// contents, so a changed recipe rebuilds the cache.
fn recipe_fingerprint() -> String {
    let names: Vec<&str> = MODULES.iter().map(|(name, _)| *name).collect();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [
        FORMAT.to_string(),
        init_script(&names),
        ACPI_POWER_HANDLER.to_owned(),
        format!("{MODULES:?}"),
    ];
    for part in &parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("strata-guest-recipe {FORMAT} {hash:016x}\n")
}

/// The newest complete cache entry built from `recipe`, if any.
fn find_cached(cache_dir: &Path, recipe: &str) -> Option<GuestImage> {
    let entries = fs::read_dir(cache_dir).ok()?;
    let mut found: Vec<GuestImage> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if name.starts_with('.') {
                return None;
            }
            let dir = entry.path();
            let kernel = dir.join("vmlinuz");
            let initrd = dir.join("initrd.cpio");
            let complete = fs::read_to_string(dir.join("recipe")).ok()? == recipe
                && kernel.is_file()
                && initrd.is_file();
            complete.then_some(GuestImage {
                kernel,
                initrd,
                kernel_version: name,
            })
        })
        .collect();
    found.sort_by(|a, b| version_cmp(&a.kernel_version, &b.kernel_version));
    found.pop()
}

/// Compares version strings with digit runs compared as numbers (`6.1.0-9` < `6.1.0-56`).
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, xa), (db, xb)) in ca.iter().zip(cb.iter()) {
        let ord = if *da && *db {
            let (ta, tb) = (xa.trim_start_matches('0'), xb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            xa.cmp(xb)
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

fn lock_cache(cache_dir: &Path) -> Result<Flock<File>> {
    let path = cache_dir.join(".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(|| format!("cannot open {}", path.display())))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| GuestImageError::Io {
        context: format!("cannot lock {}", path.display()),
        source: io::Error::from(errno),
    })
}

/// Removes temporary files and build directories of interrupted builds (the caller
/// holds the lock, so nobody else is building).
fn remove_leftovers(cache_dir: &Path) {
    let Ok(entries) = fs::read_dir(cache_dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name.starts_with(".build-") {
            let _ = fs::remove_dir_all(&path);
        } else if !name.starts_with('.') && path.is_dir() {
            if let Ok(inner) = fs::read_dir(&path) {
                for file in inner.filter_map(|e| e.ok()) {
                    if file.file_name().to_string_lossy().contains(".tmp-") {
                        let _ = fs::remove_file(file.path());
                    }
                }
            }
        }
    }
}

/// A scratch directory inside the cache, removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create(cache_dir: &Path) -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = cache_dir.join(format!(".build-{}-{nanos}", std::process::id()));
        fs::create_dir(&path).map_err(io_err(|| format!("cannot create {}", path.display())))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), %err, "could not remove the build directory");
        }
    }
}

/// Runs `cmd` and returns its output, whatever its exit status.
fn run(tool: &'static str, cmd: &mut Command) -> Result<Output> {
    cmd.env("LC_ALL", "C").output().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            GuestImageError::ToolNotFound { tool }
        } else {
            GuestImageError::Spawn { tool, source }
        }
    })
}

/// The last few lines of a tool's error output, or its exit status.
fn failure_detail(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(4)..].join(" / ");
    if tail.is_empty() {
        format!("exited with {}", output.status)
    } else {
        format!("{tail} ({})", output.status)
    }
}

/// `apt-cache depends linux-image-cloud-amd64` → `linux-image-6.1.0-NN-cloud-amd64`.
fn resolve_kernel_package() -> Result<String> {
    let output = run(
        "apt-cache",
        Command::new("apt-cache").args(["depends", KERNEL_META_PACKAGE]),
    )?;
    if !output.status.success() {
        return Err(GuestImageError::ResolveKernel {
            detail: failure_detail(&output),
        });
    }
    parse_kernel_dependency(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| {
        GuestImageError::ResolveKernel {
            detail: "no linux-image-* dependency in its output".to_owned(),
        }
    })
}

fn parse_kernel_dependency(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let dep = line
            .trim()
            .trim_start_matches('|')
            .strip_prefix("Depends:")?
            .trim();
        let name = dep.split_whitespace().next()?;
        (name.starts_with("linux-image-") && name != KERNEL_META_PACKAGE && !name.starts_with('<'))
            .then(|| name.to_owned())
    })
}

fn apt_download(dir: &Path, packages: &[&str]) -> Result<()> {
    let output = run(
        "apt-get",
        Command::new("apt-get")
            .args(["download", "-q"])
            .args(packages)
            .current_dir(dir),
    )?;
    if !output.status.success() {
        return Err(GuestImageError::AptDownload {
            detail: failure_detail(&output),
        });
    }
    Ok(())
}

fn list_debs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut debs: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err(|| format!("cannot list {}", dir.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension() == Some(OsStr::new("deb")))
        .collect();
    debs.sort();
    if debs.is_empty() {
        return Err(GuestImageError::AptDownload {
            detail: format!("no .deb file appeared in {}", dir.display()),
        });
    }
    Ok(debs)
}

fn extract_deb(deb: &Path, root: &Path) -> Result<()> {
    let output = run(
        "dpkg-deb",
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(root),
    )?;
    if !output.status.success() {
        return Err(GuestImageError::Extract {
            deb: deb.to_path_buf(),
            detail: failure_detail(&output),
        });
    }
    Ok(())
}

/// What goes into the image, found in the extracted packages.
struct Parts {
    vmlinuz: PathBuf,
    busybox: PathBuf,
    /// (file stem, path) in load order.
    modules: Vec<(String, PathBuf)>,
}

fn collect_parts(root: &Path, version: &str) -> Result<Parts> {
    let boot = root.join("boot");
    let vmlinuz = boot.join(format!("vmlinuz-{version}"));
    if !vmlinuz.is_file() {
        return Err(GuestImageError::Missing {
            what: format!("boot/vmlinuz-{version}"),
            dir: root.to_path_buf(),
        });
    }
    let busybox = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_file())
        .ok_or_else(|| GuestImageError::Missing {
            what: "bin/busybox".to_owned(),
            dir: root.to_path_buf(),
        })?;

    let mod_root = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|p| root.join(p).join(version))
        .find(|p| p.is_dir())
        .ok_or_else(|| GuestImageError::Missing {
            what: format!("lib/modules/{version}"),
            dir: root.to_path_buf(),
        })?;
    let mut available = BTreeMap::new();
    index_modules(&mod_root.join("kernel"), &mut available)?;
    let builtin: BTreeSet<String> = fs::read_to_string(mod_root.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .filter_map(|f| f.strip_suffix(".ko"))
        .map(module_key)
        .collect();

    let mut modules = Vec::new();
    for (name, required) in MODULES {
        match available.get(&module_key(name)) {
            Some(path) => modules.push(((*name).to_owned(), path.clone())),
            None if builtin.contains(&module_key(name)) => {
                tracing::debug!(module = name, "built into the kernel");
            }
            None if *required => {
                return Err(GuestImageError::Missing {
                    what: format!(
                        "kernel module {name}.ko (uncompressed; not in modules.builtin either)"
                    ),
                    dir: mod_root,
                });
            }
            None => tracing::debug!(module = name, "optional module not found, skipped"),
        }
    }
    Ok(Parts {
        vmlinuz,
        busybox,
        modules,
    })
}

/// Module names treat `-` and `_` alike.
fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

/// Maps the module name of every plain `.ko` below `dir` to its path.
fn index_modules(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(io_err(|| format!("cannot list {}", dir.display())))?;
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            index_modules(&path, out)?;
        } else if let Some(stem) = path
            .file_name()
            .and_then(OsStr::to_str)
            .and_then(|n| n.strip_suffix(".ko"))
        {
            out.insert(module_key(stem), path.clone());
        }
    }
    Ok(())
}

fn write_initramfs(out: &mut BufWriter<File>, parts: &Parts) -> io::Result<()> {
    let busybox = fs::read(&parts.busybox)?;
    let names: Vec<&str> = parts.modules.iter().map(|(n, _)| n.as_str()).collect();
    let mut cpio = CpioWriter::new(out);
    for dir in ["bin", "dev", "proc", "sys", "tmp", "etc", "lib/modules"] {
        cpio.dir(dir, 0o755)?;
    }
    cpio.dir("root", 0o700)?;
    cpio.char_dev("dev/console", 0o600, 5, 1)?;
    cpio.char_dev("dev/ttyS0", 0o660, 4, 64)?;
    cpio.char_dev("dev/null", 0o666, 1, 3)?;
    cpio.file("bin/busybox", 0o755, &busybox)?;
    cpio.symlink("bin/sh", "busybox")?;
    for (name, path) in &parts.modules {
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, &fs::read(path)?)?;
    }
    cpio.file(
        "etc/acpi/PWRF/00000080",
        0o755,
        ACPI_POWER_HANDLER.as_bytes(),
    )?;
    cpio.file("init", 0o755, init_script(&names).as_bytes())?;
    cpio.finish()?;
    Ok(())
}

/// Writes `path` through a temporary file in the same directory and renames it into
/// place, so readers see either the old file or the complete new one.
fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut out = BufWriter::new(File::create(&tmp)?);
        fill(&mut out)?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(GuestImageError::Io {
            context: format!("cannot write {}", path.display()),
            source,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_names() -> Vec<&'static str> {
        MODULES.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn init_script_prints_the_marker_on_ttys0_and_runs_a_shell_there() {
        let script = init_script(&all_names());
        assert!(script.starts_with("#!/bin/busybox sh\n"));
        assert!(script.contains("exec 3<>/dev/ttyS0"));
        assert!(script.contains(&format!("echo {READY_MARKER} >&3")));
        assert!(script.contains("mount -t devtmpfs devtmpfs /dev"));
        assert!(script.contains("/bin/busybox --install -s /bin"));
        assert!(script.contains(&format!("PS1='{PROMPT}'")));
        assert!(script.contains("acpid -c /etc/acpi"));
        // The marker comes after module loading and acpid, before the shell loop.
        let pos = |needle: &str| script.find(needle).unwrap_or(usize::MAX);
        assert!(pos("insmod") < pos("acpid -c"));
        assert!(pos("acpid -c") < pos(READY_MARKER));
        let serial_loop = pos("while :; do\n\tsetsid sh -c 'exec sh -i </dev/ttyS0");
        assert!(pos(READY_MARKER) < serial_loop && serial_loop < script.len());
        assert!(script.contains("exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1"));
        // A second shell on the screen's console when the VM has one (the VNC console).
        assert!(script.contains("grep -q 'console=tty0' /proc/cmdline"));
        assert!(script.contains("exec sh -i </dev/tty1 >/dev/tty1 2>&1"));
    }

    #[test]
    fn init_script_loads_modules_in_dependency_order() {
        let script = init_script(&all_names());
        let line = script
            .lines()
            .find(|l| l.starts_with("for m in "))
            .expect("module loop");
        let listed: Vec<&str> = line
            .trim_start_matches("for m in ")
            .trim_end_matches("; do")
            .split(' ')
            .collect();
        assert_eq!(listed, all_names());
        let idx = |m: &str| listed.iter().position(|x| *x == m).expect(m);
        // Each module after all of its dependencies (from the 6.1 modinfo `depends=`).
        let deps: &[(&str, &[&str])] = &[
            ("virtio", &["virtio_ring"]),
            ("virtio_mmio", &["virtio", "virtio_ring"]),
            (
                "virtio_pci",
                &[
                    "virtio_ring",
                    "virtio",
                    "virtio_pci_modern_dev",
                    "virtio_pci_legacy_dev",
                ],
            ),
            ("virtio_blk", &["virtio", "virtio_ring"]),
            ("net_failover", &["failover"]),
            ("virtio_net", &["virtio_ring", "virtio", "net_failover"]),
            ("virtio_console", &["virtio", "virtio_ring"]),
            ("virtio_balloon", &["virtio", "virtio_ring"]),
            ("virtio-rng", &["virtio", "virtio_ring"]),
            ("virtio_input", &["virtio", "virtio_ring"]),
        ];
        for (module, needs) in deps {
            for need in *needs {
                assert!(idx(need) < idx(module), "{need} must load before {module}");
            }
        }
        assert_eq!(listed[..2], ["virtio_ring", "virtio"]);
        assert!(idx("evdev") < idx("button"));
    }

    #[test]
    fn acpi_handler_powers_off_without_init() {
        assert!(ACPI_POWER_HANDLER.starts_with("#!/bin/sh\n"));
        // PID 1 is a shell, not an init: poweroff must not signal it.
        assert!(ACPI_POWER_HANDLER.contains("poweroff -f"));
        // A stalled console must not block the power-off.
        assert!(!ACPI_POWER_HANDLER.contains("ttyS0"));
    }

    #[test]
    fn kernel_dependency_is_parsed() {
        let text = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(
            parse_kernel_dependency(text).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        let alt =
            "linux-image-cloud-amd64\n |Depends: linux-image-6.1.0-9-cloud-amd64\n  Depends: foo\n";
        assert_eq!(
            parse_kernel_dependency(alt).as_deref(),
            Some("linux-image-6.1.0-9-cloud-amd64")
        );
        assert_eq!(
            parse_kernel_dependency("linux-image-cloud-amd64\n  Depends: <linux-image-x>\n"),
            None
        );
        assert_eq!(parse_kernel_dependency(""), None);
    }

    #[test]
    fn versions_compare_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(
            version_cmp("6.1.0-9-cloud-amd64", "6.1.0-56-cloud-amd64"),
            Less
        );
        assert_eq!(
            version_cmp("6.10.0-1-cloud-amd64", "6.9.0-1-cloud-amd64"),
            Greater
        );
        assert_eq!(
            version_cmp("6.1.0-56-cloud-amd64", "6.1.0-56-cloud-amd64"),
            Equal
        );
    }

    #[test]
    fn workspace_manifest_detection() {
        assert!(is_workspace_manifest("[workspace]\nmembers = []\n"));
        assert!(is_workspace_manifest("[package]\n[workspace.lints.rust]\n"));
        assert!(!is_workspace_manifest("[package]\nname = \"x\"\n"));
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        let member = ws.join("member").join("src");
        fs::create_dir_all(&member).expect("mkdir");
        fs::write(ws.join("Cargo.toml"), "[workspace]\n").expect("write");
        fs::write(ws.join("member/Cargo.toml"), "[package]\n").expect("write");
        assert_eq!(find_workspace_root(&member).as_deref(), Some(ws.as_path()));
    }

    #[test]
    fn cache_hit_needs_all_files_and_the_current_recipe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let recipe = recipe_fingerprint();
        let ver = dir.path().join("6.1.0-56-cloud-amd64");
        fs::create_dir_all(&ver).expect("mkdir");
        assert!(find_cached(dir.path(), &recipe).is_none());
        fs::write(ver.join("vmlinuz"), b"k").expect("write");
        fs::write(ver.join("initrd.cpio"), b"i").expect("write");
        assert!(find_cached(dir.path(), &recipe).is_none(), "no recipe yet");
        fs::write(ver.join("recipe"), b"old recipe").expect("write");
        assert!(find_cached(dir.path(), &recipe).is_none(), "stale recipe");
        fs::write(ver.join("recipe"), &recipe).expect("write");
        let image = find_cached(dir.path(), &recipe).expect("cached");
        assert_eq!(image.kernel_version, "6.1.0-56-cloud-amd64");
        assert_eq!(image.kernel, ver.join("vmlinuz"));
        assert_eq!(image.initrd, ver.join("initrd.cpio"));
        // A build directory or temp file is never taken for an entry.
        fs::create_dir_all(dir.path().join(".build-1-2")).expect("mkdir");
        assert_eq!(
            find_cached(dir.path(), &recipe).map(|i| i.kernel_version),
            Some("6.1.0-56-cloud-amd64".to_owned())
        );
    }

    #[test]
    fn atomic_write_leaves_no_file_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("initrd.cpio");
        let err = write_atomic(&path, |out| {
            out.write_all(b"partial")?;
            Err(io::Error::other("interrupted"))
        });
        assert!(err.is_err());
        assert!(!path.exists());
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 0);
        write_atomic(&path, |out| out.write_all(b"whole")).expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"whole");
    }
}
