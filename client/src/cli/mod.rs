//! The `strata` CLI, in the manner of govc: connection settings from `STRATA_*` variables,
//! one subcommand per operation, `--json` for scripts, a one-line error and a non-zero exit
//! status on failure.

mod alarm;
mod datastore;
mod disk;
pub(crate) mod format;
mod pool;
mod snapshot;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{ArgAction, Parser, Subcommand};
use serde::Serialize;
use strata_shared::api::manager::{
    self as m, ConsoleReadParams, ConsoleSendParams, PowerOffParams, VmCreateParams, VmListParams,
};
use strata_shared::api::Method;
use strata_shared::client::{fetch_thumbprint, MANAGER_PORT};
use strata_shared::model::*;
use strata_shared::{Client, Trust};
use uuid::Uuid;

/// Strata command-line client.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, propagate_version = true)]
struct Cli {
    /// Manager address: wss://HOST:PORT.
    #[arg(
        long,
        env = "STRATA_URL",
        default_value = "wss://127.0.0.1:8443",
        global = true
    )]
    url: String,
    /// User name.
    #[arg(long, env = "STRATA_USERNAME", default_value = "admin", global = true)]
    username: String,
    /// Password.
    #[arg(long, env = "STRATA_PASSWORD", hide_env_values = true, global = true)]
    password: Option<String>,
    /// Expected SHA-256 certificate thumbprint of the manager.
    #[arg(long, env = "STRATA_THUMBPRINT", global = true)]
    thumbprint: Option<String>,
    /// Accept any manager certificate (first contact only).
    #[arg(long, env = "STRATA_INSECURE", action = ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new(), global = true)]
    insecure: bool,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Prints the manager's certificate thumbprint (to check and pin it).
    Thumbprint,
    /// Hosts.
    #[command(subcommand)]
    Host(HostCmd),
    /// Clusters.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Virtual machines.
    #[command(subcommand)]
    Vm(VmCmd),
    /// Resource pools.
    #[command(subcommand)]
    Pool(pool::PoolCmd),
    /// Datastores and their files.
    #[command(subcommand)]
    Datastore(datastore::DatastoreCmd),
    /// Tasks.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Active alarms: what is wrong right now.
    #[command(subcommand)]
    Alarm(alarm::AlarmCmd),
    /// Recent events.
    Events {
        /// Only events about this VM or host (name or id).
        #[arg(long)]
        object: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Users.
    #[command(subcommand)]
    User(UserCmd),
    /// Performance samples (CPU MHz, memory) of a VM or host.
    Stats {
        /// VM or host (name or id).
        object: String,
        /// Only the last N minutes.
        #[arg(long, default_value_t = 60)]
        minutes: u32,
    },
}

#[derive(Subcommand, Debug)]
enum HostCmd {
    /// Adds a host agent to the inventory.
    Add {
        /// HOST:PORT of the agent.
        address: String,
        /// Agent user.
        #[arg(long, default_value = "root")]
        host_username: String,
        /// Agent password.
        #[arg(long, env = "STRATA_HOST_PASSWORD", hide_env_values = true)]
        host_password: String,
        /// The agent's certificate thumbprint (omit to be shown it).
        #[arg(long)]
        host_thumbprint: Option<String>,
        /// Cluster to join (name or id).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Lists hosts.
    List,
    /// Removes a host without VMs.
    Remove {
        /// Host (name, address or id).
        host: String,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Creates a cluster.
    Create {
        /// Name.
        name: String,
    },
    /// Lists clusters.
    List,
}

#[derive(Subcommand, Debug)]
enum VmCmd {
    /// Creates a VM.
    Create {
        /// Name.
        name: String,
        /// Host (name, address or id).
        #[arg(long)]
        host: String,
        /// Datastore on the host.
        #[arg(long)]
        datastore: Option<String>,
        /// vCPUs.
        #[arg(long, default_value_t = 1)]
        cpus: u32,
        /// Memory, MiB.
        #[arg(long, default_value_t = 256)]
        memory: u64,
        /// Kernel image on the host.
        #[arg(long)]
        kernel: String,
        /// Initramfs on the host.
        #[arg(long)]
        initrd: Option<String>,
        /// Extra kernel command line.
        #[arg(long, default_value = "")]
        cmdline: String,
        /// Engine: auto, native or qemu.
        #[arg(long, default_value = "auto")]
        engine: String,
        /// Machine: microvm or q35.
        #[arg(long, default_value = "microvm")]
        machine: String,
    },
    /// Lists VMs.
    List {
        /// Only on this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Shows one VM.
    Info {
        /// VM (name or id).
        vm: String,
    },
    /// Powers a VM on.
    PowerOn {
        /// VM.
        vm: String,
    },
    /// Shuts a VM down (hard stop after the timeout).
    PowerOff {
        /// VM.
        vm: String,
        /// Stop at once without asking the guest.
        #[arg(long)]
        hard: bool,
        /// Seconds the guest gets to shut down.
        #[arg(long)]
        timeout: Option<u32>,
    },
    /// Resets a VM.
    Reset {
        /// VM.
        vm: String,
    },
    /// Saves a running VM's state to its datastore and stops it; `power-on` resumes it.
    Suspend {
        /// VM.
        vm: String,
    },
    /// Stops a running VM's vCPUs (it keeps its memory).
    Pause {
        /// VM.
        vm: String,
    },
    /// Lets a paused VM run again.
    Unpause {
        /// VM.
        vm: String,
    },
    /// Deletes a powered-off VM and its files.
    Destroy {
        /// VM.
        vm: String,
    },
    /// Prints the serial console log.
    ConsoleLog {
        /// VM.
        vm: String,
        /// Keep printing new output.
        #[arg(long, short)]
        follow: bool,
        /// Only the last N bytes.
        #[arg(long)]
        tail: Option<u32>,
    },
    /// Changes a VM's CPU/memory reservation, limit and shares (applies live).
    SetAllocation {
        /// VM.
        vm: String,
        #[command(flatten)]
        allocation: pool::AllocationArgs,
    },
    /// Renames a VM and/or changes its vCPUs, memory (powered off) and kernel command line.
    Reconfigure {
        /// VM.
        vm: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New number of vCPUs (VM powered off).
        #[arg(long)]
        cpus: Option<u32>,
        /// New memory, MiB (VM powered off).
        #[arg(long)]
        memory: Option<u64>,
        /// New extra kernel command line ("" clears it; used from the next boot).
        #[arg(long)]
        cmdline: Option<String>,
    },
    /// Moves a VM into a resource pool.
    Move {
        /// VM.
        vm: String,
        /// Pool (name or id); omit for the root.
        #[arg(long)]
        pool: Option<String>,
    },
    /// Manages the VM's virtual disks.
    #[command(subcommand)]
    Disk(disk::DiskCmd),
    /// Manages the VM's snapshots.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCmd),
    /// Clones a powered-off VM or template (full copy, or --linked through a snapshot).
    Clone {
        /// Source VM or template.
        vm: String,
        /// The new VM's name.
        name: String,
        /// Linked clone: disks read through a snapshot of the source (fast, small).
        #[arg(long)]
        linked: bool,
        /// Snapshot to clone from (default: the source's current one).
        #[arg(long)]
        snapshot: Option<String>,
        /// Guest host name (set on the new VM's kernel command line).
        #[arg(long)]
        hostname: Option<String>,
        /// Make the new VM a template.
        #[arg(long)]
        template: bool,
    },
    /// Marks a powered-off VM as a template (--off: back to a VM).
    Template {
        /// VM.
        vm: String,
        /// Turn a template back into an ordinary VM.
        #[arg(long)]
        off: bool,
    },
    /// Prints a one-time console address for any VNC client (and the WebSocket URL):
    /// valid once, for 30 seconds.
    ConsoleUrl {
        /// VM (running).
        vm: String,
    },
    /// Types a line into the serial console.
    ConsoleSend {
        /// VM.
        vm: String,
        /// Text (a newline is added unless --no-enter).
        text: String,
        /// Do not press Enter after the text.
        #[arg(long)]
        no_enter: bool,
    },
}

#[derive(Subcommand, Debug)]
enum TaskCmd {
    /// Waits for a task and prints it.
    Wait {
        /// Task id.
        id: Uuid,
        /// Seconds to wait.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Recent tasks.
    List {
        /// Only queued or running.
        #[arg(long)]
        active: bool,
    },
}

#[derive(Subcommand, Debug)]
enum UserCmd {
    /// Creates a user.
    Create {
        /// Name.
        name: String,
        /// Role: readOnly, operator or admin.
        #[arg(long)]
        role: String,
        /// Password (at least 8 characters).
        #[arg(long, env = "STRATA_NEW_USER_PASSWORD", hide_env_values = true)]
        new_password: String,
    },
    /// Lists users.
    List,
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("strata: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) struct Ctx {
    client: Client,
    json: bool,
}

impl Ctx {
    pub(crate) fn print<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{text}");
            }
        }
        Ok(())
    }

    pub(crate) async fn call<M: Method>(&self, p: M::Params) -> anyhow::Result<M::Result> {
        Ok(self.client.call::<M>(p).await?)
    }

    pub(crate) async fn run_task<M: Method<Result = TaskInfo>>(
        &self,
        p: M::Params,
    ) -> anyhow::Result<TaskInfo> {
        let t = self
            .client
            .run_task::<M>(p, Duration::from_secs(3600))
            .await?;
        Ok(t)
    }

    pub(crate) async fn vm(&self, name: &str) -> anyhow::Result<VmInfo> {
        let vms = self.call::<m::VmList>(VmListParams::default()).await?;
        vms.into_iter()
            .find(|v| v.name == name || v.id.to_string() == name)
            .ok_or_else(|| anyhow!("no VM named {name:?}"))
    }

    pub(crate) async fn host(&self, name: &str) -> anyhow::Result<HostInfo> {
        let hosts = self.call::<m::HostList>(Empty {}).await?;
        hosts
            .into_iter()
            .find(|h| h.name == name || h.address == name || h.id.to_string() == name)
            .ok_or_else(|| anyhow!("no host named {name:?}"))
    }
}

async fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let trust = match (&cli.thumbprint, cli.insecure) {
        (Some(t), _) => Trust::Thumbprint(t.clone()),
        (None, true) => Trust::Insecure,
        (None, false) => bail!(
            "the manager's certificate is not pinned: set STRATA_THUMBPRINT (the server prints it at start; `strata thumbprint` shows it) or STRATA_INSECURE=1"
        ),
    };
    let client = Client::connect_with_port(&cli.url, trust, MANAGER_PORT).await?;
    let password = cli
        .password
        .clone()
        .ok_or_else(|| anyhow!("no password: set STRATA_PASSWORD"))?;
    client
        .login(&cli.username, &password)
        .await
        .context("login failed")?;
    Ok(client)
}

fn vm_rows(vms: &[VmInfo], hosts: &[HostInfo]) -> String {
    let rows: Vec<Vec<String>> = vms
        .iter()
        .map(|v| {
            let host = v
                .host
                .and_then(|h| hosts.iter().find(|x| x.id == h))
                .map(|h| h.name.clone())
                .unwrap_or_default();
            vec![
                v.name.clone(),
                v.power_state.to_string(),
                v.spec.vcpus.to_string(),
                format!("{} MiB", v.spec.memory_mib),
                host,
                v.id.to_string(),
            ]
        })
        .collect();
    format::table(&["NAME", "POWER", "CPUS", "MEMORY", "HOST", "ID"], &rows)
}

fn parse_engine(s: &str) -> anyhow::Result<Engine> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| anyhow!("engine must be auto, native or qemu"))
}

fn parse_machine(s: &str) -> anyhow::Result<Machine> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| anyhow!("machine must be microvm or q35"))
}

pub(crate) fn task_done(t: &TaskInfo) -> String {
    format!("{}: {}", t.description, t.state)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Thumbprint = cli.command {
        let t = fetch_thumbprint(&cli.url, MANAGER_PORT).await?;
        if cli.json {
            println!("{}", serde_json::json!({ "thumbprint": t }));
        } else {
            println!("{t}");
        }
        return Ok(());
    }
    let ctx = Ctx {
        client: connect(&cli).await?,
        json: cli.json,
    };
    match cli.command {
        Command::Thumbprint => {}
        Command::Host(HostCmd::Add {
            address,
            host_username,
            host_password,
            host_thumbprint,
            cluster,
        }) => {
            let cluster = match cluster {
                Some(c) => Some(
                    ctx.call::<m::ClusterList>(Empty {})
                        .await?
                        .into_iter()
                        .find(|x| x.name == c || x.id.to_string() == c)
                        .ok_or_else(|| anyhow!("no cluster named {c:?}"))?
                        .id,
                ),
                None => None,
            };
            let p = HostAddParams {
                address,
                username: host_username,
                password: host_password,
                thumbprint: host_thumbprint,
                cluster,
            };
            let t = ctx.run_task::<m::HostAdd>(p).await?;
            ctx.print(&t, || task_done(&t))?;
        }
        Command::Host(HostCmd::List) => {
            let hosts = ctx.call::<m::HostList>(Empty {}).await?;
            ctx.print(&hosts, || {
                let rows: Vec<Vec<String>> = hosts
                    .iter()
                    .map(|h| {
                        let f = h.facts.as_ref();
                        vec![
                            h.name.clone(),
                            h.address.clone(),
                            h.connection_state.to_string(),
                            f.map(|f| format!("{} × {} MHz", f.cpu_count, f.cpu_mhz))
                                .unwrap_or_default(),
                            f.map(|f| format::bytes(f.memory_mib << 20))
                                .unwrap_or_default(),
                            h.id.to_string(),
                        ]
                    })
                    .collect();
                format::table(&["NAME", "ADDRESS", "STATE", "CPU", "MEMORY", "ID"], &rows)
            })?;
        }
        Command::Host(HostCmd::Remove { host }) => {
            let h = ctx.host(&host).await?;
            let t = ctx.run_task::<m::HostRemove>(IdParams { id: h.id }).await?;
            ctx.print(&t, || task_done(&t))?;
        }
        Command::Cluster(ClusterCmd::Create { name }) => {
            let c = ctx
                .call::<m::ClusterCreate>(ClusterCreateParams {
                    name,
                    datacenter: None,
                })
                .await?;
            ctx.print(&c, || format!("cluster {} created ({})", c.name, c.id))?;
        }
        Command::Cluster(ClusterCmd::List) => {
            let cs = ctx.call::<m::ClusterList>(Empty {}).await?;
            ctx.print(&cs, || {
                format::table(
                    &["NAME", "ID"],
                    &cs.iter()
                        .map(|c| vec![c.name.clone(), c.id.to_string()])
                        .collect::<Vec<_>>(),
                )
            })?;
        }
        Command::Vm(cmd) => vm_command(&ctx, cmd).await?,
        Command::Pool(cmd) => pool::run(&ctx, cmd).await?,
        Command::Datastore(cmd) => datastore::run(&ctx, cmd).await?,
        Command::Alarm(cmd) => alarm::run(&ctx, cmd).await?,
        Command::Task(TaskCmd::Wait { id, timeout }) => {
            let t = ctx
                .client
                .wait_task(id, Duration::from_secs(timeout))
                .await?;
            ctx.print(&t, || task_done(&t))?;
            if t.state == TaskState::Error {
                bail!(
                    "{}",
                    t.error
                        .map(|e| e.message)
                        .unwrap_or_else(|| "task failed".into())
                );
            }
        }
        Command::Task(TaskCmd::List { active }) => {
            let ts = ctx
                .call::<m::TaskList>(TaskListParams {
                    limit: Some(50),
                    active_only: active,
                })
                .await?;
            ctx.print(&ts, || {
                let rows: Vec<Vec<String>> = ts
                    .iter()
                    .map(|t| {
                        vec![
                            format::time(t.queued_ms),
                            t.description.clone(),
                            t.state.to_string(),
                            format!("{}%", t.progress),
                            t.user.clone(),
                            t.error
                                .as_ref()
                                .map(|e| e.message.clone())
                                .unwrap_or_default(),
                        ]
                    })
                    .collect();
                format::table(&["QUEUED", "TASK", "STATE", "DONE", "USER", "ERROR"], &rows)
            })?;
        }
        Command::Stats { object, minutes } => {
            let id = match ctx.vm(&object).await {
                Ok(v) => v.id,
                Err(_) => ctx.host(&object).await?.id,
            };
            let since = strata_shared::now_ms() - i64::from(minutes) * 60_000;
            let samples = ctx
                .call::<m::StatsQuery>(StatsQueryParams {
                    id,
                    since_ms: Some(since),
                })
                .await?;
            ctx.print(&samples, || {
                let rows: Vec<Vec<String>> = samples
                    .iter()
                    .map(|s| {
                        vec![
                            format::time(s.time_ms),
                            format!("{:.0}", s.cpu_mhz),
                            format!("{:.1}", s.memory_mib),
                        ]
                    })
                    .collect();
                format::table(&["TIME", "CPU MHZ", "MEMORY MIB"], &rows)
            })?;
        }
        Command::Events { object, limit } => {
            let object = match object {
                Some(o) => Some(match ctx.vm(&o).await {
                    Ok(v) => v.id,
                    Err(_) => ctx.host(&o).await?.id,
                }),
                None => None,
            };
            let es = ctx
                .call::<m::EventList>(EventListParams {
                    object,
                    after_id: None,
                    limit: Some(limit),
                })
                .await?;
            ctx.print(&es, || {
                let rows: Vec<Vec<String>> = es
                    .iter()
                    .rev()
                    .map(|e| {
                        vec![
                            format::time(e.time_ms),
                            e.severity.as_str().into(),
                            e.kind.clone(),
                            e.message.clone(),
                        ]
                    })
                    .collect();
                format::table(&["TIME", "SEVERITY", "KIND", "MESSAGE"], &rows)
            })?;
        }
        Command::User(UserCmd::Create {
            name,
            role,
            new_password,
        }) => {
            let role = Role::parse(&role)
                .ok_or_else(|| anyhow!("role must be readOnly, operator or admin"))?;
            let u = ctx
                .call::<m::UserCreate>(UserCreateParams {
                    username: name,
                    password: new_password,
                    role,
                })
                .await?;
            ctx.print(&u, || {
                format!("user {} created ({})", u.username, u.role.as_str())
            })?;
        }
        Command::User(UserCmd::List) => {
            let us = ctx.call::<m::UserList>(Empty {}).await?;
            ctx.print(&us, || {
                format::table(
                    &["USER", "ROLE"],
                    &us.iter()
                        .map(|u| vec![u.username.clone(), u.role.as_str().into()])
                        .collect::<Vec<_>>(),
                )
            })?;
        }
    }
    Ok(())
}

async fn vm_command(ctx: &Ctx, cmd: VmCmd) -> anyhow::Result<()> {
    match cmd {
        VmCmd::Create {
            name,
            host,
            datastore,
            cpus,
            memory,
            kernel,
            initrd,
            cmdline,
            engine,
            machine,
        } => {
            let host = ctx.host(&host).await?;
            let spec = VmSpec {
                vcpus: cpus,
                memory_mib: memory,
                engine: parse_engine(&engine)?,
                machine: parse_machine(&machine)?,
                boot: BootSpec {
                    kernel,
                    initrd,
                    cmdline,
                },
                allocation: Default::default(),
                disks: Vec::new(),
                template: false,
                nics: Vec::new(),
            };
            let t = ctx
                .run_task::<m::VmCreate>(VmCreateParams {
                    name,
                    host: host.id,
                    datastore,
                    spec,
                })
                .await?;
            ctx.print(&t, || task_done(&t))?;
        }
        VmCmd::List { host } => {
            let host_id = match host {
                Some(h) => Some(ctx.host(&h).await?.id),
                None => None,
            };
            let vms = ctx
                .call::<m::VmList>(VmListParams { host: host_id })
                .await?;
            let hosts = ctx.call::<m::HostList>(Empty {}).await?;
            ctx.print(&vms, || vm_rows(&vms, &hosts))?;
        }
        VmCmd::Info { vm } => {
            let v = ctx.vm(&vm).await?;
            ctx.print(&v, || {
                let b = &v.spec.boot;
                [
                    format!("Name:      {}", v.name),
                    format!("Id:        {}", v.id),
                    format!("Power:     {}", v.power_state),
                    format!("CPUs:      {}", v.spec.vcpus),
                    format!("Memory:    {} MiB", v.spec.memory_mib),
                    format!("Engine:    {}", v.spec.engine),
                    format!("Datastore: {}", v.datastore),
                    format!("Kernel:    {}", b.kernel),
                    format!("Initrd:    {}", b.initrd.clone().unwrap_or_default()),
                    format!("Cmdline:   {}", b.cmdline),
                    format!("Created:   {}", format::time(v.created_ms)),
                ]
                .join("\n")
            })?;
        }
        VmCmd::PowerOn { vm } => {
            let v = ctx.vm(&vm).await?;
            let t = ctx.run_task::<m::VmPowerOn>(IdParams { id: v.id }).await?;
            ctx.print(&t, || task_done(&t))?;
        }
        VmCmd::PowerOff { vm, hard, timeout } => {
            let v = ctx.vm(&vm).await?;
            let t = ctx
                .run_task::<m::VmPowerOff>(PowerOffParams {
                    id: v.id,
                    hard,
                    timeout_secs: timeout,
                })
                .await?;
            ctx.print(&t, || task_done(&t))?;
        }
        VmCmd::Reset { vm } => {
            let v = ctx.vm(&vm).await?;
            let t = ctx.run_task::<m::VmReset>(IdParams { id: v.id }).await?;
            ctx.print(&t, || task_done(&t))?;
        }
        VmCmd::Suspend { vm } => {
            let v = ctx.vm(&vm).await?;
            let t = ctx.run_task::<m::VmSuspend>(IdParams { id: v.id }).await?;
            ctx.print(&t, || task_done(&t))?;
        }
        VmCmd::Pause { vm } => {
            let v = ctx.vm(&vm).await?;
            let t = ctx.run_task::<m::VmPause>(IdParams { id: v.id }).await?;
            ctx.print(&t, || task_done(&t))?;
        }
        VmCmd::Unpause { vm } => {
            let v = ctx.vm(&vm).await?;
            let t = ctx.run_task::<m::VmUnpause>(IdParams { id: v.id }).await?;
            ctx.print(&t, || task_done(&t))?;
        }
        VmCmd::Destroy { vm } => {
            let v = ctx.vm(&vm).await?;
            let t = ctx.run_task::<m::VmDestroy>(IdParams { id: v.id }).await?;
            ctx.print(&t, || task_done(&t))?;
        }
        VmCmd::ConsoleLog { vm, follow, tail } => {
            let v = ctx.vm(&vm).await?;
            let mut offset = tail.map(|t| -i64::from(t)).unwrap_or(0);
            loop {
                let chunk = ctx
                    .call::<m::VmConsoleRead>(ConsoleReadParams {
                        id: v.id,
                        offset,
                        max_bytes: None,
                    })
                    .await?;
                if ctx.json {
                    println!("{}", serde_json::to_string(&chunk)?);
                } else {
                    use std::io::Write;
                    print!("{}", chunk.data);
                    let _ = std::io::stdout().flush();
                }
                offset = chunk.next_offset as i64;
                if !follow {
                    break;
                }
                if chunk.next_offset >= chunk.size {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        VmCmd::SetAllocation { vm, allocation } => {
            let v = ctx.vm(&vm).await?;
            let a = allocation.apply(v.spec.allocation)?;
            let v = ctx
                .call::<m::VmSetAllocation>(VmAllocationParams {
                    id: v.id,
                    allocation: a,
                })
                .await?;
            ctx.print(&v, || format!("VM {} reconfigured", v.name))?;
        }
        VmCmd::Reconfigure {
            vm,
            name,
            cpus,
            memory,
            cmdline,
        } => {
            let v = ctx.vm(&vm).await?;
            let t = ctx
                .run_task::<m::VmReconfigure>(m::VmReconfigureParams {
                    id: v.id,
                    name,
                    vcpus: cpus,
                    memory_mib: memory,
                    cmdline,
                })
                .await?;
            ctx.print(&t, || task_done(&t))?;
        }
        VmCmd::Move { vm, pool } => {
            let v = ctx.vm(&vm).await?;
            let pool = match pool {
                Some(p) => Some(
                    ctx.call::<m::PoolList>(PoolListParams::default())
                        .await?
                        .into_iter()
                        .find(|x| x.name == p || x.id.to_string() == p)
                        .ok_or_else(|| anyhow!("no resource pool named {p:?}"))?
                        .id,
                ),
                None => None,
            };
            let v = ctx
                .call::<m::VmMove>(VmMoveParams { id: v.id, pool })
                .await?;
            ctx.print(&v, || format!("VM {} moved", v.name))?;
        }
        VmCmd::Disk(cmd) => disk::run(ctx, cmd).await?,
        VmCmd::Snapshot(cmd) => snapshot::run(ctx, cmd).await?,
        VmCmd::Clone {
            vm,
            name,
            linked,
            snapshot,
            hostname,
            template,
        } => snapshot::clone(ctx, &vm, name, linked, snapshot, hostname, template).await?,
        VmCmd::Template { vm, off } => snapshot::set_template(ctx, &vm, !off).await?,
        VmCmd::ConsoleUrl { vm } => {
            let v = ctx.vm(&vm).await?;
            let t = ctx
                .call::<m::VmConsoleTicket>(IdParams { id: v.id })
                .await?;
            ctx.print(&t, || format::console_ticket(&t))?;
        }
        VmCmd::ConsoleSend { vm, text, no_enter } => {
            let v = ctx.vm(&vm).await?;
            let data = if no_enter { text } else { format!("{text}\n") };
            ctx.call::<m::VmConsoleSend>(ConsoleSendParams { id: v.id, data })
                .await?;
        }
    }
    Ok(())
}
