//! VM engines: what runs a VM's process: the native engine (strata-vmx, our own VMM) and
//! the qemu engine, behind one trait.

pub mod native;
pub mod process;
pub mod qemu;
pub mod saved_state;

use std::future::Future;
use std::path::{Path, PathBuf};

use strata_shared::model::{Engine, VmSpec};
use uuid::Uuid;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The VM's configuration cannot run on this engine or host.
    #[error("{0}")]
    Config(String),
    /// The VMM process did not start.
    #[error("the VM process failed to start: {0}")]
    Spawn(String),
    /// The VMM's control channel failed.
    #[error("the VM's control channel failed: {0}")]
    Control(String),
    /// The VM is not running.
    #[error("the VM is not running")]
    NotRunning,
    /// File or socket I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Everything an engine needs to know about one VM.
#[derive(Debug, Clone)]
pub struct VmContext {
    /// VM id.
    pub id: Uuid,
    /// VM name.
    pub name: String,
    /// The VM's directory on its datastore.
    pub dir: PathBuf,
    /// Directory for the VM's sockets (short paths; unix sockets are limited to 107 bytes).
    pub run_dir: PathBuf,
    /// Kernel, resolved to an absolute path.
    pub kernel: PathBuf,
    /// Initramfs, resolved.
    pub initrd: Option<PathBuf>,
    /// Configuration.
    pub spec: VmSpec,
    /// Where each disk's data is (its file, or a mapped device), in `spec.disks` order.
    pub disk_paths: Vec<PathBuf>,
}

impl VmContext {
    /// The serial console log (all guest console output).
    pub fn serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }
    /// The VMM's own log (its stderr).
    pub fn vmm_log(&self) -> PathBuf {
        self.dir.join("vmm.log")
    }
    /// The VMM's pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("vmm.pid")
    }
    /// The control socket (QMP for the qemu engine).
    pub fn control_socket(&self) -> PathBuf {
        self.run_dir.join(format!("{}.ctl", self.id.simple()))
    }
    /// The serial console input socket.
    pub fn serial_socket(&self) -> PathBuf {
        self.run_dir.join(format!("{}.serial", self.id.simple()))
    }
}

/// The MAC address of the VM's NIC number `index`: the one its spec names, else one
/// derived from the VM id and the index (stable across power cycles and hosts).
pub fn nic_mac(vm: &VmContext, index: usize) -> Result<crate::net::mac::MacAddr, EngineError> {
    let nic = vm
        .spec
        .nics
        .get(index)
        .ok_or_else(|| EngineError::Config(format!("the VM has no NIC {index}")))?;
    match &nic.mac {
        Some(m) => m.parse().map_err(EngineError::Config),
        None => {
            let mut seed = vm.id.as_bytes().to_vec();
            seed.extend_from_slice(&(index as u32).to_le_bytes());
            Ok(crate::net::mac::MacAddr::derived(&seed))
        }
    }
}

/// Refuses socket paths the kernel cannot bind.
pub fn check_socket_path(p: &Path) -> Result<(), EngineError> {
    if p.as_os_str().len() > 107 {
        return Err(EngineError::Config(format!(
            "socket path {} is longer than 107 bytes; use a shorter data directory",
            p.display()
        )));
    }
    Ok(())
}

/// A VM engine.
pub trait VmEngine: Send + Sync {
    /// Which engine this is.
    fn kind(&self) -> Engine;
    /// Starts the VM's process (detached, so it outlives the agent); returns its pid.
    fn start(&self, vm: &VmContext) -> impl Future<Output = Result<u32, EngineError>> + Send;
    /// Finds a VM process left running by an earlier agent; returns its pid.
    fn attach(&self, vm: &VmContext) -> impl Future<Output = Option<u32>> + Send;
    /// Asks the guest to shut down (ACPI power button); does not wait.
    fn request_shutdown(
        &self,
        vm: &VmContext,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Stops the VM at once and waits until its process is gone.
    fn stop(
        &self,
        vm: &VmContext,
        pid: u32,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Resets the virtual machine.
    fn reset(&self, vm: &VmContext) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Types bytes into the serial console.
    fn console_send(
        &self,
        vm: &VmContext,
        data: &[u8],
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Plugs disk number `index` of `vm.spec.disks` (data at `vm.disk_paths[index]`) into the
    /// running VM.
    fn hot_add_disk(
        &self,
        vm: &VmContext,
        index: usize,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Stops (`true`) or restarts (`false`) the VM's vCPUs; the process stays.
    fn set_paused(
        &self,
        vm: &VmContext,
        paused: bool,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Whether the VM's vCPUs are stopped.
    fn is_paused(&self, vm: &VmContext) -> impl Future<Output = Result<bool, EngineError>> + Send;
    /// Stops the vCPUs, writes the VM's full state (vCPUs, devices, memory) into `dir`
    /// (empty, existing) and ends the process. On failure the VM is left running.
    fn suspend(
        &self,
        vm: &VmContext,
        pid: u32,
        dir: &Path,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Starts a new process from the state [`VmEngine::suspend`] wrote into `dir` and lets
    /// the guest run on; returns its pid.
    fn resume(
        &self,
        vm: &VmContext,
        dir: &Path,
    ) -> impl Future<Output = Result<u32, EngineError>> + Send;
}

/// Types `data` into a VM's serial input socket (both engines serve one), paced for a
/// 16-byte UART FIFO, and drains whatever the other end echoes meanwhile.
pub async fn send_to_serial_socket(path: &Path, data: &[u8]) -> Result<(), EngineError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::UnixStream::connect(path),
    )
    .await
    .map_err(|_| EngineError::Control("serial console connect timed out".into()))?
    .map_err(|e| EngineError::Control(format!("cannot open the serial console: {e}")))?;
    // Pace the bytes a little: a guest UART has a 16-byte FIFO.
    for chunk in data.chunks(16) {
        s.write_all(chunk).await.map_err(|e| {
            EngineError::Control(format!("writing to the serial console failed: {e}"))
        })?;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // Stay connected (draining the echo, so the guest never stalls on us) until the guest
    // has taken the input: QEMU drops what it has not read yet when we hang up.
    let linger = std::time::Duration::from_millis(300 + 2 * data.len() as u64);
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(linger, async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(())
}

/// Why a VM process ended, from the last start's lines of its vmm.log: `Some(reason)` when
/// the VMM reported a crash (strata-vmx writes `strata-vmx: crashed: REASON`).
pub fn crash_reason(vmm_log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(vmm_log).ok()?;
    let since = text.rsplit("=== ").next().unwrap_or("");
    since
        .lines()
        .rev()
        .find_map(|l| l.split_once("crashed: ").map(|(_, r)| r.trim().to_string()))
}

/// One of the engines, chosen per VM.
#[derive(Debug, Clone, Copy)]
pub enum AnyEngine<'a> {
    /// QEMU.
    Qemu(&'a qemu::QemuEngine),
    /// strata-vmx.
    Native(&'a native::NativeEngine),
}

impl VmEngine for AnyEngine<'_> {
    fn kind(&self) -> Engine {
        match self {
            Self::Qemu(e) => e.kind(),
            Self::Native(e) => e.kind(),
        }
    }

    async fn start(&self, vm: &VmContext) -> Result<u32, EngineError> {
        match self {
            Self::Qemu(e) => e.start(vm).await,
            Self::Native(e) => e.start(vm).await,
        }
    }

    async fn attach(&self, vm: &VmContext) -> Option<u32> {
        match self {
            Self::Qemu(e) => e.attach(vm).await,
            Self::Native(e) => e.attach(vm).await,
        }
    }

    async fn request_shutdown(&self, vm: &VmContext) -> Result<(), EngineError> {
        match self {
            Self::Qemu(e) => e.request_shutdown(vm).await,
            Self::Native(e) => e.request_shutdown(vm).await,
        }
    }

    async fn stop(&self, vm: &VmContext, pid: u32) -> Result<(), EngineError> {
        match self {
            Self::Qemu(e) => e.stop(vm, pid).await,
            Self::Native(e) => e.stop(vm, pid).await,
        }
    }

    async fn reset(&self, vm: &VmContext) -> Result<(), EngineError> {
        match self {
            Self::Qemu(e) => e.reset(vm).await,
            Self::Native(e) => e.reset(vm).await,
        }
    }

    async fn console_send(&self, vm: &VmContext, data: &[u8]) -> Result<(), EngineError> {
        match self {
            Self::Qemu(e) => e.console_send(vm, data).await,
            Self::Native(e) => e.console_send(vm, data).await,
        }
    }

    async fn hot_add_disk(&self, vm: &VmContext, index: usize) -> Result<(), EngineError> {
        match self {
            Self::Qemu(e) => e.hot_add_disk(vm, index).await,
            Self::Native(e) => e.hot_add_disk(vm, index).await,
        }
    }

    async fn set_paused(&self, vm: &VmContext, paused: bool) -> Result<(), EngineError> {
        match self {
            Self::Qemu(e) => e.set_paused(vm, paused).await,
            Self::Native(e) => e.set_paused(vm, paused).await,
        }
    }

    async fn is_paused(&self, vm: &VmContext) -> Result<bool, EngineError> {
        match self {
            Self::Qemu(e) => e.is_paused(vm).await,
            Self::Native(e) => e.is_paused(vm).await,
        }
    }

    async fn suspend(&self, vm: &VmContext, pid: u32, dir: &Path) -> Result<(), EngineError> {
        match self {
            Self::Qemu(e) => e.suspend(vm, pid, dir).await,
            Self::Native(e) => e.suspend(vm, pid, dir).await,
        }
    }

    async fn resume(&self, vm: &VmContext, dir: &Path) -> Result<u32, EngineError> {
        match self {
            Self::Qemu(e) => e.resume(vm, dir).await,
            Self::Native(e) => e.resume(vm, dir).await,
        }
    }
}

/// Prepares a VM's start: checks socket paths, creates the run directory, removes stale
/// sockets and pid file, and opens vmm.log (marking a new start) for the VMM's stdout and
/// stderr.
pub fn prepare_start(
    vm: &VmContext,
    vmm: &str,
) -> Result<(std::fs::File, std::fs::File), EngineError> {
    use std::io::Write;
    check_socket_path(&vm.control_socket())?;
    check_socket_path(&vm.serial_socket())?;
    std::fs::create_dir_all(&vm.run_dir).map_err(|source| EngineError::Io {
        what: format!("creating {}", vm.run_dir.display()),
        source,
    })?;
    for stale in [vm.control_socket(), vm.serial_socket(), vm.pid_file()] {
        let _ = std::fs::remove_file(stale);
    }
    let open_err = |source| EngineError::Io {
        what: "opening vmm.log".into(),
        source,
    };
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(vm.vmm_log())
        .map_err(open_err)?;
    let _ = writeln!(log, "=== {vmm} start at {} ms", strata_shared::now_ms());
    let stderr = log.try_clone().map_err(open_err)?;
    Ok((log, stderr))
}

/// The last lines of a VM's vmm.log since its latest start, for error messages.
pub fn log_tail(vm: &VmContext) -> String {
    let text = std::fs::read_to_string(vm.vmm_log()).unwrap_or_default();
    let since = text.rsplit("=== ").next().unwrap_or("");
    let lines: Vec<&str> = since.lines().skip(1).collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() {
        "no error output".to_string()
    } else {
        tail.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_reason_comes_from_the_latest_start_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("vmm.log");
        std::fs::write(
            &log,
            "=== strata-vmx start at 1 ms\nstrata-vmx: crashed: old\n=== strata-vmx start at 2 ms\nINFO running\n",
        )
        .unwrap();
        assert_eq!(crash_reason(&log), None);
        std::fs::write(
            &log,
            "=== strata-vmx start at 2 ms\nINFO running\nstrata-vmx: crashed: vCPU 0: KVM internal error\n",
        )
        .unwrap();
        assert_eq!(
            crash_reason(&log).as_deref(),
            Some("vCPU 0: KVM internal error")
        );
        assert_eq!(crash_reason(&dir.path().join("none")), None);
    }
}
