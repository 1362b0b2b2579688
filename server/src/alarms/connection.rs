//! The host connection alarm: critical while the manager cannot reach a host (or no longer
//! trusts its certificate), cleared when the host is connected again.

use strata_shared::model::{AlarmKind, AlarmSeverity, ConnectionState, ObjectKind, ObjectRef};
use tracing::warn;
use uuid::Uuid;

use crate::app::App;

/// The alarm message for a host in `state`; `None` when connected (no alarm).
pub fn message(name: &str, state: ConnectionState, reason: Option<&str>) -> Option<String> {
    match state {
        ConnectionState::Connected => None,
        ConnectionState::Disconnected => Some(format!(
            "Host {name} is not responding: {}",
            reason.unwrap_or("connection lost")
        )),
        ConnectionState::NotTrusted => Some(format!(
            "Host {name} is not trusted: {}",
            reason.unwrap_or("its certificate changed")
        )),
    }
}

/// A host link recorded `state`: raises, updates or clears the host's connection alarm.
pub async fn host_state(app: &App, host: Uuid, state: ConnectionState, reason: Option<&str>) {
    let name = match app.db.host(host).await {
        Ok(row) => row.info.name,
        Err(e) => {
            warn!(%host, error = %e, "cannot check the host connection alarm");
            return;
        }
    };
    match message(&name, state, reason) {
        Some(msg) => {
            let target = ObjectRef {
                kind: ObjectKind::Host,
                id: host,
                name,
            };
            super::raise(
                app,
                AlarmKind::HostConnection,
                &target,
                AlarmSeverity::Critical,
                &msg,
            )
            .await;
        }
        None => {
            super::clear(
                app,
                AlarmKind::HostConnection,
                host,
                &format!("host {name} is connected again"),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_is_wrong_and_why() {
        assert_eq!(message("h1", ConnectionState::Connected, None), None);
        assert_eq!(
            message(
                "h1",
                ConnectionState::Disconnected,
                Some("connection refused")
            )
            .as_deref(),
            Some("Host h1 is not responding: connection refused")
        );
        assert_eq!(
            message("h1", ConnectionState::Disconnected, None).as_deref(),
            Some("Host h1 is not responding: connection lost")
        );
        assert!(message(
            "h1",
            ConnectionState::NotTrusted,
            Some("new certificate AB")
        )
        .unwrap()
        .starts_with("Host h1 is not trusted: new certificate AB"));
    }
}
