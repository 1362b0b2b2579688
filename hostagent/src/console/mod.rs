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
pub mod serial_screen;
pub mod tickets;
pub mod vnc_auth;
pub mod vnc_front;
pub mod websocket;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_shared::api::notifications;
use strata_shared::model::{ConsoleEvent, ConsoleEventKind, ConsoleTicket};
use strata_shared::rpc::Notification;
use tokio::sync::{broadcast, Semaphore};
use tracing::{info, warn};
use uuid::Uuid;

/// Consoles open at once on this host; more are refused until one closes.
pub const MAX_OPEN: usize = 64;
/// How long the VM side stays connected after a client that typed in that time has gone
/// (input in flight).
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

/// A running VM without a display device: its serial log, serial input socket and name.
#[derive(Debug, Clone)]
pub struct SerialSource {
    /// The serial log.
    pub log: PathBuf,
    /// The serial input socket.
    pub input: PathBuf,
    /// The VM's name (for logs).
    pub name: String,
}

/// Finds the serial console of a running VM that has no screen of its own.
pub type SerialLookup = Box<dyn Fn(Uuid) -> Option<SerialSource> + Send + Sync>;

/// The host's console tickets and the gateway in front of the VMs' RFB sockets.
pub struct ConsoleGateway {
    tickets: tickets::TicketStore,
    lifetime_secs: u32,
    run_dir: PathBuf,
    endpoints: Endpoints,
    notes: broadcast::Sender<Notification>,
    open: Arc<Semaphore>,
    serial: SerialLookup,
}

/// The RFB socket of VM `id` in run directory `run_dir`.
pub fn backend_socket(run_dir: &Path, id: Uuid) -> PathBuf {
    run_dir.join(format!("{}.vnc", id.simple()))
}

impl ConsoleGateway {
    /// A gateway for the VMs whose sockets are in `run_dir`, reporting on `notes`; a VM
    /// without a socket but with a serial console (found by `serial`) gets its serial text
    /// as the screen.
    pub fn new(
        run_dir: PathBuf,
        endpoints: Endpoints,
        notes: broadcast::Sender<Notification>,
        serial: SerialLookup,
        lifetime_secs: u32,
    ) -> Self {
        Self {
            serial,
            lifetime_secs,
            tickets: tickets::TicketStore::new(Duration::from_secs(lifetime_secs.into())),
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
            expires_in_secs: self.lifetime_secs,
        })
    }

    /// Connects to the VM's screen: its RFB socket, or, for a VM without a display, an RFB
    /// server over its serial console started for this connection.
    async fn open_backend(
        &self,
        vm: Uuid,
    ) -> Result<tokio::net::UnixStream, backend::BackendError> {
        match backend::connect(&backend_socket(&self.run_dir, vm)).await {
            Ok(s) => Ok(s),
            Err(e) => match (self.serial)(vm) {
                Some(src) => serve_serial(src),
                None => Err(e),
            },
        }
    }

    /// Opens the granted VM's screen for a client at `peer` (with the backend's handshake
    /// done when `handshake`), reporting the open, or the refusal with its reason (which is
    /// also returned).
    async fn connect_vm(
        &self,
        grant: &tickets::Grant,
        peer: SocketAddr,
        via: &str,
        handshake: bool,
    ) -> Result<tokio::net::UnixStream, String> {
        let opened = async {
            let mut vm = self.open_backend(grant.vm).await?;
            if handshake {
                backend::handshake_none(&mut vm).await?;
            }
            Ok::<_, backend::BackendError>(vm)
        };
        match opened.await {
            Ok(vm) => {
                self.report(
                    Some(grant),
                    ConsoleEventKind::Opened,
                    peer,
                    via,
                    String::new(),
                );
                Ok(vm)
            }
            Err(e) => {
                self.report(
                    Some(grant),
                    ConsoleEventKind::Refused,
                    peer,
                    via,
                    e.to_string(),
                );
                Err(e.to_string())
            }
        }
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

/// Starts an RFB server over `src`'s serial console on one end of a socket pair (on its own
/// thread, as strata-vmx serves its clients) and returns the other end.
fn serve_serial(src: SerialSource) -> Result<tokio::net::UnixStream, backend::BackendError> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let ours = tokio::net::UnixStream::from_std(ours)?;
    let screen = serial_screen::SerialScreen::new(src.log, src.input);
    std::thread::Builder::new()
        .name("serial-console".into())
        .spawn(move || {
            if let Err(e) = crate::rfb::server::serve_client(theirs, &screen, &src.name) {
                tracing::debug!(vm = %src.name, error = %e, "serial console connection ended");
            }
        })?;
    Ok(ours)
}

/// `host` as it goes into a URL (IPv6 addresses in brackets).
fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}
