//! The host agent's state and the VM operations its API exposes.

mod datastores;
mod disks;
mod files;
mod settings;
mod snapshots;
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_shared::api::agent::{AgentVmCreateParams, PowerOffResult};
use strata_shared::api::notifications;
use strata_shared::model::{
    ConsoleChunk, Engine, HostFacts, PowerState, PowerStateChange, VmInfo, VmSpec,
};
use strata_shared::rpc::{ErrorCode, Notification, RpcError};
use tokio::sync::broadcast;
use tracing::{info, warn};
use uuid::Uuid;

use crate::auth::Auth;
use crate::config::AgentConfig;
use crate::datastore::Datastore;
use crate::engine::native::NativeEngine;
use crate::engine::process;
use crate::engine::qemu::QemuEngine;
use crate::engine::{saved_state, AnyEngine, EngineError, VmContext, VmEngine};
use crate::facts::MachineFacts;
use crate::registry::{self, RunState, VmConfigFile, VmEntry};

/// Largest console read, bytes.
pub const MAX_CONSOLE_READ: u64 = 1 << 20;
/// Largest console write, bytes.
pub const MAX_CONSOLE_SEND: usize = 64 << 10;

/// The host agent.
pub struct Agent {
    /// This host's id.
    pub id: Uuid,
    /// Settings.
    pub config: AgentConfig,
    /// Credentials and sessions.
    pub auth: Auth,
    machine: MachineFacts,
    datastores: Vec<Datastore>,
    run_dir: PathBuf,
    qemu: QemuEngine,
    qemu_version: Option<String>,
    /// The native engine, or why this host cannot run it.
    native: Result<NativeEngine, String>,
    vms: Mutex<HashMap<Uuid, Arc<VmEntry>>>,
    notes: broadcast::Sender<Notification>,
    cgroups: crate::cgroups::Cgroups,
    resources: Mutex<strata_shared::model::HostResources>,
    leases: crate::datastore::lease::LeaseHolder,
    /// The manager that called last, and when.
    manager_contact: Mutex<Option<strata_shared::model::ManagerContact>>,
}

fn engine_err(e: EngineError) -> RpcError {
    match e {
        EngineError::Config(m) => RpcError::invalid(m),
        EngineError::NotRunning => RpcError::new(ErrorCode::InvalidState, "the VM is not running"),
        other => RpcError::internal(other.to_string()),
    }
}

impl Agent {
    /// Builds the agent: datastores, engines, and re-attaches to VMs left running.
    pub async fn new(id: Uuid, config: AgentConfig, auth: Auth) -> Result<Arc<Self>, String> {
        let machine = MachineFacts::read();
        let mut datastores = Vec::new();
        for (name, root) in config.effective_datastores() {
            std::fs::create_dir_all(&root)
                .map_err(|e| format!("datastore {name} at {}: {e}", root.display()))?;
            datastores.push(Datastore::new(&name, root));
        }
        let run_dir = config.data_dir.join("run");
        std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
        let qemu = QemuEngine::new(
            config.qemu_binary.clone(),
            machine.hardware_virtualization,
            machine.cpu_khz(),
        );
        let qemu_version = qemu.version();
        if qemu_version.is_none() {
            warn!(binary = %config.qemu_binary.display(), "QEMU is not installed; VMs on the qemu engine cannot power on");
        }
        let native = if crate::vmm::vstate::kvm::usable() {
            NativeEngine::locate(config.vmx_binary.as_deref()).map(NativeEngine::new)
        } else {
            Err("/dev/kvm is missing or not usable by the host agent".to_string())
        };
        match &native {
            Ok(n) => info!(binary = %n.binary().display(), "native engine available"),
            Err(why) => warn!(%why, "the native engine is not available"),
        }
        let (notes, _) = broadcast::channel(1024);
        let cgroups = crate::cgroups::Cgroups::new(
            crate::cgroups::Layout::detect(),
            id,
            u64::from(machine.cpu_mhz),
        );
        let resources = std::fs::read(config.data_dir.join("resources.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let machine_name = machine.hostname.clone();
        let lease_secs = config.lease_secs;
        let agent = Arc::new(Self {
            id,
            config,
            auth,
            machine,
            datastores,
            run_dir,
            qemu,
            qemu_version,
            native,
            vms: Mutex::new(HashMap::new()),
            notes,
            cgroups,
            resources: Mutex::new(resources),
            manager_contact: Mutex::new(None),
            leases: crate::datastore::lease::LeaseHolder {
                host: id,
                name: machine_name,
                timing: crate::datastore::lease::LeaseTiming::for_lease(Duration::from_secs(
                    lease_secs,
                )),
            },
        });
        // Enforce the last resource tree the manager sent, even if it never comes back.
        let stored = agent
            .resources
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        crate::cgroups::log_errors(&agent.cgroups.apply(&stored));
        for entry in registry::scan(&agent.datastores) {
            let entry = Arc::new(entry);
            if let Ok(ctx) = agent.context(&entry, false) {
                let mut engines = vec![AnyEngine::Qemu(&agent.qemu)];
                if let Ok(n) = &agent.native {
                    engines.insert(0, AnyEngine::Native(n));
                }
                for engine in engines {
                    if let Some(pid) = engine.attach(&ctx).await {
                        info!(vm = %entry.display_name(), pid, engine = %engine.kind(), "re-attached to a running VM");
                        entry.set_running(Some(RunState {
                            pid,
                            engine: engine.kind(),
                        }));
                        entry.set_paused(engine.is_paused(&ctx).await.unwrap_or(false));
                        break;
                    }
                }
            }
            agent.lock_vms().insert(entry.id, entry);
        }
        Ok(agent)
    }

    /// The engine a VM configured with `wanted` runs on here: `auto` is native where the CPU
    /// has hardware virtualisation (vmx/svm) and strata-vmx is usable, qemu otherwise.
    fn resolve_engine(&self, wanted: Engine) -> Result<Engine, RpcError> {
        match wanted {
            Engine::Qemu => Ok(Engine::Qemu),
            Engine::Native => match &self.native {
                Ok(_) => Ok(Engine::Native),
                Err(why) => Err(RpcError::new(
                    ErrorCode::Unavailable,
                    format!("the native engine is not available on this host: {why}"),
                )),
            },
            Engine::Auto if self.machine.hardware_virtualization && self.native.is_ok() => {
                Ok(Engine::Native)
            }
            Engine::Auto => Ok(Engine::Qemu),
        }
    }

    /// The engine object for a resolved engine kind.
    fn engine(&self, kind: Engine) -> Result<AnyEngine<'_>, RpcError> {
        match kind {
            Engine::Native => match &self.native {
                Ok(n) => Ok(AnyEngine::Native(n)),
                Err(why) => Err(RpcError::new(
                    ErrorCode::Unavailable,
                    format!("the native engine is not available on this host: {why}"),
                )),
            },
            Engine::Qemu | Engine::Auto => Ok(AnyEngine::Qemu(&self.qemu)),
        }
    }

    fn lock_vms(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<VmEntry>>> {
        self.vms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notifications for subscribers.
    pub fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.notes.subscribe()
    }

    /// Where other parts of the agent (the console gateway) publish notifications.
    pub fn notifier(&self) -> broadcast::Sender<Notification> {
        self.notes.clone()
    }

    /// The directory of the VMs' sockets.
    pub fn run_dir(&self) -> &std::path::Path {
        &self.run_dir
    }

    /// The serial console of VM `id` when it runs without a display device of its own (a
    /// QEMU microvm): its console shows the serial text instead.
    pub fn serial_only_console(&self, id: Uuid) -> Option<crate::console::SerialSource> {
        let entry = self.entry(id).ok()?;
        let run = entry.running()?;
        let spec = entry.spec();
        if run.engine != Engine::Qemu || spec.machine != strata_shared::model::Machine::Microvm {
            return None;
        }
        let ctx = self.context(&entry, false).ok()?;
        Some(crate::console::SerialSource {
            log: ctx.serial_log(),
            input: ctx.serial_socket(),
            name: entry.name.clone(),
        })
    }

    /// Checks that VM `id` exists and runs (its console can be opened).
    pub fn require_running(&self, id: Uuid) -> Result<(), RpcError> {
        let entry = self.entry(id)?;
        if entry.running().is_none() {
            return Err(RpcError::new(
                ErrorCode::InvalidState,
                format!(
                    "VM {} is not running: its console shows nothing",
                    entry.display_name()
                ),
            ));
        }
        Ok(())
    }

    fn publish(&self, vm: Uuid, power_state: PowerState, reason: &str) {
        let change = PowerStateChange {
            vm,
            power_state,
            reason: reason.to_string(),
        };
        let _ = self.notes.send(Notification::new(
            notifications::VM_POWER_STATE_CHANGED,
            &change,
        ));
    }

    /// Facts about this host.
    pub fn facts(&self) -> HostFacts {
        let default_engine = self.resolve_engine(Engine::Auto).unwrap_or(Engine::Qemu);
        let mut engines = vec![Engine::Qemu];
        if self.native.is_ok() {
            engines.insert(0, Engine::Native);
        }
        HostFacts {
            id: self.id,
            hostname: self.machine.hostname.clone(),
            cpu_count: self.machine.cpu_count,
            cpu_mhz: self.machine.cpu_mhz,
            memory_mib: self.machine.memory_mib,
            hardware_virtualization: self.machine.hardware_virtualization,
            engines,
            default_engine,
            qemu_version: self.qemu_version.clone(),
            agent_version: strata_shared::VERSION.to_string(),
            datastores: self.datastores.iter().map(Datastore::facts).collect(),
            managed_by: self
                .manager_contact
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Notes that the manager logged in as `username` called now.
    pub fn manager_called(&self, username: &str) {
        let now = strata_shared::now_ms();
        *self
            .manager_contact
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(strata_shared::model::ManagerContact {
            username: username.to_string(),
            last_seen_ms: now,
        });
    }

    fn datastore(&self, name: Option<&str>) -> Result<&Datastore, RpcError> {
        match name {
            None => self
                .datastores
                .first()
                .ok_or_else(|| RpcError::new(ErrorCode::Unavailable, "this host has no datastore")),
            Some(n) => self
                .datastores
                .iter()
                .find(|d| d.name == n)
                .ok_or_else(|| RpcError::not_found("datastore", n)),
        }
    }

    fn entry(&self, id: Uuid) -> Result<Arc<VmEntry>, RpcError> {
        self.lock_vms()
            .get(&id)
            .cloned()
            .ok_or_else(|| RpcError::not_found("VM", id))
    }

    /// Resolves a VM's files; with `check`, refuses missing kernel or initrd.
    fn context(&self, entry: &VmEntry, check: bool) -> Result<VmContext, RpcError> {
        let ds = self.datastore(Some(&entry.datastore))?;
        let spec = &entry.spec();
        let kernel = ds.resolve(&spec.boot.kernel).map_err(RpcError::invalid)?;
        let initrd = spec
            .boot
            .initrd
            .as_deref()
            .map(|p| ds.resolve(p))
            .transpose()
            .map_err(RpcError::invalid)?;
        if check {
            check_file("kernel", &kernel)?;
            if let Some(i) = &initrd {
                check_file("initrd", i)?;
            }
            for d in &spec.disks {
                check_file("disk", &crate::datastore::disk::path_in(&entry.dir, d))?;
            }
        }
        let mut disk_paths = Vec::new();
        for d in &spec.disks {
            let path = match crate::datastore::disk::data_path(&entry.dir, d) {
                Ok(p) => p,
                Err(e) if check => return Err(RpcError::invalid(e.to_string())),
                Err(_) => crate::datastore::disk::path_in(&entry.dir, d),
            };
            if check && d.format == strata_shared::model::DiskFormat::Rdm {
                crate::datastore::disk::device_size(&path)
                    .map_err(|e| RpcError::invalid(format!("mapped disk {}: {e}", d.file)))?;
                self.refuse_shared_device(entry.id, &path)?;
            }
            disk_paths.push(path);
        }
        Ok(VmContext {
            id: entry.id,
            name: entry.name.clone(),
            dir: entry.dir.clone(),
            run_dir: self.run_dir.clone(),
            kernel,
            initrd,
            spec: spec.clone(),
            disk_paths,
        })
    }

    /// Refuses to power on a VM whose mapped device a running VM on this host already uses.
    fn refuse_shared_device(&self, id: Uuid, device: &std::path::Path) -> Result<(), RpcError> {
        let others: Vec<Arc<VmEntry>> = self
            .lock_vms()
            .values()
            .filter(|e| e.id != id && e.running().is_some())
            .cloned()
            .collect();
        for other in others {
            let uses = other.spec().disks.iter().any(|d| {
                crate::datastore::disk::data_path(&other.dir, d)
                    .map(|p| p == device)
                    .unwrap_or(false)
            });
            if uses {
                return Err(RpcError::new(
                    ErrorCode::Conflict,
                    format!(
                        "{} is in use by running VM {}",
                        device.display(),
                        other.display_name()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_spec(&self, spec: &VmSpec, ds: &Datastore) -> Result<(), RpcError> {
        spec.validate().map_err(RpcError::invalid)?;
        self.check_capacity(spec)?;
        self.resolve_engine(spec.engine)?;
        let kernel = ds.resolve(&spec.boot.kernel).map_err(RpcError::invalid)?;
        check_file("kernel", &kernel)?;
        if let Some(i) = &spec.boot.initrd {
            check_file("initrd", &ds.resolve(i).map_err(RpcError::invalid)?)?;
        }
        Ok(())
    }

    /// Refuses more vCPUs or memory than this host can give one VM.
    fn check_capacity(&self, spec: &VmSpec) -> Result<(), RpcError> {
        if spec.vcpus > self.machine.cpu_count.saturating_mul(4).max(1) {
            return Err(RpcError::new(
                ErrorCode::InsufficientResources,
                format!(
                    "{} vCPUs is more than this host allows ({} CPUs × 4)",
                    spec.vcpus, self.machine.cpu_count
                ),
            ));
        }
        if self.machine.memory_mib > 0 && spec.memory_mib > self.machine.memory_mib {
            return Err(RpcError::new(
                ErrorCode::InsufficientResources,
                format!(
                    "{} MiB is more memory than this host has ({} MiB)",
                    spec.memory_mib, self.machine.memory_mib
                ),
            ));
        }
        Ok(())
    }

    /// All VMs.
    pub fn list(&self) -> Vec<VmInfo> {
        let mut v: Vec<VmInfo> = self.lock_vms().values().map(|e| e.info()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// One VM.
    pub fn get(&self, id: Uuid) -> Result<VmInfo, RpcError> {
        Ok(self.entry(id)?.info())
    }

    /// Creates a VM directory and its config; nothing is left behind on failure.
    pub fn create(&self, p: &AgentVmCreateParams) -> Result<VmInfo, RpcError> {
        strata_shared::model::validate_name("VM", &p.name).map_err(RpcError::invalid)?;
        let ds = self.datastore(p.datastore.as_deref())?;
        self.check_spec(&p.spec, ds)?;
        let id = p.id.unwrap_or_else(Uuid::new_v4);
        {
            let vms = self.lock_vms();
            if vms.contains_key(&id) {
                return Err(RpcError::new(
                    ErrorCode::Conflict,
                    format!("a VM with id {id} already exists"),
                ));
            }
            if vms
                .values()
                .any(|e| e.display_name() == p.name && e.datastore == ds.name)
            {
                return Err(RpcError::new(
                    ErrorCode::Conflict,
                    format!("a VM named {:?} already exists on {}", p.name, ds.name),
                ));
            }
        }
        let (dir, dir_name) = create_vm_dir(ds, &p.name)?;
        let config = VmConfigFile {
            id,
            display_name: (dir_name != p.name).then(|| p.name.clone()),
            name: dir_name.clone(),
            created_ms: strata_shared::now_ms(),
            spec: p.spec.clone(),
            snapshots: Default::default(),
            linked_base: None,
        };
        let written = config
            .to_toml()
            .map_err(RpcError::internal)
            .and_then(|text| {
                crate::atomic_file::write(&VmConfigFile::path_in(&dir, &dir_name), text.as_bytes())
                    .map_err(|e| RpcError::internal(format!("cannot write the VM config: {e}")))
            });
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let entry = Arc::new(VmEntry::new(config, &ds.name, dir));
        let info = entry.info();
        self.lock_vms().insert(id, entry);
        info!(vm = %p.name, %id, datastore = %ds.name, "VM created");
        Ok(info)
    }

    /// Starts a VM.
    pub async fn power_on(&self, id: Uuid) -> Result<VmInfo, RpcError> {
        let entry = self.entry(id)?;
        let _op = entry.op.lock().await;
        if entry.running().is_some() {
            return Err(RpcError::new(
                ErrorCode::InvalidState,
                format!("VM {} is already powered on", entry.display_name()),
            ));
        }
        if entry.spec().template {
            return Err(RpcError::new(
                ErrorCode::InvalidState,
                format!(
                    "VM {} is a template: clone it to run it",
                    entry.display_name()
                ),
            ));
        }
        let kind = self.resolve_engine(entry.spec().engine)?;
        if kind == Engine::Qemu && self.qemu_version.is_none() {
            return Err(RpcError::new(
                ErrorCode::Unavailable,
                "QEMU is not installed on this host (run scripts/setup)",
            ));
        }
        if let Some(problem) = self.datastore(Some(&entry.datastore))?.health().problem {
            return Err(RpcError::new(
                ErrorCode::Unavailable,
                format!("datastore {} is inaccessible: {problem}", entry.datastore),
            ));
        }
        let ctx = self.context(&entry, true)?;
        rotate_log(&ctx.serial_log());
        let saved = if entry.suspended() {
            let saved = saved_state::read(&entry.dir).ok_or_else(|| {
                RpcError::internal(format!(
                    "VM {} is suspended but its saved state is gone; power it off",
                    entry.display_name()
                ))
            })?;
            Some(saved)
        } else {
            None
        };
        // A saved state goes back to the engine that wrote it.
        let kind = saved.as_ref().map(|s| s.engine).unwrap_or(kind);
        let engine = self.engine(kind)?;
        let instance = self.take_lease(&entry).await?;
        let started = std::time::Instant::now();
        let result = match &saved {
            Some(_) => engine.resume(&ctx, &saved_state::dir_of(&entry.dir)).await,
            None => engine.start(&ctx).await,
        };
        let pid = match result {
            Ok(pid) => pid,
            Err(e) if saved.is_some() => {
                self.release_lease(&entry);
                warn!(vm = %entry.display_name(), error = %e, "cannot resume the VM from its saved state");
                return Err(RpcError::new(
                    ErrorCode::InvalidState,
                    format!(
                        "VM {} cannot resume from its saved state ({e}); it stays suspended with the state kept — power it off to discard it",
                        entry.display_name()
                    ),
                ));
            }
            Err(e) => {
                self.release_lease(&entry);
                return Err(engine_err(e));
            }
        };
        entry.set_running(Some(RunState { pid, engine: kind }));
        self.place_in_cgroup(id, pid);
        self.spawn_lease_keeper(&entry, pid, instance);
        let reason = if saved.is_some() {
            entry.set_suspended(false);
            if let Err(e) = saved_state::discard(&entry.dir) {
                warn!(vm = %entry.display_name(), error = %e, "cannot delete the saved state after resuming");
            }
            info!(vm = %entry.display_name(), ms = started.elapsed().as_millis() as u64, "VM resumed from its saved state");
            "resumed from its saved state"
        } else {
            "powered on"
        };
        self.publish(id, PowerState::PoweredOn, reason);
        Ok(entry.info())
    }

    /// Saves a running (or paused) VM's full state into its directory and ends its process;
    /// the VM is then suspended and releases its lease.
    pub async fn suspend(&self, id: Uuid) -> Result<VmInfo, RpcError> {
        let entry = self.entry(id)?;
        let _op = entry.op.lock().await;
        let Some(run) = entry.running().filter(|r| process::alive(r.pid)) else {
            let state = if entry.suspended() {
                "already suspended"
            } else {
                "powered off"
            };
            return Err(RpcError::new(
                ErrorCode::InvalidState,
                format!("VM {} is {state}", entry.display_name()),
            ));
        };
        let ctx = self.context(&entry, false)?;
        let started = std::time::Instant::now();
        let dir = saved_state::prepare(&entry.dir).map_err(engine_err)?;
        let engine = self.engine(run.engine)?;
        if let Err(e) = engine.suspend(&ctx, run.pid, &dir).await {
            let _ = saved_state::discard(&entry.dir);
            return Err(RpcError::internal(format!(
                "cannot suspend VM {}: {e}",
                entry.display_name()
            )));
        }
        let saved = saved_state::commit(&entry.dir, run.engine).map_err(engine_err)?;
        entry.set_running(None);
        entry.set_suspended(true);
        self.release_lease(&entry);
        let _ = std::fs::remove_file(ctx.pid_file());
        info!(
            vm = %entry.display_name(),
            engine = %run.engine,
            ms = started.elapsed().as_millis() as u64,
            bytes = saved.bytes,
            "VM suspended"
        );
        self.publish(id, PowerState::Suspended, "state saved");
        Ok(entry.info())
    }

    /// Stops (`paused`) or restarts a running VM's vCPUs.
    pub async fn pause(&self, id: Uuid, paused: bool) -> Result<VmInfo, RpcError> {
        let entry = self.entry(id)?;
        let _op = entry.op.lock().await;
        let Some(run) = entry.running().filter(|r| process::alive(r.pid)) else {
            return Err(RpcError::new(
                ErrorCode::InvalidState,
                format!("VM {} is not running", entry.display_name()),
            ));
        };
        if entry.paused() == paused {
            return Err(RpcError::new(
                ErrorCode::InvalidState,
                format!(
                    "VM {} is {}",
                    entry.display_name(),
                    if paused {
                        "already paused"
                    } else {
                        "not paused"
                    }
                ),
            ));
        }
        let ctx = self.context(&entry, false)?;
        self.engine(run.engine)?
            .set_paused(&ctx, paused)
            .await
            .map_err(engine_err)?;
        entry.set_paused(paused);
        let (state, reason) = if paused {
            (PowerState::Paused, "paused")
        } else {
            (PowerState::PoweredOn, "unpaused")
        };
        info!(vm = %entry.display_name(), reason, "VM {reason}");
        self.publish(id, state, reason);
        Ok(entry.info())
    }

    /// Stops a VM: guest shutdown first unless `hard`, then a hard stop after `timeout`.
    pub async fn power_off(
        &self,
        id: Uuid,
        hard: bool,
        timeout: Option<u32>,
    ) -> Result<PowerOffResult, RpcError> {
        let entry = self.entry(id)?;
        let _op = entry.op.lock().await;
        let Some(run) = entry.running().filter(|r| process::alive(r.pid)) else {
            entry.set_running(None);
            if entry.suspended() {
                // Powering off a suspended VM throws its saved state away.
                saved_state::discard(&entry.dir).map_err(engine_err)?;
                entry.set_suspended(false);
                let reason = "saved state discarded".to_string();
                info!(vm = %entry.display_name(), "suspended VM powered off: {reason}");
                self.publish(id, PowerState::PoweredOff, &reason);
                return Ok(PowerOffResult {
                    vm: entry.info(),
                    graceful: false,
                    reason,
                });
            }
            return Err(RpcError::new(
                ErrorCode::InvalidState,
                format!("VM {} is already powered off", entry.display_name()),
            ));
        };
        let ctx = self.context(&entry, false)?;
        let engine = self.engine(run.engine)?;
        let secs = timeout
            .unwrap_or(self.config.shutdown_timeout_secs)
            .min(3600);
        let mut reason = "stopped hard".to_string();
        let mut graceful = false;
        if !hard {
            match engine.request_shutdown(&ctx).await {
                Ok(())
                    if process::wait_gone(run.pid, Duration::from_secs(u64::from(secs))).await =>
                {
                    reason = "guest shut down".into();
                    graceful = true;
                }
                Ok(()) => reason = format!("guest did not shut down within {secs} s; stopped hard"),
                Err(e) => reason = format!("guest shutdown request failed ({e}); stopped hard"),
            }
        }
        if process::alive(run.pid) {
            engine.stop(&ctx, run.pid).await.map_err(engine_err)?;
        }
        entry.set_running(None);
        self.release_lease(&entry);
        info!(vm = %entry.display_name(), %reason, "VM powered off");
        self.publish(id, PowerState::PoweredOff, &reason);
        Ok(PowerOffResult {
            vm: entry.info(),
            graceful,
            reason,
        })
    }

    /// Resets a running VM.
    pub async fn reset(&self, id: Uuid) -> Result<VmInfo, RpcError> {
        let entry = self.entry(id)?;
        let _op = entry.op.lock().await;
        let Some(run) = entry.running() else {
            return Err(RpcError::new(
                ErrorCode::InvalidState,
                format!("VM {} is powered off", entry.display_name()),
            ));
        };
        let ctx = self.context(&entry, false)?;
        self.engine(run.engine)?
            .reset(&ctx)
            .await
            .map_err(engine_err)?;
        Ok(entry.info())
    }

    /// Deletes a powered-off VM and its directory.
    pub async fn destroy(&self, id: Uuid) -> Result<(), RpcError> {
        let entry = self.entry(id)?;
        let _op = entry.op.lock().await;
        if entry.running().is_some() || entry.suspended() {
            return Err(RpcError::new(
                ErrorCode::InvalidState,
                format!("VM {} must be powered off first", entry.display_name()),
            ));
        }
        if let Some((clone, _)) = self.linked_clones_of(entry.id).first() {
            return Err(RpcError::new(
                ErrorCode::Conflict,
                format!(
                    "VM {} is the base of linked clone {clone}: delete the clone first",
                    entry.display_name()
                ),
            ));
        }
        if let Ok(Some(holder)) = self.leases.quick_holder(&lease_path(&entry)) {
            return Err(RpcError::new(
                ErrorCode::Conflict,
                format!(
                    "VM {} is running on host {} ({})",
                    entry.display_name(),
                    holder.owner_name,
                    holder.owner
                ),
            ));
        }
        std::fs::remove_dir_all(&entry.dir)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| {
                RpcError::internal(format!("cannot delete {}: {e}", entry.dir.display()))
            })?;
        self.lock_vms().remove(&id);
        info!(vm = %entry.display_name(), %id, "VM destroyed");
        Ok(())
    }

    /// Reads the serial log from `offset` (negative: from the end).
    pub fn console_read(
        &self,
        id: Uuid,
        offset: i64,
        max: Option<u32>,
    ) -> Result<ConsoleChunk, RpcError> {
        use std::io::{Read, Seek, SeekFrom};
        let entry = self.entry(id)?;
        let path = entry.dir.join("serial.log");
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ConsoleChunk {
                    offset: 0,
                    next_offset: 0,
                    size: 0,
                    data: String::new(),
                })
            }
            Err(e) => {
                return Err(RpcError::internal(format!(
                    "cannot read the console log: {e}"
                )))
            }
        };
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = if offset < 0 {
            size.saturating_sub(offset.unsigned_abs())
        } else {
            (offset as u64).min(size)
        };
        let max = u64::from(max.unwrap_or(MAX_CONSOLE_READ as u32)).min(MAX_CONSOLE_READ);
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(start))
            .and_then(|_| f.take(max).read_to_end(&mut buf))
            .map_err(|e| RpcError::internal(format!("cannot read the console log: {e}")))?;
        Ok(ConsoleChunk {
            offset: start,
            next_offset: start + buf.len() as u64,
            size,
            data: String::from_utf8_lossy(&buf).into_owned(),
        })
    }

    /// Types into the serial console.
    pub async fn console_send(&self, id: Uuid, data: &str) -> Result<(), RpcError> {
        if data.len() > MAX_CONSOLE_SEND {
            return Err(RpcError::invalid(format!(
                "at most {MAX_CONSOLE_SEND} bytes can be sent at once"
            )));
        }
        let entry = self.entry(id)?;
        let Some(run) = entry.running() else {
            return Err(RpcError::new(
                ErrorCode::InvalidState,
                format!("VM {} is powered off", entry.display_name()),
            ));
        };
        let ctx = self.context(&entry, false)?;
        self.engine(run.engine)?
            .console_send(&ctx, data.as_bytes())
            .await
            .map_err(engine_err)
    }

    /// Takes the VM's on-disk lease (so no other host runs it); blocks on a stale lease
    /// until it may be broken.
    async fn take_lease(&self, entry: &VmEntry) -> Result<Uuid, RpcError> {
        use crate::datastore::lease::LeaseError;
        let (holder, path, name) = (self.leases.clone(), lease_path(entry), entry.display_name());
        let got = tokio::task::spawn_blocking(move || holder.acquire(&path))
            .await
            .map_err(|e| RpcError::internal(e.to_string()))?;
        match got {
            Ok(rec) => Ok(rec.instance),
            Err(e @ (LeaseError::Held { .. } | LeaseError::Lost { .. })) => Err(RpcError::new(
                ErrorCode::Conflict,
                format!("VM {name} cannot power on here: {e}"),
            )),
            Err(e @ LeaseError::Io { .. }) => Err(RpcError::new(
                ErrorCode::Unavailable,
                format!("VM {name}: its datastore cannot be written ({e})"),
            )),
        }
    }

    fn release_lease(&self, entry: &VmEntry) {
        if let Err(e) = self.leases.release(&lease_path(entry), None) {
            warn!(vm = %entry.display_name(), error = %e, "cannot release the VM's lease");
        }
    }

    /// Starts the VM's lease keeper: it renews the lease as long as the VM process lives
    /// (even without the agent) and kills the VM if the lease is lost.
    fn spawn_lease_keeper(&self, entry: &VmEntry, pid: u32, instance: Uuid) {
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                warn!(vm = %entry.display_name(), error = %e, "cannot start the lease keeper");
                return;
            }
        };
        let t = self.leases.timing;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("lease-keeper")
            .arg("--lease")
            .arg(lease_path(entry))
            .arg("--host")
            .arg(self.id.to_string())
            .arg("--host-name")
            .arg(&self.leases.name)
            .arg("--pid")
            .arg(pid.to_string())
            .arg("--instance")
            .arg(instance.to_string())
            .arg("--log")
            .arg(entry.dir.join("vmm.log"))
            .arg("--renew-ms")
            .arg(t.renew.as_millis().to_string())
            .arg("--lease-ms")
            .arg(t.lease.as_millis().to_string())
            .arg("--margin-ms")
            .arg(t.margin.as_millis().to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0);
        match cmd.spawn() {
            // Reap it while we live; if the agent dies first, init does.
            Ok(mut child) => {
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
            Err(e) => {
                warn!(vm = %entry.display_name(), error = %e, "cannot start the lease keeper")
            }
        }
    }

    fn place_in_cgroup(&self, vm: Uuid, pid: u32) {
        let res = self.resources.lock().map(|r| r.clone()).unwrap_or_default();
        if let Err(e) = self.cgroups.place(&res, vm, pid) {
            warn!(%vm, error = %e, "cannot place the VM in its resource pool");
        }
    }

    /// Stores this host's part of the resource-pool tree (kept across restarts and while the
    /// manager is away) and enforces it on the running VMs.
    pub fn apply_resources(
        &self,
        res: strata_shared::model::HostResources,
    ) -> Result<(), RpcError> {
        let bytes =
            serde_json::to_vec_pretty(&res).map_err(|e| RpcError::internal(e.to_string()))?;
        crate::atomic_file::write(&self.config.data_dir.join("resources.json"), &bytes)
            .map_err(|e| RpcError::internal(format!("cannot store the resource settings: {e}")))?;
        let errors = self.cgroups.apply(&res);
        crate::cgroups::log_errors(&errors);
        if let Ok(mut r) = self.resources.lock() {
            *r = res.clone();
        }
        let running: Vec<(Uuid, u32)> = self
            .lock_vms()
            .values()
            .filter_map(|e| e.running().map(|r| (e.id, r.pid)))
            .collect();
        for (vm, pid) in running {
            self.place_in_cgroup(vm, pid);
        }
        self.cgroups.prune(&res);
        match errors.first() {
            None => Ok(()),
            Some(e) => Err(RpcError::internal(format!(
                "{} resource setting(s) could not be applied; first: {e}",
                errors.len()
            ))),
        }
    }

    /// Notices VM processes that ended on their own (guest power-off, crash) every 500 ms.
    pub async fn watch_processes(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let entries: Vec<Arc<VmEntry>> = self.lock_vms().values().cloned().collect();
            for e in entries {
                let Some(run) = e.running() else { continue };
                if process::alive(run.pid) {
                    continue;
                }
                // An operation under way owns the state change.
                let Ok(_op) = e.op.try_lock() else { continue };
                if e.running() != Some(run) {
                    continue;
                }
                e.set_running(None);
                self.release_lease(&e);
                let _ = std::fs::remove_file(e.dir.join("vmm.pid"));
                let reason = match crate::engine::crash_reason(&e.dir.join("vmm.log")) {
                    Some(why) => {
                        warn!(vm = %e.display_name(), pid = run.pid, %why, "the VM crashed");
                        format!("the VM crashed: {why}")
                    }
                    None => {
                        info!(vm = %e.display_name(), pid = run.pid, "the guest powered off");
                        "the guest powered off (VM process exited)".to_string()
                    }
                };
                self.publish(e.id, PowerState::PoweredOff, &reason);
            }
        }
    }
}

/// The lease file of a VM.
fn lease_path(entry: &VmEntry) -> std::path::PathBuf {
    entry.dir.join(crate::datastore::lease::LEASE_FILE)
}

/// How many `NAME_N` directories a new VM tries when `NAME` is taken.
const DIR_SUFFIXES: u32 = 100;

/// Creates a new VM's directory on a datastore, named after the VM: `NAME`, or `NAME_1`,
/// `NAME_2`, … when that is taken (by a renamed VM, whose directory keeps its old name, or
/// by a leftover). Returns the directory and its name.
fn create_vm_dir(ds: &Datastore, name: &str) -> Result<(PathBuf, String), RpcError> {
    for n in 0..DIR_SUFFIXES {
        let dir_name = if n == 0 {
            name.to_string()
        } else {
            format!("{name}_{n}")
        };
        let dir = ds.root.join(&dir_name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((dir, dir_name)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(RpcError::internal(format!(
                    "cannot create {}: {e}",
                    dir.display()
                )))
            }
        }
    }
    Err(RpcError::new(
        ErrorCode::Conflict,
        format!(
            "directories {name} to {name}_{} already exist on datastore {}",
            DIR_SUFFIXES - 1,
            ds.name
        ),
    ))
}

/// Refuses a missing or non-regular file.
fn check_file(what: &str, path: &std::path::Path) -> Result<(), RpcError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(RpcError::invalid(format!(
            "{what} {} is not a file",
            path.display()
        ))),
        Err(_) => Err(RpcError::invalid(format!(
            "{what} {} does not exist",
            path.display()
        ))),
    }
}

/// Keeps the serial log bounded: over 16 MiB it moves to `serial.log.1` at power-on.
fn rotate_log(path: &std::path::Path) {
    if std::fs::metadata(path)
        .map(|m| m.len() > (16 << 20))
        .unwrap_or(false)
    {
        let _ = std::fs::rename(path, path.with_extension("log.1"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_vm_whose_directory_is_taken_gets_the_next_free_one() {
        let root = tempfile::tempdir().unwrap();
        let ds = Datastore::new("ds", root.path().into());
        let (dir, name) = create_vm_dir(&ds, "web").unwrap();
        assert_eq!((name.as_str(), dir), ("web", root.path().join("web")));
        // Left by a renamed VM (its directory keeps its old name).
        let (_, name) = create_vm_dir(&ds, "web").unwrap();
        assert_eq!(name, "web_1");
        let (_, name) = create_vm_dir(&ds, "web").unwrap();
        assert_eq!(name, "web_2");
    }
}
