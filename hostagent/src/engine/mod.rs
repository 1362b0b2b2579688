//! VM engines: what runs a VM's process. The qemu engine is here; the native engine
//! (strata-vmx) plugs in behind the same trait.

pub mod process;
pub mod qemu;

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
}
