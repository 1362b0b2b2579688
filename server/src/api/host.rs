//! `host.*`: adding a host (thumbprint pinning, manager registration), listing, removing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use strata_shared::api::{agent as agent_api, manager as m, Method};
use strata_shared::client::{fetch_thumbprint, parse_address, AGENT_PORT};
use strata_shared::model::{
    ConnectionState, Empty, HostAddParams, HostInfo, InventoryObject, ObjectKind, ObjectRef,
    RegisterManagerParams, ServerKind, Severity,
};
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::{handle, to_value};
use strata_shared::tls::normalize_thumbprint;
use strata_shared::{Client, ClientError, Trust};
use uuid::Uuid;

use super::Session;
use crate::app::App;
use crate::db::inventory::HostRow;

fn host_ref(h: &HostInfo) -> ObjectRef {
    ObjectRef {
        kind: ObjectKind::Host,
        id: h.id,
        name: h.name.clone(),
    }
}

/// Maps SDK errors from talking to an agent.
pub fn agent_error(e: ClientError) -> RpcError {
    match e {
        ClientError::Rpc(e) => e,
        ClientError::NotTrusted { actual, .. } => RpcError::new(
            ErrorCode::NotTrusted,
            format!("the host presented certificate {actual}, which is not the thumbprint given"),
        )
        .with_data(json!({ "thumbprint": actual })),
        ClientError::Timeout { method, secs } => RpcError::new(
            ErrorCode::Timeout,
            format!("the host did not answer {method} within {secs} s"),
        ),
        other => RpcError::new(
            ErrorCode::Unavailable,
            format!("cannot reach the host: {other}"),
        ),
    }
}

async fn get_host(app: &App, id: Uuid) -> Result<HostRow, RpcError> {
    app.db
        .host(id)
        .await
        .map_err(|e| e.or_not_found("host", id))
}

async fn add(
    app: &Arc<App>,
    s: &Session,
    p: HostAddParams,
) -> Result<strata_shared::model::TaskInfo, RpcError> {
    let (_, address) =
        parse_address(&p.address, AGENT_PORT).map_err(|e| RpcError::invalid(e.to_string()))?;
    let thumbprint = match &p.thumbprint {
        Some(t) => normalize_thumbprint(t).map_err(|e| RpcError::invalid(e.to_string()))?,
        None => {
            let seen = fetch_thumbprint(&address, AGENT_PORT)
                .await
                .map_err(agent_error)?;
            return Err(RpcError::new(
                ErrorCode::NotTrusted,
                format!("the host's certificate is not trusted yet; its SHA-256 thumbprint is {seen}. Check it on the host and pass it as the thumbprint to add the host"),
            )
            .with_data(json!({ "thumbprint": seen })));
        }
    };
    if app
        .db
        .hosts()
        .await?
        .iter()
        .any(|h| h.info.address == address)
    {
        return Err(RpcError::new(
            ErrorCode::Conflict,
            format!("host {address} is already in the inventory"),
        ));
    }
    let datacenter = match p.cluster {
        Some(c) => {
            app.db
                .clusters()
                .await?
                .into_iter()
                .find(|x| x.id == c)
                .ok_or_else(|| RpcError::not_found("cluster", c))?
                .datacenter
        }
        None => app.db.default_datacenter().await?.id,
    };
    let app2 = app.clone();
    let user = s.username.clone();
    let cluster = p.cluster;
    app.tasks
        .start(
            app,
            &s.username,
            m::HostAdd::NAME,
            format!("Add host {address}"),
            None,
            move |task| async move {
                let app = app2;
                task.progress(10, "connecting").await;
                let client = Client::connect_with_port(
                    &address,
                    Trust::Thumbprint(thumbprint.clone()),
                    AGENT_PORT,
                )
                .await
                .map_err(agent_error)?;
                task.progress(30, "logging in").await;
                client
                    .login(&p.username, &p.password)
                    .await
                    .map_err(|e| match e.code() {
                        Some(ErrorCode::NotAuthenticated) => RpcError::new(
                            ErrorCode::NotAuthenticated,
                            "the host refused the user name or password",
                        ),
                        _ => agent_error(e),
                    })?;
                let info = client
                    .call::<agent_api::ServerInfoMethod>(Empty {})
                    .await
                    .map_err(agent_error)?;
                if info.kind != ServerKind::HostAgent {
                    return Err(RpcError::invalid(format!(
                        "{address} is not a Strata host agent"
                    )));
                }
                let facts = client
                    .call::<agent_api::HostInfoMethod>(Empty {})
                    .await
                    .map_err(agent_error)?;
                if let Ok(existing) = app.db.host(facts.id).await {
                    return Err(RpcError::new(
                        ErrorCode::Conflict,
                        format!(
                            "this host is already in the inventory as {} ({})",
                            existing.info.name, existing.info.address
                        ),
                    ));
                }
                task.progress(50, "registering the manager").await;
                let cred = client
                    .call::<agent_api::HostRegisterManager>(RegisterManagerParams {
                        manager_id: app.id,
                    })
                    .await
                    .map_err(agent_error)?;
                let row = HostRow {
                    info: HostInfo {
                        id: facts.id,
                        name: facts.hostname.clone(),
                        address: address.clone(),
                        datacenter,
                        cluster,
                        thumbprint,
                        connection_state: ConnectionState::Disconnected,
                        state_reason: Some("connecting".into()),
                        facts: Some(facts.clone()),
                    },
                    agent_username: cred.username,
                    agent_key: cred.key,
                };
                app.db.insert_host(&row).await?;
                app.db
                    .set_host_facts(row.info.id, datacenter, &facts)
                    .await?;
                let r = host_ref(&row.info);
                task.set_target(r.clone());
                app.event(
                    "host.added",
                    Severity::Info,
                    Some(&r),
                    Some(&user),
                    &format!("host {} ({address}) added", row.info.name),
                )
                .await;
                app.changed(InventoryObject::Host(row.info.clone()));
                task.progress(80, "connecting the manager's link").await;
                app.hosts.start(&app, row.info.id);
                app.hosts
                    .wait_connected(row.info.id, Duration::from_secs(15))
                    .await;
                let host = app.db.host(row.info.id).await?.info;
                to_value(&host)
            },
        )
        .await
}

async fn remove(
    app: &Arc<App>,
    s: &Session,
    id: Uuid,
) -> Result<strata_shared::model::TaskInfo, RpcError> {
    let host = get_host(app, id).await?.info;
    let vms = app.db.vms(Some(id)).await?;
    if !vms.is_empty() {
        return Err(RpcError::new(
            ErrorCode::InvalidState,
            format!(
                "host {} still has {} VM(s); destroy or move them first",
                host.name,
                vms.len()
            ),
        ));
    }
    let app2 = app.clone();
    let user = s.username.clone();
    let r = host_ref(&host);
    app.tasks
        .start(
            app,
            &s.username,
            m::HostRemove::NAME,
            format!("Remove host {}", host.name),
            Some(r.clone()),
            move |_t| async move {
                app2.hosts.stop(id).await;
                app2.db.delete_host(id).await?;
                crate::alarms::object_removed(
                    &app2,
                    id,
                    &format!("host {} was removed from the inventory", r.name),
                )
                .await;
                // Its datastore rows went with it.
                crate::alarms::datastore::evaluate(&app2).await;
                app2.event(
                    "host.removed",
                    Severity::Info,
                    Some(&r),
                    Some(&user),
                    &format!("host {} removed", r.name),
                )
                .await;
                app2.removed(ObjectKind::Host, id);
                Ok(Value::Null)
            },
        )
        .await
}

pub(super) async fn call(
    app: &Arc<App>,
    s: &Session,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    match method {
        m::HostAdd::NAME => handle::<m::HostAdd, _, _>(params, |p| add(app, s, p)).await,
        m::HostRemove::NAME => {
            handle::<m::HostRemove, _, _>(params, |p| remove(app, s, p.id)).await
        }
        m::HostList::NAME => {
            handle::<m::HostList, _, _>(params, |_| async {
                Ok(app.db.hosts().await?.into_iter().map(|h| h.info).collect())
            })
            .await
        }
        m::HostGet::NAME => {
            handle::<m::HostGet, _, _>(
                params,
                |p| async move { Ok(get_host(app, p.id).await?.info) },
            )
            .await
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("no method {other:?}"),
        )),
    }
}
