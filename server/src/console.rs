//! VM consoles as the manager sees them: tickets come from the VM's host agent (which
//! serves the console itself), re-addressed to where the manager reaches that host; the
//! agents' console events become Events.

use strata_shared::model::{ConsoleEvent, ConsoleEventKind, ConsoleTicket, Severity};
use uuid::Uuid;

use crate::app::{vm_ref, App};

/// The host part of `host:port` (IPv6 literals keep their brackets).
fn host_of(address: &str) -> &str {
    match address.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.is_empty() => h,
        _ => address,
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Points the ticket's WebSocket URL at `agent_address` (`host:port` of the agent's API,
/// as the manager reaches it), and its plain VNC host there too unless the agent serves
/// plain VNC on loopback only (then only a client on that host can use it, as it says).
pub fn readdress(ticket: &mut ConsoleTicket, agent_address: &str) {
    if let Some((_, query)) = ticket.ws_url.split_once('?') {
        ticket.ws_url = format!("wss://{agent_address}/console?{query}");
    }
    if !is_loopback(&ticket.vnc_host) {
        ticket.vnc_host = host_of(agent_address).to_string();
    }
}

/// Records a host agent's console event as an Event on the VM.
pub async fn record(app: &App, host: Uuid, e: ConsoleEvent) {
    let vm = match e.vm {
        Some(id) => app.db.vm(id).await.ok().filter(|v| v.host == Some(host)),
        None => None,
    };
    let name = vm.as_ref().map(|v| v.name.as_str()).unwrap_or("a VM");
    let (kind, severity, message) = match e.kind {
        ConsoleEventKind::Opened => (
            "vm.console.opened",
            Severity::Info,
            format!("Console of {name} opened from {} ({})", e.peer, e.via),
        ),
        ConsoleEventKind::Closed => (
            "vm.console.closed",
            Severity::Info,
            format!("Console of {name} closed ({})", e.detail),
        ),
        ConsoleEventKind::Refused => (
            "vm.console.refused",
            Severity::Warning,
            format!(
                "Console connection from {} refused ({}): {}",
                e.peer, e.via, e.detail
            ),
        ),
    };
    app.event(
        kind,
        severity,
        vm.as_ref().map(vm_ref).as_ref(),
        e.user.as_deref(),
        &message,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(vnc_host: &str) -> ConsoleTicket {
        ConsoleTicket {
            vm: Uuid::nil(),
            user: "u".into(),
            ws_url: "wss://agent-host:9443/console?ticket=abc".into(),
            thumbprint: "t".into(),
            vnc_host: vnc_host.into(),
            vnc_port: 5900,
            vnc_password: "p".into(),
            expires_in_secs: 30,
        }
    }

    #[test]
    fn tickets_point_where_the_manager_reaches_the_host() {
        let mut t = ticket("agent-host");
        readdress(&mut t, "10.0.0.5:9443");
        assert_eq!(t.ws_url, "wss://10.0.0.5:9443/console?ticket=abc");
        assert_eq!(t.vnc_host, "10.0.0.5");
        let mut t = ticket("127.0.0.1");
        readdress(&mut t, "[fd00::5]:9443");
        assert_eq!(t.ws_url, "wss://[fd00::5]:9443/console?ticket=abc");
        assert_eq!(t.vnc_host, "127.0.0.1", "loopback-only VNC stays as it is");
        assert_eq!(host_of("[fd00::5]:9443"), "[fd00::5]");
        assert_eq!(host_of("h"), "h");
        assert!(is_loopback("[::1]") && is_loopback("localhost") && !is_loopback("h"));
    }
}
