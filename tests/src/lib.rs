//! Harness for Strata's end-to-end tests: builds the test guest, starts strata-server and
//! strata-hostagent as real processes on loopback with temporary data dirs, and cleans up
//! every process (VMs included) it started.

pub mod desktop;
pub mod postgres;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use strata_hostagent::guest_image::{self, GuestImage};
use strata_shared::api::manager as m;
use strata_shared::model::{ConsoleChunk, IdParams, TaskInfo};
use strata_shared::{Client, Trust};

/// Paths of the daemon binaries (use [`bins!`] from a test to fill it).
#[derive(Debug, Clone)]
pub struct Bins {
    /// strata-server.
    pub server: PathBuf,
    /// strata-hostagent.
    pub agent: PathBuf,
    /// strata CLI.
    pub cli: PathBuf,
}

/// The daemon binaries built for this test crate.
#[macro_export]
macro_rules! bins {
    () => {
        $crate::Bins {
            server: std::path::PathBuf::from(env!("CARGO_BIN_EXE_e2e-strata-server")),
            agent: std::path::PathBuf::from(env!("CARGO_BIN_EXE_e2e-strata-hostagent")),
            cli: std::path::PathBuf::from(env!("CARGO_BIN_EXE_e2e-strata")),
        }
    };
}

/// The marker the test guest prints when it is up.
pub const READY_MARKER: &str = "STRATA-GUEST-READY";
/// Password used for admin and root in tests.
pub const PASSWORD: &str = "test-password-1";

/// Builds (once per machine, cached) the test guest. Panics with a clear message when the
/// machine lacks what it needs.
pub fn guest() -> &'static GuestImage {
    static IMG: OnceLock<GuestImage> = OnceLock::new();
    IMG.get_or_init(|| {
        guest_image::build(&guest_image::default_cache_dir()).unwrap_or_else(|e| {
            panic!("cannot build the test guest: {e} (run scripts/setup first)")
        })
    })
}

/// Fails with a clear message when QEMU is missing (tests are never silently skipped).
pub fn require_qemu() {
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "qemu-system-x86_64 is not installed: run scripts/setup (as root) first"
    );
}

/// Fails with a clear message when /dev/kvm is missing or unusable (the native engine needs
/// it; tests are never silently skipped).
pub fn require_kvm() {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "/dev/kvm does not exist: the native engine needs KVM (load kvm_intel/kvm_amd or kvm_pvm)"
    );
    assert!(
        strata_hostagent::vmm::vstate::kvm::usable(),
        "/dev/kvm cannot be opened read-write: run the tests as root or add the user to group kvm"
    );
}

/// A daemon process started by a test.
pub struct Daemon {
    child: Option<Child>,
    /// `host:port` it listens on.
    pub address: String,
    /// Its certificate thumbprint.
    pub thumbprint: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its stdout lines up to the thumbprint line.
    pub banner: Vec<String>,
    kind: &'static str,
    binary: PathBuf,
    args: Vec<String>,
    cleanup_vms: bool,
}

impl Daemon {
    fn spawn(kind: &'static str, binary: &Path, data_dir: &Path, args: Vec<String>) -> Daemon {
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .expect("open daemon log");
        let mut child = Command::new(binary)
            .args(&args)
            .env("STRATA_LOG", "info,strata=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::Builder::new()
            .name(format!("{kind}-stdout"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn reader");
        let mut banner = Vec::new();
        let (mut address, mut thumbprint) = (String::new(), String::new());
        let deadline = Instant::now() + Duration::from_secs(60);
        while thumbprint.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.split("listening on wss://").nth(1) {
                        address = a.trim().to_string();
                    }
                    if let Some(t) = line.strip_prefix("certificate thumbprint: ") {
                        thumbprint = t.trim().to_string();
                    }
                    banner.push(line);
                }
                Err(_) => {
                    let log =
                        std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
                    panic!("{kind} did not start; its log:\n{log}");
                }
            }
        }
        Daemon {
            child: Some(child),
            address,
            thumbprint,
            data_dir: data_dir.to_path_buf(),
            banner,
            kind,
            binary: binary.to_path_buf(),
            args,
            cleanup_vms: kind == "hostagent",
        }
    }

    /// Starts a host agent on 127.0.0.1 (port 0 = any free port).
    pub fn agent(bins: &Bins, data_dir: &Path, port: u16) -> Daemon {
        Self::agent_with(bins, data_dir, port, &[])
    }

    /// Starts a host agent with extra flags.
    pub fn agent_with(bins: &Bins, data_dir: &Path, port: u16, extra: &[&str]) -> Daemon {
        let mut args = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--root-password".into(),
            PASSWORD.into(),
            "--console-listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn("hostagent", &bins.agent, data_dir, args)
    }

    /// Starts a manager on 127.0.0.1 with extra flags. Its database is an SQLite file in
    /// `data_dir`, or, when `STRATA_TEST_DATABASE=postgres` is set and the flags name no
    /// database, a fresh database in this test process's PostgreSQL cluster (so the whole
    /// suite can run on PostgreSQL).
    pub fn server(bins: &Bins, data_dir: &Path, port: u16, extra: &[&str]) -> Daemon {
        let mut args = vec![
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--admin-password".into(),
            PASSWORD.into(),
        ];
        if !extra.contains(&"--database-url") {
            if let Some(url) = postgres::suite_database() {
                args.push("--database-url".into());
                args.push(url);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn("server", &bins.server, data_dir, args)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Port it listens on.
    pub fn port(&self) -> u16 {
        self.address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM, then waits up to 30 s; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the same daemon again on the same port and data dir.
    pub fn restart(&mut self) {
        self.stop();
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = self.address.clone();
        }
        let mut fresh = Self::spawn(self.kind, &self.binary, &self.data_dir, args);
        std::mem::swap(self, &mut fresh);
        // The old handle goes; the VMs it would clean up belong to the new one now.
        fresh.cleanup_vms = false;
    }

    /// The daemon's log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// A logged-in SDK client.
    pub async fn client(&self, user: &str) -> Client {
        let c = Client::connect(&self.address, Trust::Thumbprint(self.thumbprint.clone()))
            .await
            .expect("connect");
        c.login(user, PASSWORD).await.expect("login");
        c
    }
}

/// Kills VM processes whose pid files are under `dir` (VMs outlive agents by design).
pub fn kill_vms_under(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            kill_vms_under(&p);
        } else if p.file_name().and_then(|n| n.to_str()) == Some("vmm.pid") {
            if let Some(pid) = std::fs::read_to_string(&p)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        if self.cleanup_vms {
            kill_vms_under(&self.data_dir);
        }
    }
}

/// Reads a VM's console through the manager until `needle` appears after `from`; returns the
/// text read and the offset after it.
pub async fn wait_console(
    client: &Client,
    vm: uuid::Uuid,
    from: u64,
    needle: &str,
    limit: Duration,
) -> Result<(String, u64), String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut text = String::new();
    let mut offset = from;
    loop {
        let chunk: ConsoleChunk = client
            .call::<m::VmConsoleRead>(m::ConsoleReadParams {
                id: vm,
                offset: offset as i64,
                max_bytes: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        text.push_str(&chunk.data);
        offset = chunk.next_offset;
        if text.contains(needle) {
            return Ok((text, offset));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "{needle:?} did not appear within {limit:?}; console so far:\n{text}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a task method and waits for it (panics with the task's error).
pub async fn task_ok(client: &Client, t: TaskInfo) -> TaskInfo {
    let done = client
        .wait_task(t.id, Duration::from_secs(300))
        .await
        .expect("wait task");
    assert_eq!(
        done.state,
        strata_shared::model::TaskState::Success,
        "task {} failed: {:?}",
        done.description,
        done.error
    );
    done
}

/// Waits for a task that must fail; returns its error message.
pub async fn task_error(client: &Client, t: TaskInfo) -> String {
    let done = client
        .wait_task(t.id, Duration::from_secs(120))
        .await
        .expect("wait task");
    assert_eq!(
        done.state,
        strata_shared::model::TaskState::Error,
        "{} should fail",
        done.description
    );
    done.error.map(|e| e.message).unwrap_or_default()
}

/// Shuts a VM down through the manager (guest shutdown, hard stop after 60 s).
pub async fn power_off(client: &Client, vm: uuid::Uuid) -> TaskInfo {
    let t = client
        .call::<m::VmPowerOff>(m::PowerOffParams {
            id: vm,
            hard: false,
            timeout_secs: Some(60),
        })
        .await
        .expect("vm.powerOff");
    task_ok(client, t).await
}

/// Stops a VM at once through the manager (no guest shutdown).
pub async fn power_off_hard(client: &Client, vm: uuid::Uuid) -> TaskInfo {
    let t = client
        .call::<m::VmPowerOff>(m::PowerOffParams {
            id: vm,
            hard: true,
            timeout_secs: None,
        })
        .await
        .expect("vm.powerOff");
    task_ok(client, t).await
}

/// The size of a VM's console log now (where new output will start).
pub async fn console_size(client: &Client, vm: uuid::Uuid) -> u64 {
    client
        .call::<m::VmConsoleRead>(m::ConsoleReadParams {
            id: vm,
            offset: -1,
            max_bytes: Some(1),
        })
        .await
        .expect("vm.consoleRead")
        .size
}

/// Types `cmd` into the guest's shell and waits until `expect` appears after `offset`.
pub async fn console_run(
    client: &Client,
    vm: uuid::Uuid,
    offset: u64,
    cmd: &str,
    expect: &str,
) -> (String, u64) {
    client
        .call::<m::VmConsoleSend>(m::ConsoleSendParams {
            id: vm,
            data: format!("{cmd}\n"),
        })
        .await
        .expect("vm.consoleSend");
    wait_console(client, vm, offset, expect, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{cmd:?} did not print {expect:?}: {e}"))
}

/// Powers a VM on and waits for the guest's ready marker; returns the console offset after it.
pub async fn boot(client: &Client, vm: uuid::Uuid) -> u64 {
    let before = client
        .call::<m::VmConsoleRead>(m::ConsoleReadParams {
            id: vm,
            offset: -1,
            max_bytes: None,
        })
        .await
        .expect("vm.consoleRead")
        .size;
    power_on(client, vm).await;
    wait_console(client, vm, before, READY_MARKER, Duration::from_secs(120))
        .await
        .expect("the guest boots")
        .1
}

/// `vm.diskCreate` params for a new read-write disk with a default name.
pub fn new_disk(
    vm: uuid::Uuid,
    size_mib: u64,
    format: strata_shared::model::DiskFormat,
    provisioning: strata_shared::model::Provisioning,
) -> m::DiskCreateParams {
    m::DiskCreateParams {
        id: vm,
        size_mib,
        format,
        provisioning,
        read_only: false,
        file: None,
    }
}

/// Powers a VM on through the manager.
pub async fn power_on(client: &Client, vm: uuid::Uuid) -> TaskInfo {
    let t = client
        .call::<m::VmPowerOn>(IdParams { id: vm })
        .await
        .expect("vm.powerOn");
    task_ok(client, t).await
}

/// A manager with one host agent added, on loopback, in a temporary directory.
pub struct Lab {
    /// The manager.
    pub server: Daemon,
    /// The host agent.
    pub agent: Daemon,
    /// An admin client of the manager.
    pub client: Client,
    /// The host's id.
    pub host: uuid::Uuid,
    /// Temporary root (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Lab {
    /// Starts both daemons and adds the host.
    pub async fn start(bins: &Bins) -> Lab {
        Self::start_with(bins, &[]).await
    }

    /// Starts both daemons (manager with extra flags) and adds the host.
    pub async fn start_with(bins: &Bins, server_flags: &[&str]) -> Lab {
        Self::start_full(bins, server_flags, &[]).await
    }

    /// Like [`Lab::start_with`], the host agent also having the extra datastores
    /// `(name, directory)` beside its default `datastore1`.
    pub async fn start_full(
        bins: &Bins,
        server_flags: &[&str],
        datastores: &[(&str, &Path)],
    ) -> Lab {
        Self::start_inner(bins, server_flags, datastores, &[]).await
    }

    /// Starts both daemons, the host agent with extra flags, and adds the host.
    pub async fn start_with_agent(bins: &Bins, agent_flags: &[&str]) -> Lab {
        Self::start_inner(bins, &[], &[], agent_flags).await
    }

    async fn start_inner(
        bins: &Bins,
        server_flags: &[&str],
        datastores: &[(&str, &Path)],
        agent_flags: &[&str],
    ) -> Lab {
        require_qemu();
        let dir = tempfile::Builder::new()
            .prefix("strata-e2e")
            .tempdir_in(scratch_root())
            .expect("tempdir");
        let agent_dir = dir.path().join("agent");
        let mut flags: Vec<String> = Vec::new();
        if !datastores.is_empty() {
            flags.push("--datastore".into());
            flags.push(format!(
                "datastore1={}",
                agent_dir.join("datastore1").display()
            ));
            for (name, path) in datastores {
                flags.push("--datastore".into());
                flags.push(format!("{name}={}", path.display()));
            }
        }
        flags.extend(agent_flags.iter().map(|f| f.to_string()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let agent = Daemon::agent_with(bins, &agent_dir, 0, &flags);
        let server = Daemon::server(bins, &dir.path().join("server"), 0, server_flags);
        let client = server.client("admin").await;
        let t = client
            .call::<m::HostAdd>(strata_shared::model::HostAddParams {
                address: agent.address.clone(),
                username: "root".into(),
                password: PASSWORD.into(),
                thumbprint: Some(agent.thumbprint.clone()),
                cluster: None,
            })
            .await
            .expect("host.add");
        let done = task_ok(&client, t).await;
        let host: strata_shared::model::HostInfo =
            serde_json::from_value(done.result.expect("host.add result")).expect("host info");
        Lab {
            server,
            agent,
            client,
            host: host.id,
            dir,
        }
    }

    /// The host agent's datastore directory.
    pub fn datastore(&self) -> PathBuf {
        self.agent.data_dir.join("datastore1")
    }

    /// Creates a VM from the test guest; returns its id.
    pub async fn create_guest_vm(&self, name: &str, vcpus: u32) -> uuid::Uuid {
        self.create_guest_vm_on(name, vcpus, None).await
    }

    /// Creates a VM from the test guest on one datastore (the first when `None`).
    pub async fn create_guest_vm_on(
        &self,
        name: &str,
        vcpus: u32,
        datastore: Option<&str>,
    ) -> uuid::Uuid {
        let spec = strata_shared::model::VmSpec {
            vcpus,
            ..guest_spec()
        };
        let t = self
            .client
            .call::<m::VmCreate>(m::VmCreateParams {
                name: name.into(),
                host: self.host,
                datastore: datastore.map(String::from),
                spec,
            })
            .await
            .expect("vm.create");
        let done = task_ok(&self.client, t).await;
        let vm: strata_shared::model::VmInfo =
            serde_json::from_value(done.result.expect("vm")).expect("vm info");
        vm.id
    }
}

impl Lab {
    /// Creates a VM on the native engine booting the test guest built from
    /// hostagent/testguest; returns its id.
    pub async fn create_native_vm(&self, name: &str, vcpus: u32, memory_mib: u64) -> uuid::Uuid {
        self.create_native_vm_with(
            name,
            vcpus,
            memory_mib,
            strata_hostagent::vmm::TESTGUEST_PATH,
        )
        .await
    }

    /// Creates a VM on the native engine booting `kernel`; returns its id.
    pub async fn create_native_vm_with(
        &self,
        name: &str,
        vcpus: u32,
        memory_mib: u64,
        kernel: &str,
    ) -> uuid::Uuid {
        self.create_vm(name, native_spec(name, vcpus, memory_mib, kernel))
            .await
    }

    /// Creates a VM from `spec` on the lab's host; returns its id.
    pub async fn create_vm(&self, name: &str, spec: strata_shared::model::VmSpec) -> uuid::Uuid {
        let t = self
            .client
            .call::<m::VmCreate>(m::VmCreateParams {
                name: name.into(),
                host: self.host,
                datastore: None,
                spec,
            })
            .await
            .expect("vm.create");
        let done = task_ok(&self.client, t).await;
        let vm: strata_shared::model::VmInfo =
            serde_json::from_value(done.result.expect("vm")).expect("vm info");
        vm.id
    }
}

/// The spec of a qemu-engine microvm VM booting the test guest (256 MiB, one vCPU).
pub fn guest_spec() -> strata_shared::model::VmSpec {
    let g = guest();
    strata_shared::model::VmSpec {
        vcpus: 1,
        memory_mib: 256,
        engine: strata_shared::model::Engine::Qemu,
        machine: strata_shared::model::Machine::Microvm,
        boot: strata_shared::model::BootSpec {
            kernel: g.kernel.display().to_string(),
            initrd: Some(g.initrd.display().to_string()),
            cmdline: String::new(),
        },
        allocation: Default::default(),
        disks: Vec::new(),
        template: false,
        nics: Vec::new(),
    }
}

/// The spec of a native-engine VM booting `kernel` with `strata.vm=NAME` on its command
/// line.
pub fn native_spec(
    name: &str,
    vcpus: u32,
    memory_mib: u64,
    kernel: &str,
) -> strata_shared::model::VmSpec {
    strata_shared::model::VmSpec {
        vcpus,
        memory_mib,
        engine: strata_shared::model::Engine::Native,
        machine: strata_shared::model::Machine::Microvm,
        boot: strata_shared::model::BootSpec {
            kernel: kernel.to_string(),
            initrd: None,
            cmdline: format!("strata.vm={name}"),
        },
        allocation: Default::default(),
        disks: Vec::new(),
        template: false,
        nics: Vec::new(),
    }
}

/// A tap interface made for one test (`ip tuntap add … mode tap`, IPv6 off so the host
/// stack sends nothing on its own, link up, no address): traffic goes nowhere but the tap.
/// Removed on drop, whatever the test's outcome.
pub struct TapGuard {
    /// The interface name.
    pub name: String,
}

impl TapGuard {
    /// Creates a uniquely named tap (panics with the reason when it cannot: needs root and
    /// iproute2).
    pub fn create() -> TapGuard {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "stt{}x{}",
            std::process::id() % 1_000_000,
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let ip = |args: &[&str]| {
            let out = Command::new("ip")
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("cannot run ip (install iproute2): {e}"));
            assert!(
                out.status.success(),
                "ip {args:?} failed (tests need root): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["tuntap", "add", "dev", &name, "mode", "tap"]);
        let guard = TapGuard { name };
        let v6 = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", guard.name);
        if Path::new(&v6).exists() {
            let _ = std::fs::write(&v6, "1");
        }
        ip(&["link", "set", "dev", &guard.name, "up"]);
        guard
    }

    /// True while the interface exists.
    pub fn exists(&self) -> bool {
        Path::new("/sys/class/net").join(&self.name).exists()
    }
}

impl Drop for TapGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", "dev", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Where tests put their temporary directories (short paths: unix sockets are limited to
/// 107 bytes); each test's directory is removed when its `Lab` drops.
pub fn scratch_root() -> PathBuf {
    let p = std::env::temp_dir().join("strata-tests");
    let _ = std::fs::create_dir_all(&p);
    p
}
