//! The network side: a tokio runtime on its own threads and one task owning the SDK client.
//! The UI sends [`Request`]s with `try_send` and drains [`NetEvent`]s with `try_recv` each
//! frame; every event sent wakes the UI with `request_repaint`. The UI thread never waits.
//!
//! The connection is to a manager, or straight to one host agent ([`direct`]): `server.info`
//! says which, right after the connection is made.

pub mod direct;

use std::sync::Arc;
use std::time::Duration;

use strata_shared::api::manager as m;
use strata_shared::api::{notifications, Method};
use strata_shared::model::{
    AlarmChange, AlarmInfo, AlarmListParams, ClusterCreateParams, ConsoleTicket, DiskFormat, Empty,
    EventInfo, EventListParams, HostAddParams, IdParams, Inventory, InventoryChange, ObjectRef,
    PoolCreateParams, PoolDeleteParams, PoolUpdateParams, PoolUsage, Provisioning, ServerKind,
    StatSample, StatsQueryParams, TaskInfo, TaskListParams, TaskState, VmAllocationParams, VmInfo,
    VmMoveParams,
};
use strata_shared::rpc::Notification;
use strata_shared::{Client, ClientError, Trust};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

/// Capacity of the request channel (UI → network).
const REQUEST_CAPACITY: usize = 64;
/// Capacity of the event channel (network → UI).
const EVENT_CAPACITY: usize = 4096;

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The runtime could not start.
    #[error("cannot start the network runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// Too many requests are waiting.
    #[error("the network layer is busy; try again")]
    Busy,
    /// The network thread is gone.
    #[error("the network layer has stopped")]
    Stopped,
}

/// A power or lifecycle operation on an object, each one a server task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `vm.powerOn`.
    PowerOn,
    /// `vm.powerOff` (guest shutdown, then hard stop).
    PowerOff,
    /// `vm.powerOff` with `hard`.
    PowerOffHard,
    /// `vm.reset`.
    Reset,
    /// `vm.suspend`.
    Suspend,
    /// `vm.pause`.
    Pause,
    /// `vm.unpause`.
    Unpause,
    /// `vm.destroy`.
    Destroy,
    /// `host.remove`.
    RemoveHost,
}

impl Operation {
    /// What it does, in words.
    pub fn label(self) -> &'static str {
        match self {
            Operation::PowerOn => "Power on",
            Operation::PowerOff => "Shut down",
            Operation::PowerOffHard => "Power off",
            Operation::Reset => "Reset",
            Operation::Suspend => "Suspend",
            Operation::Pause => "Pause",
            Operation::Unpause => "Unpause",
            Operation::Destroy => "Remove VM",
            Operation::RemoveHost => "Remove host",
        }
    }
}

/// What the UI asks of the network side.
#[derive(Debug)]
pub enum Request {
    /// Fetch the certificate thumbprint a server presents (first contact).
    FetchThumbprint {
        /// Server address.
        url: String,
    },
    /// Connect with a pinned thumbprint, log in, subscribe and load everything.
    Connect {
        /// Server address.
        url: String,
        /// The trusted thumbprint.
        thumbprint: String,
        /// User name.
        username: String,
        /// Password (never logged).
        password: Secret,
    },
    /// Start an operation on an object.
    Run {
        /// What.
        op: Operation,
        /// On which object.
        target: Uuid,
    },
    /// Fetch `stats.query` of a VM or host.
    Stats {
        /// The VM or host.
        id: Uuid,
    },
    /// Fetch `pool.usage` of a standalone host or cluster.
    PoolUsage {
        /// The host or cluster.
        owner: Uuid,
    },
    /// Change a resource pool or a VM's allocation; shown in Recent Tasks as it runs.
    Pool {
        /// What to change.
        op: PoolOp,
        /// What the task list calls it, e.g. "Create resource pool".
        label: String,
        /// The object it is about (for a new pool, its parent).
        target: Option<ObjectRef>,
        /// Echoed in [`NetEvent::PoolDone`] so the asker knows its answer.
        token: u64,
    },
    /// Run an action of a dialog; the answer is [`NetEvent::ActionDone`].
    Action {
        /// What to do.
        action: Action,
        /// What Recent Tasks and error messages call it, e.g. "Create cluster Prod".
        label: String,
        /// The object it is about (for a local task entry).
        target: Option<ObjectRef>,
        /// Echoed in [`NetEvent::ActionDone`].
        token: u64,
    },
    /// Fetch the certificate thumbprint a host agent presents (before `host.add`).
    HostThumbprint {
        /// `HOST[:PORT]` of the agent.
        address: String,
        /// Echoed in [`NetEvent::HostThumbprint`].
        token: u64,
    },
    /// Get a console ticket for a VM (`vm.consoleTicket`); the answer goes to `reply`.
    ConsoleTicket {
        /// The VM.
        vm: Uuid,
        /// Where the ticket, or why not in words, goes.
        reply: oneshot::Sender<Result<ConsoleTicket, String>>,
    },
    /// Acknowledge an alarm (`alarm.acknowledge`); a refusal comes back as
    /// [`NetEvent::ActionFailed`].
    AcknowledgeAlarm {
        /// The alarm.
        id: Uuid,
    },
    /// Close the connection.
    Disconnect,
}

/// A resource-pool change (`pool.*`, `vm.setAllocation`); these answer at once instead of
/// returning a server task.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolOp {
    /// `pool.create`.
    Create(PoolCreateParams),
    /// `pool.update`.
    Update(PoolUpdateParams),
    /// `pool.delete`.
    Delete(PoolDeleteParams),
    /// `vm.setAllocation`.
    VmAllocation(VmAllocationParams),
}

impl PoolOp {
    /// The API method.
    pub fn method(&self) -> &'static str {
        match self {
            PoolOp::Create(_) => m::PoolCreate::NAME,
            PoolOp::Update(_) => m::PoolUpdate::NAME,
            PoolOp::Delete(_) => m::PoolDelete::NAME,
            PoolOp::VmAllocation(_) => m::VmSetAllocation::NAME,
        }
    }
}

/// A disk the New VM wizard adds after creating the VM (`vm.diskCreate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewDisk {
    /// Size, MiB.
    pub size_mib: u64,
    /// File format.
    pub format: DiskFormat,
    /// Thin or thick.
    pub provisioning: Provisioning,
}

impl NewDisk {
    /// `vm.diskCreate` params for this disk on `vm`.
    fn params(&self, vm: Uuid) -> m::DiskCreateParams {
        m::DiskCreateParams {
            id: vm,
            size_mib: self.size_mib,
            format: self.format,
            provisioning: self.provisioning,
            read_only: false,
            file: None,
        }
    }

    /// In words: adding this disk, the `index`-th (from 0), to new VM `vm` failed.
    fn failed(&self, vm: &str, index: usize, why: &str) -> String {
        format!(
            "VM {vm} was created, but adding its disk {} of {} MiB failed: {why}",
            index + 1,
            self.size_mib
        )
    }
}

/// In words: powering new VM `vm` on failed.
fn power_on_failed(vm: &str, why: &str) -> String {
    format!("VM {vm} was created, but powering it on failed: {why}")
}

/// What a dialog asks the server to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `vm.create` (a task), then each disk with `vm.diskCreate` (a task each), then
    /// `vm.powerOn` when asked. Accepted once `vm.create` is; later steps report failures
    /// as [`NetEvent::ActionFailed`].
    CreateVm {
        /// The VM.
        params: m::VmCreateParams,
        /// Disks to add.
        disks: Vec<NewDisk>,
        /// Power it on at the end.
        power_on: bool,
    },
    /// `host.add` (a task).
    AddHost {
        /// `HOST:PORT` of the agent.
        address: String,
        /// The agent's administrator.
        username: String,
        /// Its password.
        password: Secret,
        /// The thumbprint the user confirmed.
        thumbprint: String,
        /// Cluster to join.
        cluster: Option<uuid::Uuid>,
    },
    /// `cluster.create` (answers at once).
    CreateCluster(ClusterCreateParams),
    /// `vm.reconfigure` (a task).
    Reconfigure(m::VmReconfigureParams),
    /// `vm.move` (answers at once).
    MoveVm(VmMoveParams),
}

impl Action {
    /// The API method it starts with.
    pub fn method(&self) -> &'static str {
        match self {
            Action::CreateVm { .. } => m::VmCreate::NAME,
            Action::AddHost { .. } => m::HostAdd::NAME,
            Action::CreateCluster(_) => m::ClusterCreate::NAME,
            Action::Reconfigure(_) => m::VmReconfigure::NAME,
            Action::MoveVm(_) => m::VmMove::NAME,
        }
    }
}

/// A password that does not show in `Debug` output.
#[derive(Clone, Default, PartialEq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the network side reports to the UI.
#[derive(Debug)]
pub enum NetEvent {
    /// The thumbprint a server presented.
    Thumbprint {
        /// Server address as typed.
        url: String,
        /// SHA-256 thumbprint.
        thumbprint: String,
    },
    /// Logged in and loaded.
    Connected {
        /// `host:port`.
        address: String,
        /// Who is logged in.
        username: String,
        /// Full inventory.
        inventory: Inventory,
        /// Recent tasks.
        tasks: Vec<TaskInfo>,
        /// Recent events.
        events: Vec<EventInfo>,
        /// Active alarms.
        alarms: Vec<AlarmInfo>,
        /// Connected straight to a host agent, not to a manager.
        direct: bool,
    },
    /// A connection attempt or the connection failed.
    ConnectFailed(String),
    /// The connection dropped or was closed.
    Disconnected(Option<String>),
    /// Notifications were lost (the UI fell behind): here is a fresh inventory.
    Reloaded(Inventory),
    /// An inventory delta.
    Inventory(InventoryChange),
    /// A task's new state.
    Task(TaskInfo),
    /// A new event.
    Event(EventInfo),
    /// An alarm was triggered, changed or cleared.
    Alarm(AlarmChange),
    /// Notifications were lost: here are the active alarms afresh.
    AlarmsReloaded(Vec<AlarmInfo>),
    /// The answer to [`Request::Stats`].
    Stats {
        /// The VM or host.
        id: Uuid,
        /// Its samples, or why not, in words.
        result: Result<Vec<StatSample>, String>,
    },
    /// The answer to [`Request::PoolUsage`].
    PoolUsage {
        /// The host or cluster.
        owner: Uuid,
        /// Its tree's usage, or why not, in words.
        result: Result<Vec<PoolUsage>, String>,
    },
    /// A [`Request::Pool`] finished.
    PoolDone {
        /// The request's token.
        token: u64,
        /// What was tried, in words.
        label: String,
        /// Done, or the server's refusal in words.
        result: Result<(), String>,
    },
    /// A [`Request::Action`] was accepted (its task started, or it was done) or refused.
    ActionDone {
        /// The request's token.
        token: u64,
        /// What was tried, in words.
        label: String,
        /// Accepted, or the refusal in words.
        result: Result<(), String>,
    },
    /// A later step of an accepted action failed (e.g. a new VM's disk), in words.
    ActionFailed {
        /// What failed.
        message: String,
    },
    /// The answer to [`Request::HostThumbprint`].
    HostThumbprint {
        /// The request's token.
        token: u64,
        /// The thumbprint, or why not in words.
        result: Result<String, String>,
    },
    /// An operation could not be started, in words.
    OperationFailed {
        /// What was tried.
        op: Operation,
        /// Why not.
        message: String,
    },
}

/// Wakes the UI when the network side has news (egui's `request_repaint` in the app).
pub type Waker = std::sync::Arc<dyn Fn() + Send + Sync>;

/// The UI's handle on the network side.
pub struct Network {
    requests: mpsc::Sender<Request>,
    events: mpsc::Receiver<NetEvent>,
    runtime: tokio::runtime::Runtime,
}

impl Network {
    /// Starts the runtime (two named worker threads) and the connection task.
    pub fn start(waker: Waker) -> Result<Network, NetError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-net")
            .enable_all()
            .build()?;
        let (req_tx, req_rx) = mpsc::channel(REQUEST_CAPACITY);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_CAPACITY);
        runtime.spawn(connection_task(req_rx, Outbox { tx: ev_tx, waker }));
        Ok(Network {
            requests: req_tx,
            events: ev_rx,
            runtime,
        })
    }

    /// Queues a request without waiting.
    pub fn send(&self, req: Request) -> Result<(), NetError> {
        self.requests.try_send(req).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NetError::Busy,
            mpsc::error::TrySendError::Closed(_) => NetError::Stopped,
        })
    }

    /// The next event, if one is waiting.
    pub fn try_recv(&mut self) -> Option<NetEvent> {
        self.events.try_recv().ok()
    }

    /// The network runtime (console sessions run on it).
    pub fn runtime(&self) -> tokio::runtime::Handle {
        self.runtime.handle().clone()
    }

    /// Fetches fresh console tickets for `vm` from the connected manager, one per call.
    pub fn ticket_source(&self, vm: Uuid) -> crate::app::console::TicketSource {
        let requests = self.requests.clone();
        std::sync::Arc::new(move || {
            let requests = requests.clone();
            Box::pin(async move {
                let stopped = || NetError::Stopped.to_string();
                let (reply, answer) = oneshot::channel();
                requests
                    .send(Request::ConsoleTicket { vm, reply })
                    .await
                    .map_err(|_| stopped())?;
                answer.await.map_err(|_| stopped())?
            })
        })
    }
}

#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<NetEvent>,
    waker: Waker,
}

impl Outbox {
    async fn send(&self, ev: NetEvent) {
        // Waits only when the UI is far behind (bounded channel); never blocks the UI.
        let _ = self.tx.send(ev).await;
        (self.waker)();
    }
}

/// What the connection is to.
#[derive(Clone)]
enum Link {
    /// A manager.
    Manager(Client),
    /// One host agent, directly.
    Agent(Arc<direct::AgentLink>),
}

impl Link {
    fn client(&self) -> &Client {
        match self {
            Link::Manager(c) => c,
            Link::Agent(a) => &a.client,
        }
    }
}

/// Owns the SDK client: connects, relays notifications and runs operations.
async fn connection_task(mut requests: mpsc::Receiver<Request>, out: Outbox) {
    let mut client: Option<Link> = None;
    let mut notes: Option<broadcast::Receiver<Notification>> = None;
    let mut session_user = String::new();
    loop {
        tokio::select! {
            req = requests.recv() => {
                let Some(req) = req else { break };
                match req {
                    Request::FetchThumbprint { url } => {
                        let out = out.clone();
                        tokio::spawn(async move {
                            let ev = match strata_shared::client::fetch_thumbprint(&url, strata_shared::client::MANAGER_PORT).await {
                                Ok(thumbprint) => NetEvent::Thumbprint { url, thumbprint },
                                Err(e) => NetEvent::ConnectFailed(e.to_string()),
                            };
                            out.send(ev).await;
                        });
                    }
                    Request::Connect { url, thumbprint, username, password } => {
                        client = None;
                        notes = None;
                        match connect(&url, &thumbprint, &username, &password.0).await {
                            Ok((c, n, ev)) => {
                                tracing::info!(server = %c.client().address(), user = %username, "connected");
                                if let NetEvent::Connected { username: u, .. } = &ev {
                                    session_user.clone_from(u);
                                }
                                client = Some(c);
                                notes = Some(n);
                                out.send(ev).await;
                            }
                            Err(e) => out.send(NetEvent::ConnectFailed(describe(&e))).await,
                        }
                    }
                    Request::Run { op, target } => {
                        let Some(link) = client.clone() else {
                            out.send(NetEvent::OperationFailed { op, message: "not connected to a server".into() }).await;
                            continue;
                        };
                        let out = out.clone();
                        let user = session_user.clone();
                        tokio::spawn(async move {
                            match link {
                                Link::Manager(c) => match run(&c, op, target).await {
                                    Ok(task) => out.send(NetEvent::Task(task)).await,
                                    Err(e) => out.send(NetEvent::OperationFailed { op, message: describe(&e) }).await,
                                },
                                Link::Agent(a) => a.run(op, target, &user, &out).await,
                            }
                        });
                    }
                    Request::Stats { id } => {
                        let out = out.clone();
                        let c = client.clone();
                        tokio::spawn(async move {
                            let result = match c {
                                Some(Link::Manager(c)) => c.call::<m::StatsQuery>(StatsQueryParams { id, since_ms: None }).await.map_err(|e| describe(&e)),
                                Some(Link::Agent(a)) => a.stats(id).await,
                                None => Err("not connected to a server".into()),
                            };
                            out.send(NetEvent::Stats { id, result }).await;
                        });
                    }
                    Request::PoolUsage { owner } => {
                        let out = out.clone();
                        let c = client.clone();
                        tokio::spawn(async move {
                            let result = match c {
                                Some(Link::Manager(c)) => c.call::<m::PoolUsageGet>(IdParams { id: owner }).await.map_err(|e| describe(&e)),
                                Some(Link::Agent(_)) => Err(direct::NEEDS_MANAGER.into()),
                                None => Err("not connected to a server".into()),
                            };
                            out.send(NetEvent::PoolUsage { owner, result }).await;
                        });
                    }
                    Request::Pool { op, label, target, token } => {
                        let out = out.clone();
                        let c = client.clone();
                        let user = session_user.clone();
                        tokio::spawn(async move {
                            let mut task = local_task(op.method(), &label, target, &user);
                            out.send(NetEvent::Task(task.clone())).await;
                            let unavailable = |why: &str| Err(ClientError::Rpc(strata_shared::RpcError::new(
                                strata_shared::ErrorCode::Unavailable,
                                why,
                            )));
                            let result = match c {
                                Some(Link::Manager(c)) => run_pool(&c, op).await,
                                Some(Link::Agent(_)) => unavailable(direct::NEEDS_MANAGER),
                                None => unavailable("not connected to a server"),
                            };
                            finish_local_task(&mut task, &result);
                            out.send(NetEvent::Task(task)).await;
                            let result = result.map(|_| ()).map_err(|e| describe(&e));
                            out.send(NetEvent::PoolDone { token, label, result }).await;
                        });
                    }
                    Request::Action { action, label, target, token } => {
                        let out = out.clone();
                        let c = client.clone();
                        let user = session_user.clone();
                        tokio::spawn(async move {
                            match c {
                                Some(Link::Manager(c)) => run_action(&c, action, label, target, token, &user, &out).await,
                                Some(Link::Agent(a)) => a.run_action(action, label, target, token, &user, &out).await,
                                None => {
                                    let result = Err("Not connected to a server".to_string());
                                    out.send(NetEvent::ActionDone { token, label, result }).await;
                                }
                            }
                        });
                    }
                    Request::HostThumbprint { address, token } => {
                        let out = out.clone();
                        tokio::spawn(async move {
                            let result = strata_shared::client::fetch_thumbprint(&address, strata_shared::client::AGENT_PORT)
                                .await
                                .map_err(|e| describe(&e));
                            out.send(NetEvent::HostThumbprint { token, result }).await;
                        });
                    }
                    Request::ConsoleTicket { vm, reply } => {
                        let c = client.clone();
                        tokio::spawn(async move {
                            let result = match c {
                                Some(Link::Manager(c)) => c.call::<m::VmConsoleTicket>(IdParams { id: vm }).await.map_err(|e| describe(&e)),
                                Some(Link::Agent(a)) => a.console_ticket(vm).await,
                                None => Err("not connected to a server".into()),
                            };
                            let _ = reply.send(result);
                        });
                    }
                    Request::AcknowledgeAlarm { id } => {
                        let out = out.clone();
                        let c = client.clone();
                        tokio::spawn(async move {
                            let r = match c {
                                Some(Link::Manager(c)) => c.call::<m::AlarmAcknowledge>(IdParams { id }).await.map(|_| ()).map_err(|e| describe(&e)),
                                Some(Link::Agent(_)) => Err(direct::NEEDS_MANAGER.to_string()),
                                None => Err("not connected to a server".into()),
                            };
                            if let Err(e) = r {
                                out.send(NetEvent::ActionFailed { message: format!("Acknowledging the alarm failed: {e}") }).await;
                            }
                        });
                    }
                    Request::Disconnect => {
                        if let Some(c) = client.take() {
                            let _ = c.client().call_timeout::<m::SessionLogout>(Empty {}, Duration::from_secs(5)).await;
                        }
                        notes = None;
                        out.send(NetEvent::Disconnected(None)).await;
                    }
                }
            }
            note = next_note(&mut notes) => {
                match note {
                    Ok(n) => match &client {
                        Some(Link::Agent(a)) => {
                            // Each may ask the agent for the object: off this loop.
                            let (a, out) = (a.clone(), out.clone());
                            tokio::spawn(async move { a.on_note(n, &out).await });
                        }
                        _ => {
                            if let Some(ev) = decode(n) {
                                out.send(ev).await;
                            }
                        }
                    },
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "notifications lagged; reloading the inventory");
                        let reloaded = match &client {
                            Some(Link::Manager(c)) => Some(c.call::<m::InventoryGet>(Empty {}).await),
                            Some(Link::Agent(a)) => Some(a.reload().await),
                            None => None,
                        };
                        match reloaded {
                            Some(Ok(inv)) => out.send(NetEvent::Reloaded(inv)).await,
                            Some(Err(e)) => out.send(NetEvent::Disconnected(Some(describe(&e)))).await,
                            None => {}
                        }
                        if let Some(Link::Manager(c)) = &client {
                            if let Ok(alarms) = alarms_of(c).await {
                                out.send(NetEvent::AlarmsReloaded(alarms)).await;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        client = None;
                        notes = None;
                        out.send(NetEvent::Disconnected(Some("the connection to the server was closed".into()))).await;
                    }
                }
            }
        }
    }
}

async fn next_note(
    notes: &mut Option<broadcast::Receiver<Notification>>,
) -> Result<Notification, broadcast::error::RecvError> {
    match notes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Connects, logs in and loads everything, from a manager or straight from a host agent.
async fn connect(
    url: &str,
    thumbprint: &str,
    username: &str,
    password: &str,
) -> Result<(Link, broadcast::Receiver<Notification>, NetEvent), ClientError> {
    let c = Client::connect(url, Trust::Thumbprint(thumbprint.to_string())).await?;
    let info = c.call::<m::ServerInfoMethod>(Empty {}).await?;
    let session = c.login(username, password).await?;
    if info.kind == ServerKind::HostAgent {
        let (link, notes, ev) = direct::AgentLink::open(c, session.username).await?;
        return Ok((Link::Agent(Arc::new(link)), notes, ev));
    }
    // Subscribe before loading, so no change between the two is missed.
    let notes = c.notifications();
    c.call::<m::InventorySubscribe>(Empty {}).await?;
    let inventory = c.call::<m::InventoryGet>(Empty {}).await?;
    let tasks = c
        .call::<m::TaskList>(TaskListParams {
            limit: Some(200),
            active_only: false,
        })
        .await?;
    let events = c
        .call::<m::EventList>(EventListParams {
            limit: Some(500),
            ..Default::default()
        })
        .await?;
    let alarms = alarms_of(&c).await?;
    let ev = NetEvent::Connected {
        address: c.address().to_string(),
        username: session.username,
        inventory,
        tasks,
        events,
        alarms,
        direct: false,
    };
    Ok((Link::Manager(c), notes, ev))
}

/// The manager's active alarms (none from a manager that predates alarms).
async fn alarms_of(c: &Client) -> Result<Vec<AlarmInfo>, ClientError> {
    match c.call::<m::AlarmList>(AlarmListParams::default()).await {
        Err(e) if e.code() == Some(strata_shared::ErrorCode::MethodNotFound) => Ok(Vec::new()),
        other => other,
    }
}

async fn run(c: &Client, op: Operation, id: Uuid) -> Result<TaskInfo, ClientError> {
    let p = IdParams { id };
    match op {
        Operation::PowerOn => c.call::<m::VmPowerOn>(p).await,
        Operation::PowerOff | Operation::PowerOffHard => {
            c.call::<m::VmPowerOff>(m::PowerOffParams {
                id,
                hard: op == Operation::PowerOffHard,
                timeout_secs: None,
            })
            .await
        }
        Operation::Reset => c.call::<m::VmReset>(p).await,
        Operation::Suspend => c.call::<m::VmSuspend>(p).await,
        Operation::Pause => c.call::<m::VmPause>(p).await,
        Operation::Unpause => c.call::<m::VmUnpause>(p).await,
        Operation::Destroy => c.call::<m::VmDestroy>(p).await,
        Operation::RemoveHost => c.call::<m::HostRemove>(p).await,
    }
}

async fn run_pool(c: &Client, op: PoolOp) -> Result<serde_json::Value, ClientError> {
    let json = |v: Result<serde_json::Value, serde_json::Error>| v.unwrap_or_default();
    Ok(match op {
        PoolOp::Create(p) => json(serde_json::to_value(c.call::<m::PoolCreate>(p).await?)),
        PoolOp::Update(p) => json(serde_json::to_value(c.call::<m::PoolUpdate>(p).await?)),
        PoolOp::Delete(p) => json(serde_json::to_value(c.call::<m::PoolDelete>(p).await?)),
        PoolOp::VmAllocation(p) => {
            json(serde_json::to_value(c.call::<m::VmSetAllocation>(p).await?))
        }
    })
}

/// How long the New VM wizard's follow-up steps may take (thick disks are slow).
const FOLLOW_UP_LIMIT: Duration = Duration::from_secs(3600);

/// Runs a dialog's action: reports acceptance as [`NetEvent::ActionDone`], then (for a new
/// VM) its follow-up steps, each a server task, failures as [`NetEvent::ActionFailed`].
async fn run_action(
    c: &Client,
    action: Action,
    label: String,
    target: Option<ObjectRef>,
    token: u64,
    user: &str,
    out: &Outbox,
) {
    let done = |result: Result<(), ClientError>| NetEvent::ActionDone {
        token,
        label: label.clone(),
        result: result.map_err(|e| describe(&e)),
    };
    // A server task that could not start still shows in Recent Tasks, failed, with why.
    let refused = |method: &str, e: &ClientError| {
        let mut t = local_task(method, &label, target.clone(), user);
        fail_local_task(&mut t, e);
        NetEvent::Task(t)
    };
    match action {
        Action::CreateVm {
            params,
            disks,
            power_on,
        } => {
            let name = params.name.clone();
            let started = c.call::<m::VmCreate>(params).await;
            let task = match started {
                Ok(t) => t,
                Err(e) => {
                    out.send(refused(m::VmCreate::NAME, &e)).await;
                    return out.send(done(Err(e))).await;
                }
            };
            out.send(NetEvent::Task(task.clone())).await;
            out.send(done(Ok(()))).await;
            if let Err(message) = new_vm_follow_up(c, &name, task, &disks, power_on, out).await {
                out.send(NetEvent::ActionFailed { message }).await;
            }
        }
        Action::AddHost {
            address,
            username,
            password,
            thumbprint,
            cluster,
        } => {
            let r = c
                .call::<m::HostAdd>(HostAddParams {
                    address,
                    username,
                    password: password.0,
                    thumbprint: Some(thumbprint),
                    cluster,
                })
                .await;
            if let Err(e) = &r {
                out.send(refused(m::HostAdd::NAME, e)).await;
            }
            started_task(r, out, done).await;
        }
        Action::Reconfigure(p) => {
            let r = c.call::<m::VmReconfigure>(p).await;
            if let Err(e) = &r {
                out.send(refused(m::VmReconfigure::NAME, e)).await;
            }
            started_task(r, out, done).await;
        }
        Action::CreateCluster(p) => {
            let mut task = local_task(m::ClusterCreate::NAME, &label, target, user);
            out.send(NetEvent::Task(task.clone())).await;
            let r = c.call::<m::ClusterCreate>(p).await;
            finish_local_task(&mut task, &r);
            out.send(NetEvent::Task(task)).await;
            out.send(done(r.map(|_| ()))).await;
        }
        Action::MoveVm(p) => {
            let mut task = local_task(m::VmMove::NAME, &label, target, user);
            out.send(NetEvent::Task(task.clone())).await;
            let r = c.call::<m::VmMove>(p).await;
            finish_local_task(&mut task, &r);
            out.send(NetEvent::Task(task)).await;
            out.send(done(r.map(|_| ()))).await;
        }
    }
}

/// Reports a server task that started (its first state goes to Recent Tasks at once), or
/// the refusal.
async fn started_task(
    r: Result<TaskInfo, ClientError>,
    out: &Outbox,
    done: impl Fn(Result<(), ClientError>) -> NetEvent,
) {
    match r {
        Ok(t) => {
            out.send(NetEvent::Task(t)).await;
            out.send(done(Ok(()))).await;
        }
        Err(e) => out.send(done(Err(e))).await,
    }
}

/// Waits for a task; its failure in words.
async fn wait_ok(c: &Client, task: &TaskInfo) -> Result<TaskInfo, String> {
    let t = c
        .wait_task(task.id, FOLLOW_UP_LIMIT)
        .await
        .map_err(|e| describe(&e))?;
    match t.state {
        TaskState::Success => Ok(t),
        _ => Err(t
            .error
            .map(|e| e.message)
            .unwrap_or_else(|| "the task failed".into())),
    }
}

/// After `vm.create` started: waits for it, adds the disks one task at a time, then powers
/// the VM on when asked. Stops at the first failure and says where.
async fn new_vm_follow_up(
    c: &Client,
    name: &str,
    create: TaskInfo,
    disks: &[NewDisk],
    power_on: bool,
    out: &Outbox,
) -> Result<(), String> {
    if disks.is_empty() && !power_on {
        return Ok(());
    }
    let created = wait_ok(c, &create)
        .await
        .map_err(|e| format!("Creating VM {name} failed: {e}"))?;
    let vm: VmInfo = created
        .result
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| format!("VM {name} was created, but the server did not say which it is"))?;
    for (i, d) in disks.iter().enumerate() {
        let step = |e: String| d.failed(name, i, &e);
        let t = c
            .call::<m::VmDiskCreate>(d.params(vm.id))
            .await
            .map_err(|e| step(describe(&e)))?;
        out.send(NetEvent::Task(t.clone())).await;
        wait_ok(c, &t).await.map_err(step)?;
    }
    if power_on {
        let step = |e: String| power_on_failed(name, &e);
        let t = c
            .call::<m::VmPowerOn>(IdParams { id: vm.id })
            .await
            .map_err(|e| step(describe(&e)))?;
        out.send(NetEvent::Task(t.clone())).await;
        wait_ok(c, &t).await.map_err(step)?;
    }
    Ok(())
}

/// A Recent Tasks entry for a change the server answers at once (it makes no server task):
/// running until the answer comes.
fn local_task(method: &str, label: &str, target: Option<ObjectRef>, user: &str) -> TaskInfo {
    TaskInfo {
        id: Uuid::new_v4(),
        operation: method.to_string(),
        description: label.to_string(),
        target,
        state: TaskState::Running,
        progress: 0,
        step: None,
        error: None,
        result: None,
        user: user.to_string(),
        queued_ms: strata_shared::now_ms(),
        completed_ms: None,
    }
}

/// Ends a local task: done with the answer as its result, or failed with why.
fn finish_local_task<T: serde::Serialize>(task: &mut TaskInfo, result: &Result<T, ClientError>) {
    match result {
        Ok(v) => {
            task.progress = 100;
            task.completed_ms = Some(strata_shared::now_ms());
            task.state = TaskState::Success;
            task.result = serde_json::to_value(v).ok();
        }
        Err(e) => fail_local_task(task, e),
    }
}

fn fail_local_task(task: &mut TaskInfo, e: &ClientError) {
    task.progress = 100;
    task.completed_ms = Some(strata_shared::now_ms());
    task.state = TaskState::Error;
    task.error = Some(match e {
        ClientError::Rpc(r) => r.clone(),
        other => {
            strata_shared::RpcError::new(strata_shared::ErrorCode::Unavailable, describe(other))
        }
    });
}

/// Turns a notification into an event for the UI; unknown or malformed ones are dropped.
fn decode(n: Notification) -> Option<NetEvent> {
    let parsed = match n.method.as_str() {
        notifications::INVENTORY_CHANGED => {
            serde_json::from_value(n.params).map(NetEvent::Inventory)
        }
        notifications::TASK_PROGRESS | notifications::TASK_DONE => {
            serde_json::from_value(n.params).map(NetEvent::Task)
        }
        notifications::EVENT_NEW => serde_json::from_value(n.params).map(NetEvent::Event),
        notifications::ALARM_CHANGED => serde_json::from_value(n.params).map(NetEvent::Alarm),
        _ => return None,
    };
    match parsed {
        Ok(ev) => Some(ev),
        Err(e) => {
            tracing::debug!(method = %n.method, error = %e, "malformed notification dropped");
            None
        }
    }
}

/// An error in words for a person.
pub fn describe(e: &ClientError) -> String {
    match e {
        ClientError::NotTrusted {
            addr,
            expected,
            actual,
        } => format!(
            "The certificate of {addr} has changed: it presented {actual}, but the trusted one \
             is {expected}. The connection was refused. If the server's certificate was \
             replaced on purpose, remove it from the trusted servers and connect again."
        ),
        ClientError::Rpc(r) if r.code == strata_shared::ErrorCode::NotAuthenticated => {
            format!("Login failed: {}", r.message)
        }
        other => {
            let mut s = other.to_string();
            if let Some(first) = s.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_decode_and_junk_is_dropped() {
        let n = Notification::new(
            notifications::INVENTORY_CHANGED,
            serde_json::json!({"change": "remove", "kind": "vm", "id": Uuid::nil()}),
        );
        assert!(matches!(decode(n), Some(NetEvent::Inventory(_))));
        let junk = Notification::new(notifications::TASK_DONE, serde_json::json!({"id": 5}));
        assert!(decode(junk).is_none());
        let other = Notification::new("something.else", serde_json::json!({}));
        assert!(decode(other).is_none());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let r = Request::Connect {
            url: "x".into(),
            thumbprint: "t".into(),
            username: "admin".into(),
            password: Secret("hunter22".into()),
        };
        assert!(!format!("{r:?}").contains("hunter22"));
        let r = Request::Action {
            action: Action::AddHost {
                address: "h:9443".into(),
                username: "root".into(),
                password: Secret("hunter22".into()),
                thumbprint: "AB".into(),
                cluster: None,
            },
            label: "Add host h:9443".into(),
            target: None,
            token: 1,
        };
        assert!(!format!("{r:?}").contains("hunter22"));
    }
}
