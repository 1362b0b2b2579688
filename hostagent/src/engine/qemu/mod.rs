//! The qemu engine: each VM is a detached `qemu-system-x86_64` driven over QMP.

pub mod cmdline;
pub mod qmp;

use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_shared::model::Engine;
use tracing::{debug, info};

use super::process;
use super::{log_tail, EngineError, VmContext, VmEngine};
pub use cmdline::Accel;

/// Runs VMs under QEMU.
#[derive(Debug, Clone)]
pub struct QemuEngine {
    binary: PathBuf,
    accel: Accel,
    host_khz: u32,
}

impl QemuEngine {
    /// An engine using `binary`, KVM when `hardware_virt`, TCG otherwise.
    pub fn new(binary: PathBuf, hardware_virt: bool, host_khz: u32) -> Self {
        let accel = if hardware_virt {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        Self {
            binary,
            accel,
            host_khz,
        }
    }

    /// `qemu-system-x86_64 --version`'s first line, when the binary runs.
    pub fn version(&self) -> Option<String> {
        let out = std::process::Command::new(&self.binary)
            .arg("--version")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().next().map(|l| l.trim().to_string())
    }
}

impl QemuEngine {
    /// Runs QEMU with `args` (it daemonizes) and returns the pid it wrote.
    async fn spawn(&self, vm: &VmContext, args: &[std::ffi::OsString]) -> Result<u32, EngineError> {
        let (log, stderr) = super::prepare_start(vm, "qemu")?;
        debug!(vm = %vm.name, ?args, "starting qemu");
        let child = tokio::process::Command::new(&self.binary)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .kill_on_drop(true)
            .status();
        let status = tokio::time::timeout(Duration::from_secs(60), child)
            .await
            .map_err(|_| EngineError::Spawn("qemu did not finish starting within 60 s".into()))?
            .map_err(|e| {
                EngineError::Spawn(format!("cannot run {}: {e}", self.binary.display()))
            })?;
        if !status.success() {
            return Err(EngineError::Spawn(format!(
                "qemu exited with {status}: {}",
                log_tail(vm)
            )));
        }
        let pid = process::read_pid_file(&vm.pid_file())
            .ok_or_else(|| EngineError::Spawn("qemu started but wrote no pid file".into()))?;
        Ok(pid)
    }
}

impl VmEngine for QemuEngine {
    fn kind(&self) -> Engine {
        Engine::Qemu
    }

    async fn start(&self, vm: &VmContext) -> Result<u32, EngineError> {
        let args = cmdline::qemu_args(vm, self.accel, self.host_khz);
        let pid = self.spawn(vm, &args).await?;
        info!(vm = %vm.name, pid, accel = ?self.accel, "qemu started");
        Ok(pid)
    }

    async fn attach(&self, vm: &VmContext) -> Option<u32> {
        let pid = process::read_pid_file(&vm.pid_file())?;
        let marker = vm.control_socket().to_string_lossy().into_owned();
        if !process::alive_with_arg(pid, &marker) {
            return None;
        }
        match qmp::execute_once(&vm.control_socket(), "query-status", None).await {
            Ok(_) => Some(pid),
            Err(e) => {
                debug!(vm = %vm.name, error = %e, "qemu process alive but QMP unreachable; treating as running");
                Some(pid)
            }
        }
    }

    async fn request_shutdown(&self, vm: &VmContext) -> Result<(), EngineError> {
        qmp::execute_once(&vm.control_socket(), "system_powerdown", None)
            .await
            .map(|_| ())
    }

    async fn stop(&self, vm: &VmContext, pid: u32) -> Result<(), EngineError> {
        if let Err(e) = qmp::execute_once(&vm.control_socket(), "quit", None).await {
            debug!(vm = %vm.name, error = %e, "QMP quit failed; killing the process");
            process::kill_hard(pid);
        }
        if !process::wait_gone(pid, Duration::from_secs(10)).await {
            process::kill_hard(pid);
            if !process::wait_gone(pid, Duration::from_secs(10)).await {
                return Err(EngineError::Control(format!(
                    "qemu process {pid} did not exit"
                )));
            }
        }
        Ok(())
    }

    async fn reset(&self, vm: &VmContext) -> Result<(), EngineError> {
        qmp::execute_once(&vm.control_socket(), "system_reset", None)
            .await
            .map(|_| ())
    }

    async fn console_send(&self, vm: &VmContext, data: &[u8]) -> Result<(), EngineError> {
        super::send_to_serial_socket(&vm.serial_socket(), data).await
    }

    async fn hot_add_disk(&self, vm: &VmContext, index: usize) -> Result<(), EngineError> {
        if vm.spec.machine != strata_shared::model::Machine::Q35 {
            return Err(EngineError::Config(format!(
                "{} is a microvm, which has no hot-plug: power it off to add the disk (or use machine q35)",
                vm.name
            )));
        }
        let (Some(d), Some(path)) = (vm.spec.disks.get(index), vm.disk_paths.get(index)) else {
            return Err(EngineError::Config("no such disk".into()));
        };
        let node = format!("hot{index}");
        let driver = if d.format == strata_shared::model::DiskFormat::Rdm {
            "host_device"
        } else {
            "file"
        };
        let mut q = qmp::Qmp::connect(&vm.control_socket()).await?;
        q.execute(
            "blockdev-add",
            Some(serde_json::json!({
                "driver": d.format.data_format(),
                "node-name": node,
                "read-only": d.read_only,
                "file": { "driver": driver, "filename": path.to_string_lossy() },
            })),
        )
        .await?;
        // The first free spare root port takes it.
        let mut last = None;
        for port in 0..cmdline::HOTPLUG_PORTS {
            let r = q
                .execute(
                    "device_add",
                    Some(serde_json::json!({
                        "driver": "virtio-blk-pci",
                        "drive": node,
                        "bus": format!("hp{port}"),
                        "id": format!("disk{index}"),
                        "serial": format!("strata-disk{index}"),
                    })),
                )
                .await;
            match r {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        let _ = q
            .execute(
                "blockdev-del",
                Some(serde_json::json!({ "node-name": node })),
            )
            .await;
        Err(last.unwrap_or_else(|| EngineError::Control("no free hot-plug port".into())))
    }

    async fn set_paused(&self, vm: &VmContext, paused: bool) -> Result<(), EngineError> {
        let cmd = if paused { "stop" } else { "cont" };
        qmp::execute_once(&vm.control_socket(), cmd, None)
            .await
            .map(|_| ())
    }

    async fn is_paused(&self, vm: &VmContext) -> Result<bool, EngineError> {
        let r = qmp::execute_once(&vm.control_socket(), "query-status", None).await?;
        Ok(r.get("running").and_then(serde_json::Value::as_bool) == Some(false))
    }

    async fn suspend(&self, vm: &VmContext, pid: u32, dir: &Path) -> Result<(), EngineError> {
        let file = dir.join(super::saved_state::QEMU_STATE_FILE);
        let mut q = qmp::Qmp::connect(&vm.control_socket()).await?;
        let status = q.execute("query-status", None).await?;
        let was_running = status.get("running").and_then(serde_json::Value::as_bool) == Some(true);
        q.execute("stop", None).await?;
        let saved = save_stream(&mut q, &file).await;
        if let Err(e) = saved {
            if was_running {
                let _ = q.execute("cont", None).await;
            }
            return Err(e);
        }
        drop(q);
        self.stop(vm, pid).await?;
        // The stream's file appears (renamed from its .part) only once `cat` has written
        // all of it, which may be a moment after QEMU reported the migration complete.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !file.is_file() {
            if tokio::time::Instant::now() > deadline {
                return Err(EngineError::Control(format!(
                    "the saved state {} was not completed",
                    file.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // On disk before the save counts as complete.
        std::fs::File::open(&file)
            .and_then(|f| f.sync_all())
            .map_err(|source| EngineError::Io {
                what: format!("syncing {}", file.display()),
                source,
            })
    }

    async fn resume(&self, vm: &VmContext, dir: &Path) -> Result<u32, EngineError> {
        let file = dir.join(super::saved_state::QEMU_STATE_FILE);
        if !file.is_file() {
            return Err(EngineError::Config(format!(
                "the saved state {} is missing",
                file.display()
            )));
        }
        check_stream_header(&file)?;
        let mut args = cmdline::qemu_args(vm, self.accel, self.host_khz);
        args.push("-incoming".into());
        args.push(format!("exec:cat {}", shell_quote(&file.to_string_lossy())).into());
        let pid = self.spawn(vm, &args).await?;
        // The stream loads in the background; QEMU exits when it cannot load it.
        let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
        loop {
            if !process::alive(pid) {
                // A daemonized QEMU's own error message goes nowhere.
                return Err(EngineError::Spawn(format!(
                    "qemu exited while loading the saved state {} (it is damaged or incomplete)",
                    file.display()
                )));
            }
            if let Ok(st) = qmp::execute_once(&vm.control_socket(), "query-status", None).await {
                match st.get("status").and_then(serde_json::Value::as_str) {
                    Some("running") => break,
                    // Saved while stopped, so it comes back stopped.
                    Some("paused") | Some("prelaunch") => {
                        qmp::execute_once(&vm.control_socket(), "cont", None).await?;
                        break;
                    }
                    _ => {}
                }
            }
            if tokio::time::Instant::now() > deadline {
                process::kill_hard(pid);
                return Err(EngineError::Spawn(format!(
                    "qemu did not load the saved state within {} s: {}",
                    LOAD_TIMEOUT.as_secs(),
                    log_tail(vm)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        info!(vm = %vm.name, pid, "qemu resumed from its saved state");
        Ok(pid)
    }
}

/// How long QEMU may take to load a saved state.
const LOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Writes the (stopped) VM's migration stream into `file` (through `file.part`, renamed when
/// `cat` has written all of it) and waits until QEMU reports the migration complete.
async fn save_stream(q: &mut qmp::Qmp, file: &Path) -> Result<(), EngineError> {
    // A file is no network link: no bandwidth cap (the default is 128 MiB/s).
    q.execute(
        "migrate-set-parameters",
        Some(serde_json::json!({ "max-bandwidth": 64u64 << 30 })),
    )
    .await?;
    let part = file.with_extension("part");
    let uri = format!(
        "exec:cat > {part} && mv {part} {file}",
        part = shell_quote(&part.to_string_lossy()),
        file = shell_quote(&file.to_string_lossy())
    );
    q.execute("migrate", Some(serde_json::json!({ "uri": uri })))
        .await?;
    let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
    loop {
        let m = q.execute("query-migrate", None).await?;
        match m.get("status").and_then(serde_json::Value::as_str) {
            Some("completed") => return Ok(()),
            Some(s @ ("failed" | "cancelled")) => {
                let why = m
                    .get("error-desc")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("no reason given");
                return Err(EngineError::Control(format!(
                    "saving the VM's state {s}: {why}"
                )));
            }
            _ => {}
        }
        if tokio::time::Instant::now() > deadline {
            let _ = q.execute("migrate_cancel", None).await;
            return Err(EngineError::Control(format!(
                "saving the VM's state did not finish within {} s",
                LOAD_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Refuses a file that does not start like a QEMU migration stream (magic "QEVM",
/// version 3).
fn check_stream_header(file: &Path) -> Result<(), EngineError> {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(file)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|source| EngineError::Io {
            what: format!("reading the saved state {}", file.display()),
            source,
        })?;
    if &head != b"QEVM\0\0\0\x03" {
        return Err(EngineError::Config(format!(
            "the saved state {} is not a QEMU migration stream",
            file.display()
        )));
    }
    Ok(())
}

/// Quotes a path for /bin/sh (QEMU runs `exec:` URIs through it).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("/it's"), "'/it'\\''s'");
    }

    #[test]
    fn only_a_migration_stream_header_passes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, b"QEVM\0\0\0\x03rest").unwrap();
        check_stream_header(&f).unwrap();
        std::fs::write(&f, b"junk-junk").unwrap();
        assert!(check_stream_header(&f).is_err());
        std::fs::write(&f, b"QE").unwrap();
        assert!(check_stream_header(&f).is_err());
    }
}
