//! The desktop client (`strata-client`): an egui app over the manager's WebSocket API.
//!
//! State is plain structs ([`model::DataModel`], [`Settings`], the panels' own view state);
//! panels implement [`View`] and queue [`Command`]s, which [`StrataApp::apply_commands`]
//! applies in one place after the frame is laid out. Network work happens in [`net`].

pub mod actions;
pub mod alarms;
pub mod console;
pub mod dialogs;
pub mod id_map;
pub mod model;
pub mod net;
pub mod panels;
pub mod stats_cache;
#[cfg(test)]
pub mod test_fixtures;
pub mod theme;
pub mod tour;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use dialogs::{Dialog, DialogAction, DialogRequest};
use model::{DataModel, InventoryModel, Selection};
use net::{NetEvent, Network, Operation, PoolOp, Request, Secret};
use panels::{
    allocation::AllocationView,
    connect::ConnectView,
    events::EventsView,
    pool_editor::{EditTarget, EditorAction, EditorState},
    recent_tasks::RecentTasksView,
    summary::SummaryView,
    tasks::TasksView,
    tree::{InventoryView, TreeView},
    vm_table::VmTableView,
};
use strata_shared::model::{ObjectKind, ObjectRef, PoolDeleteParams};

/// Key of the client's settings in eframe's storage.
pub const SETTINGS_KEY: &str = "strata-client";
/// How long one frame may spend applying network events before it draws.
const DRAIN_BUDGET: Duration = Duration::from_millis(4);

/// What the client remembers between runs (eframe persistence).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Settings {
    /// Servers connected to, most recent first.
    pub recent_servers: Vec<String>,
    /// Trusted certificate thumbprint per server (`host:port`).
    pub trusted: BTreeMap<String, String>,
    /// Last user name used.
    pub last_username: String,
}

impl Settings {
    /// The key a server is remembered under (`host:port`), or `None` for a bad address.
    pub fn server_key(url: &str) -> Option<String> {
        strata_shared::client::parse_address(url.trim(), strata_shared::client::MANAGER_PORT)
            .ok()
            .map(|(_, hostport)| hostport)
    }

    fn remember_server(&mut self, url: &str) {
        let url = url.trim().to_string();
        self.recent_servers.retain(|s| *s != url);
        self.recent_servers.insert(0, url);
        self.recent_servers.truncate(10);
    }
}

/// A user action, queued by a panel and applied by the app after the frame.
#[derive(Debug, Clone)]
pub enum Command {
    /// Connect (asks to trust the certificate on first contact).
    Connect {
        /// Server address.
        url: String,
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// Trust the certificate shown and connect.
    TrustAndConnect,
    /// Do not trust it.
    CancelTrust,
    /// Forget a server's trusted thumbprint.
    ForgetServer(String),
    /// Log out and close the connection.
    Disconnect,
    /// Select an inventory object.
    Select(Selection),
    /// Show a tab of the selected object.
    ShowTab(Tab),
    /// Run an operation (destroy and remove ask first).
    Run(Operation, Uuid),
    /// The confirmation for a destructive operation was given.
    Confirmed,
    /// The confirmation was refused.
    CancelConfirm,
    /// Hide an error message.
    DismissError(usize),
    /// Open the resource pool editor (new pool, pool settings or a VM's allocation).
    OpenEditor(EditTarget),
    /// Remove a resource pool (asks first).
    RemovePool(Uuid),
    /// Open a management dialog (new VM, add host, new cluster, rename, settings, move).
    OpenDialog(DialogRequest),
    /// A view shows the resource-pool usage of this standalone host or cluster: fetch it
    /// when missing or out of date.
    WantUsage(Uuid),
    /// A view shows the performance samples of this VM or host: fetch them when missing or
    /// older than the refresh interval.
    WantStats(Uuid),
    /// Acknowledge an alarm.
    AcknowledgeAlarm(Uuid),
    /// Show every active alarm in the bottom panel.
    ShowAlarms,
}

/// Commands queued during a frame (rerun's command-sender pattern, single-threaded).
#[derive(Debug, Default)]
pub struct CommandQueue(Vec<Command>);

impl CommandQueue {
    /// Queues a command.
    pub fn send(&mut self, c: Command) {
        self.0.push(c);
    }
}

/// Tabs of the central panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    /// Facts and capacity.
    #[default]
    Summary,
    /// VM table.
    VirtualMachines,
    /// Reservations, limits and shares of a cluster's, host's or pool's children.
    ResourceAllocation,
    /// CPU and memory charts of a VM or host.
    Performance,
    /// Events about the object.
    Events,
    /// Tasks on the object.
    Tasks,
    /// The screen, keyboard and mouse of a VM.
    Console,
}

impl Tab {
    /// Tab title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Summary => "Summary",
            Tab::VirtualMachines => "Virtual Machines",
            Tab::ResourceAllocation => "Resource Allocation",
            Tab::Performance => "Performance",
            Tab::Events => "Events",
            Tab::Tasks => "Tasks",
            Tab::Console => "Console",
        }
    }
}

/// Where the connection is.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ConnState {
    /// Not connected.
    #[default]
    Disconnected,
    /// Fetching the certificate of a new server.
    FetchingCertificate,
    /// Waiting for the user to trust a certificate.
    AwaitingTrust {
        /// Server address as typed.
        url: String,
        /// The thumbprint it presented.
        thumbprint: String,
    },
    /// Logging in and loading.
    Connecting,
    /// Connected.
    Connected {
        /// `host:port`.
        address: String,
        /// Who is logged in.
        username: String,
    },
}

/// What a panel may read and do while it draws.
pub struct ViewCtx<'a> {
    /// The data.
    pub model: &'a DataModel,
    /// The selected object.
    pub selection: Option<Selection>,
    /// Where to queue actions.
    pub commands: &'a mut CommandQueue,
}

/// One panel.
pub trait View {
    /// Draws the panel and queues what the user asked for.
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>);
}

/// What a confirmation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConfirmAction {
    /// A destructive server operation.
    Run(Operation),
    /// Removing a resource pool.
    RemovePool,
}

/// A destructive operation waiting for confirmation.
#[derive(Debug, Clone)]
struct Confirm {
    action: ConfirmAction,
    target: Uuid,
    name: String,
}

/// Picks how to reach a VM's console (see [`StrataApp::set_console_connector`]).
pub type ConsoleConnectorFn = Box<dyn Fn(Uuid) -> console::Connector>;

/// The desktop client.
pub struct StrataApp {
    /// Remembered settings.
    pub settings: Settings,
    /// Connection state.
    pub conn: ConnState,
    /// The data.
    pub model: DataModel,
    /// Selected object.
    pub selection: Option<Selection>,
    /// Active tab.
    pub tab: Tab,
    /// Error messages shown to the user, in words.
    pub errors: Vec<String>,
    net: Option<Network>,
    repaint: Arc<OnceLock<egui::Context>>,
    waker: net::Waker,
    console_connector: Option<ConsoleConnectorFn>,
    commands: CommandQueue,
    pending_login: Option<(String, String, Secret)>,
    confirm: Option<Confirm>,
    connect: ConnectView,
    tree: TreeView,
    summary: SummaryView,
    vm_table: VmTableView,
    events: EventsView,
    tasks: TasksView,
    recent: RecentTasksView,
    allocation: AllocationView,
    performance: panels::performance::PerformanceView,
    /// The Console tab (its session runs while the tab is shown).
    pub console: console::ConsoleTab,
    /// The resource pool editor, when open.
    pub editor: Option<EditorState>,
    /// The management dialog, when one is open.
    pub dialog: Option<Dialog>,
    next_token: u64,
    tour: Option<tour::Tour>,
}

impl StrataApp {
    /// Creates the app with remembered settings and starts its network side.
    pub fn new(settings: Settings) -> Self {
        let repaint: Arc<OnceLock<egui::Context>> = Arc::new(OnceLock::new());
        let waker_ctx = repaint.clone();
        let waker: net::Waker = Arc::new(move || {
            if let Some(ctx) = waker_ctx.get() {
                ctx.request_repaint();
            }
        });
        let mut errors = Vec::new();
        let net = match Network::start(waker.clone()) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        };
        let connect = ConnectView::new(&settings);
        StrataApp {
            settings,
            conn: ConnState::Disconnected,
            model: DataModel::default(),
            selection: None,
            tab: Tab::Summary,
            errors,
            net,
            repaint,
            waker,
            console_connector: None,
            commands: CommandQueue::default(),
            pending_login: None,
            confirm: None,
            connect,
            tree: TreeView::default(),
            summary: SummaryView::default(),
            vm_table: VmTableView::default(),
            events: EventsView,
            tasks: TasksView,
            recent: RecentTasksView::default(),
            allocation: AllocationView::default(),
            performance: panels::performance::PerformanceView,
            console: console::ConsoleTab::default(),
            editor: None,
            dialog: None,
            next_token: 1,
            tour: None,
        }
    }

    /// Runs the screenshot tour (see [`tour`]) instead of waiting for the user.
    pub fn start_tour(&mut self, tour: tour::Tour) {
        self.tour = Some(tour);
    }

    /// The tour, when one runs.
    pub fn tour(&self) -> Option<&tour::Tour> {
        self.tour.as_ref()
    }

    /// The inventory view shown in the left panel.
    pub fn inventory_view(&self) -> InventoryView {
        self.tree.view()
    }

    /// Shows another inventory view in the left panel.
    pub fn set_inventory_view(&mut self, view: InventoryView) {
        self.tree.set_view(view);
    }

    /// Pre-fills the connect dialog (from the command line).
    pub fn prefill(&mut self, url: Option<String>, username: Option<String>) {
        self.connect.prefill(url, username);
    }

    /// True when logged in to a server.
    pub fn is_connected(&self) -> bool {
        matches!(self.conn, ConnState::Connected { .. })
    }

    fn request(&mut self, req: Request) {
        match &self.net {
            Some(n) => {
                if let Err(e) = n.send(req) {
                    self.errors.push(e.to_string());
                }
            }
            None => self
                .errors
                .push("the network layer is not running".to_string()),
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Draws the resource pool editor and acts on what the user decided.
    fn show_editor(&mut self, ctx: &egui::Context) {
        let Some(editor) = self.editor.as_mut() else {
            return;
        };
        if let Some(owner) = editor.owner(&self.model.inventory) {
            self.commands.send(Command::WantUsage(owner));
        }
        match editor.show(ctx, &self.model.inventory, &self.model.usage) {
            Some(EditorAction::Cancel) => self.editor = None,
            Some(EditorAction::Submit { op, label, target }) => {
                let token = self.token();
                if let Some(e) = self.editor.as_mut() {
                    e.pending = Some(token);
                    e.server_error = None;
                }
                self.request(Request::Pool {
                    op: *op,
                    label,
                    target,
                    token,
                });
            }
            None => {}
        }
    }

    /// Draws the open management dialog and acts on what the user decided.
    fn show_dialog(&mut self, ctx: &egui::Context) {
        let Some(dialog) = self.dialog.as_mut() else {
            return;
        };
        if let Some(action) = dialog.show(ctx, &self.model.inventory) {
            self.dialog_act(action);
        }
    }

    /// Does what the open dialog asked.
    fn dialog_act(&mut self, action: DialogAction) {
        match action {
            DialogAction::Cancel => self.dialog = None,
            DialogAction::Submit {
                action,
                label,
                target,
            } => {
                let token = self.token();
                if let Some(d) = self.dialog.as_mut() {
                    d.sent(token);
                }
                self.request(Request::Action {
                    action: *action,
                    label,
                    target,
                    token,
                });
            }
            DialogAction::FetchThumbprint(address) => {
                let token = self.token();
                if let Some(Dialog::AddHost(d)) = self.dialog.as_mut() {
                    d.fetching = Some(token);
                    d.fetch_error = None;
                }
                self.request(Request::HostThumbprint { address, token });
            }
        }
    }

    /// The VM whose console should be open now: the selected VM, while its Console tab is
    /// shown and it has a running process.
    pub fn console_wanted(&self) -> Option<Uuid> {
        let Some(Selection::Vm(id)) = self.selection else {
            return None;
        };
        let vm = self.model.inventory.vms.get(&id)?;
        let shown = self.is_connected() && self.tab == Tab::Console;
        (shown && console::unavailable_reason(vm.power_state).is_none()).then_some(id)
    }

    /// Reaches consoles through `connector` instead of the manager's tickets (screenshots
    /// and tests against a local VNC server).
    pub fn set_console_connector(&mut self, connector: ConsoleConnectorFn) {
        self.console_connector = Some(connector);
    }

    /// Opens or ends the console session to match what is shown.
    fn sync_console(&mut self) {
        let wanted = self.console_wanted();
        let net = self.net.as_ref();
        let waker = self.waker.clone();
        let custom = self.console_connector.as_ref();
        self.console.sync(wanted, |vm| {
            let net = net.ok_or_else(|| "the network layer is not running".to_string())?;
            let connector = match custom {
                Some(f) => f(vm),
                None => console::Connector::tickets(net.ticket_source(vm)),
            };
            Ok(console::ConsoleSession::start(
                &net.runtime(),
                connector,
                waker,
                console::SessionOptions::default(),
            ))
        });
    }

    /// Applies waiting network events, spending at most [`DRAIN_BUDGET`].
    pub fn drain_network(&mut self, ctx: &egui::Context) {
        let start = Instant::now();
        loop {
            let Some(ev) = self.net.as_mut().and_then(Network::try_recv) else {
                return;
            };
            self.on_net_event(ev);
            if start.elapsed() > DRAIN_BUDGET {
                // More may be waiting: come back next frame.
                ctx.request_repaint();
                return;
            }
        }
    }

    fn on_net_event(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Thumbprint { url, thumbprint } => {
                if self.conn == ConnState::FetchingCertificate {
                    self.conn = ConnState::AwaitingTrust { url, thumbprint };
                }
            }
            NetEvent::Connected {
                address,
                username,
                inventory,
                tasks,
                events,
                alarms,
                direct,
            } => {
                tracing::info!(server = %address, user = %username, direct, "logged in");
                self.model.inventory = InventoryModel::from_snapshot(inventory);
                self.model.inventory.direct = direct;
                self.model.tasks.reset(tasks);
                self.model.events.reset(events);
                self.model.alarms.reset(alarms);
                if let Some((url, user, _)) = self.pending_login.take() {
                    self.settings.remember_server(&url);
                    self.settings.last_username = user;
                }
                self.selection = self
                    .model
                    .inventory
                    .datacenters
                    .keys()
                    .next()
                    .map(|id| Selection::Datacenter(*id));
                self.conn = ConnState::Connected { address, username };
                self.connect.clear_password();
            }
            NetEvent::ConnectFailed(msg) => {
                self.pending_login = None;
                self.conn = ConnState::Disconnected;
                self.connect.error = Some(msg);
            }
            NetEvent::Disconnected(why) => {
                self.conn = ConnState::Disconnected;
                self.model = DataModel::default();
                self.selection = None;
                self.editor = None;
                self.connect.error = why;
            }
            NetEvent::Reloaded(inv) => {
                let direct = self.model.inventory.direct;
                self.model.inventory = InventoryModel::from_snapshot(inv);
                self.model.inventory.direct = direct;
            }
            NetEvent::Inventory(change) => self.model.inventory.apply(change),
            NetEvent::Task(t) => self.model.tasks.upsert(t),
            NetEvent::Event(e) => self.model.events.push(e),
            NetEvent::Alarm(change) => self.model.alarms.apply(change),
            NetEvent::AlarmsReloaded(alarms) => self.model.alarms.reset(alarms),
            NetEvent::PoolUsage { owner, result } => self.model.usage.store(owner, result),
            NetEvent::Stats { id, result } => self.model.stats.store(id, result),
            NetEvent::PoolDone {
                token,
                label,
                result,
            } => {
                if result.is_ok() {
                    self.model.usage.invalidate();
                }
                let mine = self
                    .editor
                    .as_ref()
                    .is_some_and(|e| e.pending == Some(token));
                if mine {
                    if self
                        .editor
                        .as_mut()
                        .is_some_and(|e| e.finished(token, &result))
                    {
                        self.editor = None;
                    }
                } else if let Err(message) = result {
                    self.errors.push(format!("{label} failed: {message}"));
                }
            }
            NetEvent::ActionDone {
                token,
                label,
                result,
            } => {
                let mine = self.dialog.as_mut().is_some_and(|d| d.owns(token));
                if mine {
                    if self
                        .dialog
                        .as_mut()
                        .is_some_and(|d| d.finished(token, &result))
                    {
                        self.dialog = None;
                    }
                } else if let Err(message) = result {
                    self.errors.push(format!("{label} failed: {message}"));
                }
            }
            NetEvent::ActionFailed { message } => self.errors.push(message),
            NetEvent::HostThumbprint { token, result } => {
                if let Some(Dialog::AddHost(d)) = self.dialog.as_mut() {
                    d.thumbprint_fetched(token, result);
                }
            }
            NetEvent::OperationFailed { op, message } => {
                self.errors
                    .push(format!("{} failed: {message}", op.label()));
            }
        }
    }

    /// Applies the commands queued during the frame.
    pub fn apply_commands(&mut self) {
        for c in std::mem::take(&mut self.commands.0) {
            self.apply(c);
        }
    }

    fn apply(&mut self, c: Command) {
        match c {
            Command::Connect {
                url,
                username,
                password,
            } => {
                let Some(key) = Settings::server_key(&url) else {
                    self.connect.error = Some(format!(
                        "{url:?} is not a server address: use HOST or HOST:PORT"
                    ));
                    return;
                };
                self.connect.error = None;
                self.pending_login = Some((url.clone(), username.clone(), password.clone()));
                match self.settings.trusted.get(&key).cloned() {
                    Some(thumbprint) => {
                        self.conn = ConnState::Connecting;
                        self.request(Request::Connect {
                            url,
                            thumbprint,
                            username,
                            password,
                        });
                    }
                    None => {
                        self.conn = ConnState::FetchingCertificate;
                        self.request(Request::FetchThumbprint { url });
                    }
                }
            }
            Command::TrustAndConnect => {
                let ConnState::AwaitingTrust { url, thumbprint } = self.conn.clone() else {
                    return;
                };
                let Some((_, username, password)) = self.pending_login.clone() else {
                    self.conn = ConnState::Disconnected;
                    return;
                };
                if let Some(key) = Settings::server_key(&url) {
                    self.settings.trusted.insert(key, thumbprint.clone());
                }
                self.conn = ConnState::Connecting;
                self.request(Request::Connect {
                    url,
                    thumbprint,
                    username,
                    password,
                });
            }
            Command::CancelTrust => {
                self.pending_login = None;
                self.conn = ConnState::Disconnected;
                self.connect.error = Some("The certificate was not trusted; not connected.".into());
            }
            Command::ForgetServer(key) => {
                self.settings.trusted.remove(&key);
            }
            Command::Disconnect => self.request(Request::Disconnect),
            Command::Select(sel) => {
                if self.selection != Some(sel) {
                    self.selection = Some(sel);
                    if matches!(sel, Selection::Vm(_)) && self.tab == Tab::VirtualMachines {
                        self.tab = Tab::Summary;
                    }
                }
            }
            Command::ShowTab(t) => self.tab = t,
            Command::Run(op, target) => match op {
                Operation::Destroy | Operation::RemoveHost => {
                    let action = ConfirmAction::Run(op);
                    let name = self
                        .model
                        .inventory
                        .vms
                        .get(&target)
                        .map(|v| v.name.clone())
                        .or_else(|| {
                            self.model
                                .inventory
                                .hosts
                                .get(&target)
                                .map(|h| h.name.clone())
                        })
                        .unwrap_or_else(|| target.to_string());
                    self.confirm = Some(Confirm {
                        action,
                        target,
                        name,
                    });
                }
                _ => self.request(Request::Run { op, target }),
            },
            Command::Confirmed => {
                if let Some(c) = self.confirm.take() {
                    match c.action {
                        ConfirmAction::Run(op) => self.request(Request::Run {
                            op,
                            target: c.target,
                        }),
                        ConfirmAction::RemovePool => {
                            let token = self.token();
                            self.request(Request::Pool {
                                op: PoolOp::Delete(PoolDeleteParams {
                                    id: c.target,
                                    move_children_to_parent: false,
                                }),
                                label: format!("Remove resource pool {}", c.name),
                                target: Some(ObjectRef {
                                    kind: ObjectKind::Pool,
                                    id: c.target,
                                    name: c.name,
                                }),
                                token,
                            });
                        }
                    }
                }
            }
            Command::OpenDialog(req) => {
                self.dialog = Dialog::open(req, &self.model.inventory);
            }
            Command::OpenEditor(target) => {
                self.editor = EditorState::open(target, &self.model.inventory);
            }
            Command::RemovePool(id) => {
                if let Some(p) = self.model.inventory.pools.get(&id) {
                    self.confirm = Some(Confirm {
                        action: ConfirmAction::RemovePool,
                        target: id,
                        name: p.name.clone(),
                    });
                }
            }
            Command::WantUsage(owner) => {
                let now = Instant::now();
                let generation = self.model.inventory.generation;
                if self.is_connected() && self.model.usage.wants_refresh(owner, generation, now) {
                    self.model.usage.asked(owner, generation, now);
                    self.request(Request::PoolUsage { owner });
                }
            }
            Command::WantStats(id) => {
                let now = Instant::now();
                if self.is_connected() && self.model.stats.wants_refresh(id, now) {
                    self.model.stats.asked(id, now);
                    self.request(Request::Stats { id });
                }
            }
            Command::AcknowledgeAlarm(id) => self.request(Request::AcknowledgeAlarm { id }),
            Command::ShowAlarms => self.recent.showing = panels::recent_tasks::Bottom::Alarms,
            Command::CancelConfirm => self.confirm = None,
            Command::DismissError(i) => {
                if i < self.errors.len() {
                    self.errors.remove(i);
                }
            }
        }
    }

    /// Draws one frame: drains the network, lays out the panels, applies the commands.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        let _ = self.repaint.get_or_init(|| ctx.clone());
        self.drain_network(&ctx);
        self.drive_tour(&ctx);
        self.apply_commands();
        if let Some(sel) = self.selection {
            if !self.model.inventory.contains(sel) {
                self.selection = None;
            }
        }
        self.sync_console();

        let mut cx = ViewCtx {
            model: &self.model,
            selection: self.selection,
            commands: &mut self.commands,
        };
        match &self.conn {
            ConnState::Connected { address, username } => {
                let (address, username) = (address.clone(), username.clone());
                egui::Panel::top("top_bar").show(ui, |ui| {
                    top_bar(ui, &address, &username, &mut cx);
                });
                egui::Panel::bottom("recent_tasks")
                    .resizable(true)
                    .default_size(170.0)
                    .min_size(90.0)
                    .show(ui, |ui| self.recent.ui(ui, &mut cx));
                egui::Panel::left("inventory")
                    .resizable(true)
                    .default_size(270.0)
                    .min_size(180.0)
                    .show(ui, |ui| self.tree.ui(ui, &mut cx));
                egui::CentralPanel::default().show(ui, |ui| {
                    errors_banner(ui, &self.errors, &mut cx);
                    central(
                        ui,
                        self.tab,
                        &mut cx,
                        Views {
                            summary: &mut self.summary,
                            vm_table: &mut self.vm_table,
                            allocation: &mut self.allocation,
                            performance: &mut self.performance,
                            events: &mut self.events,
                            tasks: &mut self.tasks,
                            console: &mut self.console,
                        },
                    );
                });
            }
            state => {
                let state = state.clone();
                egui::CentralPanel::default().show(ui, |ui| {
                    errors_banner(ui, &self.errors, &mut cx);
                    self.connect.show(ui, &state, &self.settings, &mut cx);
                });
            }
        }
        if self.is_connected() {
            self.show_editor(&ctx);
            self.show_dialog(&ctx);
        }
        if let Some(c) = &self.confirm {
            confirm_dialog(&ctx, c, &mut self.commands);
        }
        self.apply_commands();
    }
}

fn top_bar(ui: &mut egui::Ui, address: &str, username: &str, cx: &mut ViewCtx<'_>) {
    ui.horizontal(|ui| {
        ui.strong("Strata");
        ui.separator();
        ui.label(format!("{username} @ {address}"));
        if cx.model.inventory.direct {
            ui.label(egui::RichText::new("Host agent, connected directly").color(theme::WARN))
                .on_hover_text(net::direct::NEEDS_MANAGER);
            let manager = cx
                .model
                .inventory
                .hosts
                .values()
                .find_map(|h| h.facts.as_ref().and_then(|f| f.managed_by.as_ref()));
            if let Some(m) = manager {
                ui.separator();
                ui.label(egui::RichText::new("Managed by a Strata manager").color(theme::ERROR))
                    .on_hover_text(format!(
                        "A manager ({}) last used this host at {} UTC. Changes made here \
                         bypass it: prefer the manager for anything but emergencies.",
                        m.username,
                        theme::time(m.last_seen_ms)
                    ));
            }
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui.button("Disconnect").clicked() {
                cx.commands.send(Command::Disconnect);
            }
            let inv = &cx.model.inventory;
            let plural = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            let (active, open) = cx.model.alarms.counts();
            if active > 0 {
                let worst = cx.model.alarms.worst_overall();
                let text = egui::RichText::new(plural(active, "alarm", "alarms"))
                    .color(worst.map(panels::alarms::color).unwrap_or(theme::WARN));
                let hover = format!("{open} not acknowledged; click to list them");
                if ui.button(text).on_hover_text(hover).clicked() {
                    cx.commands.send(Command::ShowAlarms);
                }
            }
            ui.label(format!(
                "{} · {}",
                plural(inv.hosts.len(), "host", "hosts"),
                plural(inv.vms.len(), "VM", "VMs")
            ));
        });
    });
}

fn errors_banner(ui: &mut egui::Ui, errors: &[String], cx: &mut ViewCtx<'_>) {
    for (i, e) in errors.iter().enumerate() {
        egui::Frame::new()
            .fill(theme::ERROR_BG)
            .inner_margin(6.0)
            .corner_radius(4.0)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.colored_label(theme::ERROR, e);
                    if ui.small_button("Dismiss").clicked() {
                        cx.commands.send(Command::DismissError(i));
                    }
                });
            });
        ui.add_space(4.0);
    }
}

/// The views of the central panel's tabs.
struct Views<'a> {
    summary: &'a mut SummaryView,
    vm_table: &'a mut VmTableView,
    allocation: &'a mut AllocationView,
    performance: &'a mut panels::performance::PerformanceView,
    events: &'a mut EventsView,
    tasks: &'a mut TasksView,
    console: &'a mut console::ConsoleTab,
}

/// The tabs an object has.
pub fn tabs_of(inv: &InventoryModel, sel: Selection) -> Vec<Tab> {
    let mut tabs = vec![Tab::Summary];
    if !matches!(sel, Selection::Vm(_)) {
        tabs.push(Tab::VirtualMachines);
    }
    // Resource pools live in a manager (performance is sampled live on a direct connection).
    if !inv.direct && panels::allocation::applies_to(inv, sel) {
        tabs.push(Tab::ResourceAllocation);
    }
    if matches!(sel, Selection::Vm(_) | Selection::Host(_)) {
        tabs.push(Tab::Performance);
    }
    if matches!(sel, Selection::Vm(_)) {
        tabs.push(Tab::Console);
    }
    tabs.extend([Tab::Events, Tab::Tasks]);
    tabs
}

fn central(ui: &mut egui::Ui, tab: Tab, cx: &mut ViewCtx<'_>, views: Views<'_>) {
    let Some(sel) = cx.selection else {
        ui.centered_and_justified(|ui| ui.label("Select an object in the inventory."));
        return;
    };
    let name = cx.model.inventory.name_of(sel).unwrap_or("").to_string();
    ui.horizontal(|ui| {
        theme::kind_icon(ui, sel, &cx.model.inventory);
        ui.heading(name);
        panels::alarms::badge(ui, &cx.model.alarms, sel.id());
        ui.add_space(12.0);
        let inv = &cx.model.inventory;
        ui.menu_button("Actions", |ui| actions::object_menu(ui, sel, inv, cx));
    });
    let tabs = tabs_of(&cx.model.inventory, sel);
    let tab = if tabs.contains(&tab) {
        tab
    } else {
        Tab::Summary
    };
    ui.horizontal(|ui| {
        for t in &tabs {
            if ui.selectable_label(tab == *t, t.title()).clicked() {
                cx.commands.send(Command::ShowTab(*t));
            }
        }
    });
    ui.separator();
    match tab {
        Tab::Summary => views.summary.ui(ui, cx),
        Tab::VirtualMachines => views.vm_table.ui(ui, cx),
        Tab::ResourceAllocation => views.allocation.ui(ui, cx),
        Tab::Performance => views.performance.ui(ui, cx),
        Tab::Events => views.events.ui(ui, cx),
        Tab::Tasks => views.tasks.ui(ui, cx),
        Tab::Console => views.console.ui(ui, cx),
    }
}

fn confirm_dialog(ctx: &egui::Context, c: &Confirm, commands: &mut CommandQueue) {
    let (text, button) = match c.action {
        ConfirmAction::Run(Operation::Destroy) => (
            format!(
                "Remove VM {} and delete all its files from the datastore? This cannot be undone.",
                c.name
            ),
            Operation::Destroy.label(),
        ),
        ConfirmAction::Run(Operation::RemoveHost) => (
            format!(
                "Remove host {} from the inventory? Its host agent keeps running.",
                c.name
            ),
            Operation::RemoveHost.label(),
        ),
        ConfirmAction::Run(op) => (format!("{} {}?", op.label(), c.name), op.label()),
        ConfirmAction::RemovePool => (
            format!(
                "Remove resource pool {}? A pool that still holds VMs or pools is not removed.",
                c.name
            ),
            "Remove",
        ),
    };
    egui::Window::new("Confirm")
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            ui.label(text);
            ui.horizontal(|ui| {
                if ui.button(button).clicked() {
                    commands.send(Command::Confirmed);
                }
                if ui.button("Cancel").clicked() {
                    commands.send(Command::CancelConfirm);
                }
            });
        });
}

/// The eframe wrapper: loads and saves [`Settings`].
pub struct DesktopApp {
    /// The app.
    pub app: StrataApp,
    persist: bool,
}

impl DesktopApp {
    /// Creates the app from eframe's creation context (restores settings unless `fresh`).
    pub fn new(cc: &eframe::CreationContext<'_>, fresh: bool) -> Self {
        let settings: Settings = if fresh {
            Settings::default()
        } else {
            cc.storage
                .and_then(|s| eframe::get_value(s, SETTINGS_KEY))
                .unwrap_or_default()
        };
        theme::apply(&cc.egui_ctx);
        DesktopApp {
            app: StrataApp::new(settings),
            persist: !fresh,
        }
    }
}

impl eframe::App for DesktopApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.app.ui(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.persist {
            eframe::set_value(storage, SETTINGS_KEY, &self.app.settings);
        }
    }
}

/// How the window starts.
#[derive(Default)]
pub struct Launch {
    /// Server to pre-fill.
    pub server: Option<String>,
    /// User name to pre-fill.
    pub username: Option<String>,
    /// Run the screenshot tour (with fresh settings, nothing remembered).
    pub tour: Option<tour::Tour>,
}

/// Opens the main window and runs until it is closed.
pub fn run_native(launch: Launch) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Strata")
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([800.0, 500.0]),
        ..Default::default()
    };
    let failed = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let failed_in = failed.clone();
    eframe::run_native(
        "Strata",
        options,
        Box::new(move |cc| {
            let fresh = launch.tour.is_some();
            let mut app = DesktopApp::new(cc, fresh);
            app.app.prefill(launch.server, launch.username);
            if let Some(t) = launch.tour {
                app.app.start_tour(t);
            }
            Ok(Box::new(TourExit {
                inner: app,
                failed: failed_in,
            }))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
    let failure = failed.lock().ok().and_then(|f| f.clone());
    match failure {
        Some(f) => Err(anyhow::anyhow!("screenshot tour failed: {f}")),
        None => Ok(()),
    }
}

/// Passes a tour's failure out of the event loop.
struct TourExit {
    inner: DesktopApp,
    failed: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl eframe::App for TourExit {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        self.inner.ui(ui, frame);
        if let Some(f) = self.inner.app.tour().and_then(|t| t.failure.clone()) {
            if let Ok(mut slot) = self.failed.lock() {
                *slot = Some(f);
            }
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.inner.save(storage);
    }
}
