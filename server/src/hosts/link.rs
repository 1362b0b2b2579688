//! One host link: connect with the pinned thumbprint, log in with the manager's credential,
//! re-sync state, follow the host's notifications, and reconnect with backoff when it drops.

use std::sync::Weak;
use std::time::Duration;

use strata_shared::api::{agent as m, notifications};
use strata_shared::client::AGENT_PORT;
use strata_shared::model::{
    ConnectionState, DatastoreChange, Empty, HostFacts, InventoryObject, ObjectKind, ObjectRef,
    PowerState, PowerStateChange, Severity,
};
use strata_shared::{Client, ClientError, ErrorCode, Trust};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::app::App;

enum Failure {
    NotTrusted(String),
    Other(String),
}

async fn connect(
    app: &App,
    host: Uuid,
) -> Result<(Client, HostFacts, Vec<strata_shared::model::VmInfo>), Failure> {
    let row = app
        .db
        .host(host)
        .await
        .map_err(|e| Failure::Other(e.to_string()))?;
    let client = match Client::connect_with_port(&row.info.address, Trust::Thumbprint(row.info.thumbprint.clone()), AGENT_PORT).await {
        Ok(c) => c,
        Err(ClientError::NotTrusted { actual, .. }) => {
            return Err(Failure::NotTrusted(format!(
                "the host presented certificate {actual}, not the trusted {}; reconnect it to accept the new certificate",
                row.info.thumbprint
            )))
        }
        Err(e) => return Err(Failure::Other(e.to_string())),
    };
    client
        .login(&row.agent_username, &row.agent_key)
        .await
        .map_err(|e| match e.code() {
            Some(ErrorCode::NotAuthenticated) => Failure::Other(
                "the host refused this manager's credential (was it re-registered elsewhere?)"
                    .into(),
            ),
            _ => Failure::Other(e.to_string()),
        })?;
    client
        .call::<m::HostSubscribe>(Empty {})
        .await
        .map_err(|e| Failure::Other(e.to_string()))?;
    let facts = client
        .call::<m::HostInfoMethod>(Empty {})
        .await
        .map_err(|e| Failure::Other(e.to_string()))?;
    let vms = client
        .call::<m::VmList>(Empty {})
        .await
        .map_err(|e| Failure::Other(e.to_string()))?;
    Ok((client, facts, vms))
}

fn host_ref(host: Uuid, name: &str) -> ObjectRef {
    ObjectRef {
        kind: ObjectKind::Host,
        id: host,
        name: name.to_string(),
    }
}

async fn set_state(app: &App, host: Uuid, state: ConnectionState, reason: Option<&str>) {
    match app.db.set_host_state(host, state, reason).await {
        Ok(true) => {
            if let Ok(row) = app.db.host(host).await {
                let r = host_ref(host, &row.info.name);
                let (kind, sev, msg) = match state {
                    ConnectionState::Connected => (
                        "host.connected",
                        Severity::Info,
                        format!("{} connected", row.info.name),
                    ),
                    ConnectionState::Disconnected => (
                        "host.disconnected",
                        Severity::Warning,
                        format!(
                            "{} disconnected: {}",
                            row.info.name,
                            reason.unwrap_or("connection lost")
                        ),
                    ),
                    ConnectionState::NotTrusted => (
                        "host.certificateChanged",
                        Severity::Error,
                        format!(
                            "{} not trusted: {}",
                            row.info.name,
                            reason.unwrap_or("certificate changed")
                        ),
                    ),
                };
                app.event(kind, sev, Some(&r), None, &msg).await;
                app.changed(InventoryObject::Host(row.info));
            }
        }
        Ok(false) => {}
        Err(e) => {
            warn!(%host, error = %e, "cannot store host state");
            return;
        }
    }
    // Checked on every attempt, changed or not, so an alarm stored before a restart meets
    // the host's state as soon as the link knows it.
    crate::alarms::connection::host_state(app, host, state, reason).await;
}

/// Brings the inventory's view of this host's VMs in line with what the host reports.
async fn resync(app: &App, host: Uuid, reported: &[strata_shared::model::VmInfo]) {
    let Ok(known) = app.db.vms(Some(host)).await else {
        return;
    };
    for vm in known {
        let state = reported
            .iter()
            .find(|r| r.id == vm.id)
            .map(|r| r.power_state)
            .unwrap_or(PowerState::Unknown);
        let reason = if state == PowerState::Unknown {
            "its files are not registered on the host"
        } else {
            "state re-synced from the host"
        };
        if let Err(e) = app.apply_power_state(vm.id, state, reason, None).await {
            warn!(vm = %vm.id, error = %e, "cannot re-sync a VM");
        }
    }
}

/// A datastore became unreachable (or reachable again) on a host: record the host's new
/// facts, tell subscribers, and write an Event naming the VMs affected.
async fn datastore_changed(app: &App, host: Uuid, client: &Client, change: DatastoreChange) {
    let Ok(row) = app.db.host(host).await else {
        return;
    };
    if let Ok(facts) = client.call::<m::HostInfoMethod>(Empty {}).await {
        if let Err(e) = app
            .db
            .set_host_facts(host, row.info.datacenter, &facts)
            .await
        {
            warn!(%host, error = %e, "cannot store host facts");
        }
    }
    let volume = app.db.datastores().await.ok().and_then(|all| {
        all.into_iter()
            .find(|d| d.name == change.name && d.hosts.contains(&host))
    });
    let object = volume.as_ref().map(|d| ObjectRef {
        kind: ObjectKind::Datastore,
        id: d.id,
        name: d.name.clone(),
    });
    let affected = if change.vms.is_empty() {
        "no VMs are on it".to_string()
    } else {
        format!("VMs affected: {}", change.vms.join(", "))
    };
    let (kind, severity, msg) = if change.accessible {
        (
            "datastore.accessible",
            Severity::Info,
            format!(
                "datastore {} is accessible again on {}",
                change.name, row.info.name
            ),
        )
    } else {
        (
            "datastore.inaccessible",
            Severity::Error,
            format!(
                "datastore {} is inaccessible on {}: {}; {affected}",
                change.name,
                row.info.name,
                change.problem.as_deref().unwrap_or("no answer")
            ),
        )
    };
    app.event(kind, severity, object.as_ref(), None, &msg).await;
    crate::alarms::datastore::evaluate(app).await;
    if let Some(d) = volume {
        app.changed(InventoryObject::Datastore(d));
    }
}

/// Runs the link until `stop` turns true.
pub(super) async fn run(
    app: Weak<App>,
    host: Uuid,
    client_tx: watch::Sender<Option<Client>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        if *stop.borrow() {
            break;
        }
        let Some(a) = app.upgrade() else { break };
        match connect(&a, host).await {
            Ok((client, facts, vms)) => {
                backoff = Duration::from_millis(250);
                let dc = a.db.host(host).await.map(|h| h.info.datacenter).ok();
                if let Some(dc) = dc {
                    if let Err(e) = a.db.set_host_facts(host, dc, &facts).await {
                        warn!(%host, error = %e, "cannot store host facts");
                    }
                }
                set_state(&a, host, ConnectionState::Connected, None).await;
                crate::alarms::datastore::evaluate(&a).await;
                resync(&a, host, &vms).await;
                let _ = client_tx.send(Some(client.clone()));
                crate::pools::enforce::push_host(&a, host).await;
                info!(%host, address = %client.address(), "host connected");
                let mut notes = client.notifications();
                let mut stats_tick =
                    tokio::time::interval(Duration::from_secs(a.config.stats_interval_secs.max(1)));
                drop(a);
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = client.closed() => break,
                        _ = stats_tick.tick() => {
                            let Some(a) = app.upgrade() else { break };
                            a.stats.sample(&a, host, &client).await;
                        }
                        n = notes.recv() => {
                            let Ok(n) = n else { continue };
                            if n.method == notifications::DATASTORE_CHANGED {
                                let Some(a) = app.upgrade() else { break };
                                if let Ok(change) = serde_json::from_value::<DatastoreChange>(n.params) {
                                    datastore_changed(&a, host, &client, change).await;
                                }
                                continue;
                            }
                            if n.method == notifications::CONSOLE_EVENT {
                                let Some(a) = app.upgrade() else { break };
                                if let Ok(e) = serde_json::from_value(n.params) {
                                    crate::console::record(&a, host, e).await;
                                }
                                continue;
                            }
                            if n.method != notifications::VM_POWER_STATE_CHANGED { continue; }
                            let Ok(change) = serde_json::from_value::<PowerStateChange>(n.params) else { continue };
                            let Some(a) = app.upgrade() else { break };
                            let ours = a.db.vm(change.vm).await.map(|v| v.host == Some(host)).unwrap_or(false);
                            // A power operation of ours under way records the change itself,
                            // crediting the user who asked for it.
                            if ours && !a.vm_ops.contains(change.vm) {
                                if let Err(e) = a.apply_power_state(change.vm, change.power_state, &change.reason, None).await {
                                    warn!(vm = %change.vm, error = %e, "cannot apply a power state change");
                                }
                            }
                        }
                    }
                }
                let _ = client_tx.send(None);
                if *stop.borrow() {
                    break;
                }
                if let Some(a) = app.upgrade() {
                    set_state(
                        &a,
                        host,
                        ConnectionState::Disconnected,
                        Some("connection lost"),
                    )
                    .await;
                }
            }
            Err(Failure::NotTrusted(reason)) => {
                set_state(&a, host, ConnectionState::NotTrusted, Some(&reason)).await;
                backoff = Duration::from_secs(30);
            }
            Err(Failure::Other(reason)) => {
                debug!(%host, %reason, "host connect failed");
                set_state(&a, host, ConnectionState::Disconnected, Some(&reason)).await;
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    let _ = client_tx.send(None);
}
