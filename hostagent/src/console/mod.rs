//! VM consoles: tickets, and the gateway that opens a VM's screen (RFB) to a client holding
//! one.
//!
//! Every running VM serves RFB 3.8 with security type None on a unix socket in the agent's
//! run directory (QEMU's own VNC server for the qemu engine, strata-vmx's for the native
//! one); nothing else can reach it. The gateway is the only way in:
//! - a TLS WebSocket on the agent's API port at `/console?ticket=…`, carrying the RFB byte
//!   stream in binary messages (the client does the RFB handshake itself, security None);
//! - a plain TCP port (`console_listen`, loopback by default) for any standard VNC client,
//!   which must pass VNC authentication with the ticket's one-time password; the gateway
//!   then does the backend's handshake and splices the two.
//!
//! A ticket opens one console once (see [`tickets`]); every open, close and refusal is
//! reported as a `vm.consoleEvent` notification, which the manager records as an Event.

pub mod backend;
pub mod key_fixup;
pub mod tickets;
pub mod vnc_auth;
pub mod vnc_front;
pub mod websocket;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_shared::api::notifications;
use strata_shared::model::{ConsoleEvent, ConsoleEventKind, ConsoleTicket, TICKET_LIFETIME_SECS};
use strata_shared::rpc::Notification;
use tokio::sync::{broadcast, Semaphore};
use tracing::{info, warn};
use uuid::Uuid;

/// Consoles open at once on this host; more are refused until one closes.
pub const MAX_OPEN: usize = 64;
/// How long the VM side stays connected after the client has gone (input in flight).
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Where clients reach this host's console endpoints.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Host name or address for the WebSocket URL.
    pub ws_host: String,
    /// The API port (the WebSocket endpoint shares it).
    pub ws_port: u16,
    /// The API certificate's thumbprint.
    pub thumbprint: String,
    /// Host of the plain VNC endpoint.
    pub vnc_host: String,
    /// Port of the plain VNC endpoint.
    pub vnc_port: u16,
}

/// The host's console tickets and the gateway in front of the VMs' RFB sockets.
pub struct ConsoleGateway {
    tickets: tickets::TicketStore,
    run_dir: PathBuf,
    endpoints: Endpoints,
    notes: broadcast::Sender<Notification>,
    open: Arc<Semaphore>,
}

/// The RFB socket of VM `id` in run directory `run_dir`.
pub fn backend_socket(run_dir: &Path, id: Uuid) -> PathBuf {
    run_dir.join(format!("{}.vnc", id.simple()))
}

impl ConsoleGateway {
    /// A gateway for the VMs whose sockets are in `run_dir`, reporting on `notes`.
    pub fn new(
        run_dir: PathBuf,
        endpoints: Endpoints,
        notes: broadcast::Sender<Notification>,
    ) -> Self {
        Self {
            tickets: tickets::TicketStore::new(Duration::from_secs(TICKET_LIFETIME_SECS.into())),
            run_dir,
            endpoints,
            notes,
            open: Arc::new(Semaphore::new(MAX_OPEN)),
        }
    }

    /// Issues a ticket for `user` to open VM `vm`'s console (the caller checked that the VM
    /// exists, runs, and that the user may).
    pub fn issue(&self, vm: Uuid, user: &str) -> Result<ConsoleTicket, tickets::Refusal> {
        let t = self.tickets.issue(vm, user)?;
        let e = &self.endpoints;
        info!(%vm, %user, "console ticket issued");
        Ok(ConsoleTicket {
            vm,
            user: user.to_string(),
            ws_url: format!(
                "wss://{}:{}/console?ticket={}",
                url_host(&e.ws_host),
                e.ws_port,
                t.token
            ),
            thumbprint: e.thumbprint.clone(),
            vnc_host: e.vnc_host.clone(),
            vnc_port: e.vnc_port,
            vnc_password: t.password,
            expires_in_secs: TICKET_LIFETIME_SECS,
        })
    }

    /// The VM's RFB socket.
    fn backend_path(&self, vm: Uuid) -> PathBuf {
        backend_socket(&self.run_dir, vm)
    }

    /// Reports a console event (and logs it).
    fn report(
        &self,
        grant: Option<&tickets::Grant>,
        kind: ConsoleEventKind,
        peer: SocketAddr,
        via: &str,
        detail: String,
    ) {
        match kind {
            ConsoleEventKind::Refused => warn!(%peer, via, %detail, "console refused"),
            _ => {
                info!(vm = ?grant.map(|g| g.vm), user = ?grant.map(|g| &g.user), %peer, via, ?kind, %detail, "console")
            }
        }
        let event = ConsoleEvent {
            vm: grant.map(|g| g.vm),
            user: grant.map(|g| g.user.clone()),
            kind,
            peer: peer.to_string(),
            via: via.to_string(),
            detail,
        };
        let _ = self
            .notes
            .send(Notification::new(notifications::CONSOLE_EVENT, &event));
    }

    /// Reports the close of a console that was open since `since`.
    fn report_closed(
        &self,
        grant: &tickets::Grant,
        peer: SocketAddr,
        via: &str,
        since: Instant,
        why: &str,
    ) {
        let secs = since.elapsed().as_secs_f64();
        self.report(
            Some(grant),
            ConsoleEventKind::Closed,
            peer,
            via,
            format!("open {secs:.1} s; {why}"),
        );
    }
}

/// `host` as it goes into a URL (IPv6 addresses in brackets).
fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}
