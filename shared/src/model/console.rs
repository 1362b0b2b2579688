//! VM consoles: the tickets that open them and the events they leave.
//!
//! A client asks the manager (or a host agent directly) for a ticket for one VM. The ticket
//! is single-use, expires after [`TICKET_LIFETIME_SECS`] (the host agent's
//! `console_ticket_secs`), is bound to the user and the VM,
//! and opens the VM's screen (RFB 3.8) on the host agent in one of two ways:
//! - a TLS WebSocket at [`ConsoleTicket::ws_url`] (certificate thumbprint
//!   [`ConsoleTicket::thumbprint`]) carrying the RFB byte stream in binary messages; the
//!   ticket is in the URL, and the RFB handshake behind it offers security type None;
//! - plain TCP at [`ConsoleTicket::vnc_host`]:[`ConsoleTicket::vnc_port`] for any standard
//!   VNC client, which authenticates with VNC authentication and the one-time
//!   [`ConsoleTicket::vnc_password`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long a console ticket stays valid by default, seconds.
pub const TICKET_LIFETIME_SECS: u32 = 30;

/// A one-time permission to open one VM's console.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleTicket {
    /// The VM.
    pub vm: Uuid,
    /// The user it was issued to.
    pub user: String,
    /// `wss://HOST:PORT/console?ticket=…`: the console over the host agent's TLS WebSocket.
    pub ws_url: String,
    /// SHA-256 thumbprint of the host agent's certificate (pin it for `ws_url`).
    pub thumbprint: String,
    /// Host of the plain VNC endpoint.
    pub vnc_host: String,
    /// Port of the plain VNC endpoint.
    pub vnc_port: u16,
    /// One-time VNC password (8 characters: VNC authentication uses no more).
    pub vnc_password: String,
    /// Seconds from issue until the ticket expires.
    pub expires_in_secs: u32,
}

impl std::fmt::Debug for ConsoleTicket {
    // The URL and password are secrets: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleTicket")
            .field("vm", &self.vm)
            .field("user", &self.user)
            .field("vnc_host", &self.vnc_host)
            .field("vnc_port", &self.vnc_port)
            .field("expires_in_secs", &self.expires_in_secs)
            .finish_non_exhaustive()
    }
}

/// What happened on a console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ConsoleEventKind {
    /// A ticket was accepted and the console opened.
    Opened,
    /// An open console closed.
    Closed,
    /// A connection was refused (missing, reused, expired or wrong ticket or password).
    Refused,
}

/// A console opened, closed or refused (host agent → manager, which records an Event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleEvent {
    /// The VM, when known (a refused connection may name none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<Uuid>,
    /// The ticket's user, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What happened.
    pub kind: ConsoleEventKind,
    /// The client's address.
    pub peer: String,
    /// `websocket` or `vnc`.
    pub via: String,
    /// Why, in words (refusals), or how long it was open (closes).
    #[serde(default)]
    pub detail: String,
}
