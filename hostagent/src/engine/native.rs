//! The native engine: each VM is a detached `strata-vmx` process (our own VMM, see
//! [`crate::vmm`]) driven over its line-JSON control socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_shared::model::{DiskFormat, Engine};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tracing::{debug, info};

use super::process;
use super::{log_tail, EngineError, VmContext, VmEngine};
use crate::vmm::control::{ControlRequest, ControlResponse, RunState};

/// Names the VMX binary goes by beside the agent binary: installed, then as built for the
/// end-to-end tests.
pub const VMX_NAMES: [&str; 2] = ["strata-vmx", "e2e-strata-vmx"];

/// The framebuffer every native VM gets (what its console shows).
pub const DISPLAY_GEOMETRY: &str = "640x480";

/// How long strata-vmx may take to answer its first status request.
/// Disks a native VM can have: one in the boot slot, one in the hot-add slot.
const MAX_DISKS: usize = 2;
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs VMs under strata-vmx.
#[derive(Debug, Clone)]
pub struct NativeEngine {
    binary: PathBuf,
}

impl NativeEngine {
    /// An engine running `binary`.
    pub fn new(binary: PathBuf) -> Self {
        Self { binary }
    }

    /// The VMX binary: `configured` when given, else the one next to the running executable
    /// with the same prefix (`e2e-strata-vmx` beside `e2e-strata-hostagent`), else
    /// `strata-vmx` or `e2e-strata-vmx` there.
    pub fn locate(configured: Option<&Path>) -> Result<PathBuf, String> {
        if let Some(p) = configured {
            return if p.is_file() {
                Ok(p.to_path_buf())
            } else {
                Err(format!("vmx_binary {} does not exist", p.display()))
            };
        }
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find our own binary: {e}"))?;
        let dir = exe.parent().unwrap_or(Path::new("."));
        // A binary named with a prefix (the end-to-end tests' `e2e-strata-hostagent`) looks
        // for the VMX with the same prefix first: it was built with it.
        let own = exe
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = own.strip_suffix("strata-hostagent").unwrap_or("");
        let preferred = format!("{prefix}strata-vmx");
        let found = std::iter::once(preferred.as_str())
            .chain(VMX_NAMES)
            .map(|n| dir.join(n))
            .find(|p| p.is_file());
        found.ok_or_else(|| format!("strata-vmx is not installed next to {}", exe.display()))
    }

    /// The binary this engine runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Where the VM's serial console, screen (RFB), control socket and pid file go (every
    /// start and resume).
    fn io_args(vm: &VmContext) -> Vec<String> {
        vec![
            "--serial-log".into(),
            vm.serial_log().display().to_string(),
            "--serial-socket".into(),
            vm.serial_socket().display().to_string(),
            "--control-socket".into(),
            vm.control_socket().display().to_string(),
            "--pid-file".into(),
            vm.pid_file().display().to_string(),
            "--vnc-socket".into(),
            crate::console::backend_socket(&vm.run_dir, vm.id)
                .display()
                .to_string(),
        ]
    }

    fn args(vm: &VmContext) -> Result<Vec<String>, EngineError> {
        let mut args = Vec::new();
        match vm.spec.nics.len() {
            0 => {}
            1 => {
                args.push("--net-tap".into());
                args.push(vm.spec.nics[0].tap.clone());
                args.push("--net-mac".into());
                args.push(super::nic_mac(vm, 0)?.to_string());
            }
            n => {
                return Err(EngineError::Config(format!(
                    "the native engine gives a VM one NIC, not {n}"
                )))
            }
        }
        if let Some(initrd) = &vm.initrd {
            args.push("--initrd".into());
            args.push(initrd.display().to_string());
        }
        args.extend([
            "--name".into(),
            vm.name.clone(),
            "--kernel".into(),
            vm.kernel.display().to_string(),
            "--cmdline".into(),
            vm.spec.boot.cmdline.clone(),
            "--memory-mib".into(),
            vm.spec.memory_mib.to_string(),
            "--vcpus".into(),
            vm.spec.vcpus.to_string(),
            "--framebuffer".into(),
            DISPLAY_GEOMETRY.into(),
        ]);
        args.extend(Self::io_args(vm));
        // Disk 0 in the boot slot, disk 1 in the hot-add slot (where it went when it was
        // added while the VM ran).
        for (i, (flag, ro_flag)) in [
            ("--disk", "--disk-read-only"),
            ("--hot-disk", "--hot-disk-read-only"),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(d) = vm.spec.disks.get(i) {
                args.push(flag.into());
                args.push(Self::disk_path(vm, i).display().to_string());
                if d.read_only {
                    args.push(ro_flag.into());
                }
            }
        }
        Ok(args)
    }

    /// Where disk `index` of the VM is (its data: a raw file or a mapped device).
    fn disk_path(vm: &VmContext, index: usize) -> std::path::PathBuf {
        vm.disk_paths.get(index).cloned().unwrap_or_else(|| {
            vm.dir.join(
                vm.spec
                    .disks
                    .get(index)
                    .map(|d| d.file.as_str())
                    .unwrap_or_default(),
            )
        })
    }

    /// Refuses disk layouts strata-vmx cannot serve: raw disks (or mapped devices) only,
    /// two at most (the boot slot and the hot-add slot).
    fn check_disks(vm: &VmContext) -> Result<(), EngineError> {
        if vm.spec.disks.len() > MAX_DISKS {
            return Err(EngineError::Config(format!(
                "the native engine serves {MAX_DISKS} disks per VM (a boot slot and a hot-add slot); {} has {} (use the qemu engine)",
                vm.name,
                vm.spec.disks.len()
            )));
        }
        if let Some(d) = vm.spec.disks.iter().find(|d| d.format == DiskFormat::Qcow2) {
            return Err(Self::not_raw(d));
        }
        Ok(())
    }

    fn not_raw(d: &strata_shared::model::disk::DiskSpec) -> EngineError {
        EngineError::Config(format!(
            "the native engine serves raw disks only; {} is {} (use the qemu engine)",
            d.file, d.format
        ))
    }

    /// Sends one request over the control socket and reads its answer.
    pub async fn request(
        socket: &Path,
        req: ControlRequest,
    ) -> Result<ControlResponse, EngineError> {
        let talk = async {
            let s = tokio::net::UnixStream::connect(socket).await?;
            let (r, mut w) = s.into_split();
            let mut line = serde_json::to_string(&req).map_err(std::io::Error::other)?;
            line.push('\n');
            w.write_all(line.as_bytes()).await?;
            let mut answer = String::new();
            BufReader::new(r).read_line(&mut answer).await?;
            serde_json::from_str::<ControlResponse>(&answer).map_err(std::io::Error::other)
        };
        let resp = tokio::time::timeout(Duration::from_secs(30), talk)
            .await
            .map_err(|_| EngineError::Control("strata-vmx did not answer within 30 s".into()))?
            .map_err(|e| EngineError::Control(format!("strata-vmx control socket: {e}")))?;
        if resp.ok {
            Ok(resp)
        } else {
            Err(EngineError::Control(
                resp.error.unwrap_or_else(|| "request refused".into()),
            ))
        }
    }
}

impl VmEngine for NativeEngine {
    fn kind(&self) -> Engine {
        Engine::Native
    }

    async fn start(&self, vm: &VmContext) -> Result<u32, EngineError> {
        Self::check_disks(vm)?;
        let args = Self::args(vm)?;
        self.spawn(vm, args).await
    }

    async fn attach(&self, vm: &VmContext) -> Option<u32> {
        let pid = process::read_pid_file(&vm.pid_file())?;
        let marker = vm.control_socket().to_string_lossy().into_owned();
        if !process::alive_with_arg(pid, &marker) {
            return None;
        }
        if let Err(e) = Self::request(&vm.control_socket(), ControlRequest::Status).await {
            debug!(vm = %vm.name, error = %e, "strata-vmx alive but its control socket fails; treating as running");
        }
        Some(pid)
    }

    async fn request_shutdown(&self, vm: &VmContext) -> Result<(), EngineError> {
        Self::request(&vm.control_socket(), ControlRequest::Shutdown)
            .await
            .map(|_| ())
    }

    async fn stop(&self, vm: &VmContext, pid: u32) -> Result<(), EngineError> {
        if let Err(e) = Self::request(&vm.control_socket(), ControlRequest::Stop).await {
            debug!(vm = %vm.name, error = %e, "control stop failed; killing the process");
            process::kill_hard(pid);
        }
        if !process::wait_gone(pid, Duration::from_secs(10)).await {
            process::kill_hard(pid);
            if !process::wait_gone(pid, Duration::from_secs(10)).await {
                return Err(EngineError::Control(format!(
                    "strata-vmx process {pid} did not exit"
                )));
            }
        }
        Ok(())
    }

    async fn reset(&self, vm: &VmContext) -> Result<(), EngineError> {
        Self::request(&vm.control_socket(), ControlRequest::Reset)
            .await
            .map(|_| ())
    }

    async fn console_send(&self, vm: &VmContext, data: &[u8]) -> Result<(), EngineError> {
        super::send_to_serial_socket(&vm.serial_socket(), data).await
    }

    async fn hot_add_disk(&self, vm: &VmContext, index: usize) -> Result<(), EngineError> {
        let d = vm.spec.disks.get(index).ok_or_else(|| {
            EngineError::Config(format!("{} has no disk number {index}", vm.name))
        })?;
        if d.format == DiskFormat::Qcow2 {
            return Err(Self::not_raw(d));
        }
        if index >= MAX_DISKS {
            return Err(EngineError::Config(format!(
                "the native engine serves {MAX_DISKS} disks per VM; {} has them (use the qemu engine)",
                vm.name
            )));
        }
        // strata-vmx refuses when its hot-add slot is taken, saying so.
        let req = ControlRequest::AttachDisk {
            path: std::path::absolute(Self::disk_path(vm, index))
                .map_err(|e| EngineError::Config(format!("disk {}: {e}", d.file)))?,
            read_only: d.read_only,
        };
        Self::request(&vm.control_socket(), req).await.map(|_| ())
    }

    async fn set_paused(&self, vm: &VmContext, paused: bool) -> Result<(), EngineError> {
        let req = if paused {
            ControlRequest::Pause
        } else {
            ControlRequest::Resume
        };
        Self::request(&vm.control_socket(), req).await.map(|_| ())
    }

    async fn is_paused(&self, vm: &VmContext) -> Result<bool, EngineError> {
        let r = Self::request(&vm.control_socket(), ControlRequest::Status).await?;
        Ok(r.state == Some(RunState::Paused))
    }

    async fn suspend(&self, vm: &VmContext, pid: u32, dir: &Path) -> Result<(), EngineError> {
        let was_paused = self.is_paused(vm).await?;
        // The snapshot parks the vCPUs and leaves them parked.
        let saved = Self::request(
            &vm.control_socket(),
            ControlRequest::Snapshot {
                dir: dir.to_path_buf(),
            },
        )
        .await;
        if let Err(e) = saved {
            if !was_paused {
                let _ = Self::request(&vm.control_socket(), ControlRequest::Resume).await;
            }
            return Err(e);
        }
        self.stop(vm, pid).await
    }

    async fn resume(&self, vm: &VmContext, dir: &Path) -> Result<u32, EngineError> {
        // Memory size, vCPUs, disk, NIC and display all come from the snapshot.
        let mut args = vec![
            "--name".into(),
            vm.name.clone(),
            "--restore".into(),
            dir.display().to_string(),
        ];
        args.extend(Self::io_args(vm));
        self.spawn(vm, args).await
    }
}

impl NativeEngine {
    /// Starts strata-vmx with `args` in its own session and waits until its control socket
    /// answers; returns its pid.
    async fn spawn(&self, vm: &VmContext, args: Vec<String>) -> Result<u32, EngineError> {
        let (log, stderr) = super::prepare_start(vm, "strata-vmx")?;
        debug!(vm = %vm.name, ?args, "starting strata-vmx");
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.args(&args)
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .kill_on_drop(false);
        // SAFETY: the closure runs in the forked child before exec and only calls setsid(2),
        // which is async-signal-safe; it touches no memory shared with the parent.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            EngineError::Spawn(format!("cannot run {}: {e}", self.binary.display()))
        })?;
        let pid = child
            .id()
            .ok_or_else(|| EngineError::Spawn("strata-vmx exited at once".into()))?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(EngineError::Spawn(format!(
                    "strata-vmx exited with {status}: {}",
                    log_tail(vm)
                )));
            }
            if Self::request(&vm.control_socket(), ControlRequest::Status)
                .await
                .is_ok()
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                process::kill_hard(pid);
                let _ = child.wait().await;
                return Err(EngineError::Spawn(format!(
                    "strata-vmx did not become ready within {} s: {}",
                    READY_TIMEOUT.as_secs(),
                    log_tail(vm)
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The VMX is in its own session and outlives us; while we live, reap it when it ends.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        info!(vm = %vm.name, pid, "strata-vmx started");
        Ok(pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::{BootSpec, NicSpec, VmSpec};

    fn vm(nics: Vec<NicSpec>) -> VmContext {
        VmContext {
            id: uuid::Uuid::nil(),
            name: "n".into(),
            dir: "/ds/n".into(),
            run_dir: "/run/s".into(),
            kernel: "/k".into(),
            initrd: None,
            spec: VmSpec {
                vcpus: 1,
                memory_mib: 64,
                engine: Engine::Native,
                machine: Default::default(),
                boot: BootSpec {
                    kernel: "/k".into(),
                    initrd: None,
                    cmdline: String::new(),
                },
                allocation: Default::default(),
                disks: Vec::new(),
                template: false,
                nics,
            },
            disk_paths: Vec::new(),
        }
    }

    #[test]
    fn a_nic_becomes_tap_and_mac_flags_and_a_second_is_refused() {
        let nic = |tap: &str| NicSpec {
            tap: tap.into(),
            mac: None,
        };
        let args = NativeEngine::args(&vm(vec![nic("tap7")])).unwrap();
        let at = args.iter().position(|a| a == "--net-tap").unwrap();
        assert_eq!(args[at + 1], "tap7");
        assert_eq!(args[at + 2], "--net-mac");
        assert!(args[at + 3].starts_with("52:54:00:"), "{args:?}");
        let fb = args.iter().position(|a| a == "--framebuffer").unwrap();
        assert_eq!(args[fb + 1], DISPLAY_GEOMETRY);
        assert!(!NativeEngine::args(&vm(vec![]))
            .unwrap()
            .contains(&"--net-tap".to_string()));
        let e = NativeEngine::args(&vm(vec![nic("a"), nic("b")])).unwrap_err();
        assert!(e.to_string().contains("one NIC"), "{e}");
    }
}
