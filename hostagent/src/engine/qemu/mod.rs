//! The qemu engine: each VM is a detached `qemu-system-x86_64` driven over QMP.

pub mod cmdline;
pub mod qmp;

use std::path::PathBuf;
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

impl VmEngine for QemuEngine {
    fn kind(&self) -> Engine {
        Engine::Qemu
    }

    async fn start(&self, vm: &VmContext) -> Result<u32, EngineError> {
        let (log, stderr) = super::prepare_start(vm, "qemu")?;
        let args = cmdline::qemu_args(vm, self.accel, self.host_khz);
        debug!(vm = %vm.name, ?args, "starting qemu");
        let child = tokio::process::Command::new(&self.binary)
            .args(&args)
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
}
