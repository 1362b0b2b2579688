//! The host agent's API over the shared JSON-RPC service loop.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use strata_shared::api::agent as m;
use strata_shared::api::Method;
use strata_shared::model::{Empty, ManagerCredential, Role, ServerInfo, ServerKind, SessionInfo};
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::{
    forward_notifications, handle, refuse_stream, Connection, RawSocket, Service, StreamTarget,
};
use tracing::{info, warn};

use crate::agent::Agent;
use crate::auth::AgentSession;
use crate::console::ConsoleGateway;

/// The API front of an [`Agent`].
pub struct AgentService {
    /// The agent.
    pub agent: Arc<Agent>,
    /// Console tickets and the console gateway.
    pub console: Arc<ConsoleGateway>,
}

fn require(conn: &Connection<AgentSession>) -> Result<AgentSession, RpcError> {
    match conn.session() {
        Some(s) if s.expires_ms > strata_shared::now_ms() => Ok(s),
        Some(_) => Err(RpcError::new(
            ErrorCode::NotAuthenticated,
            "the session has expired; log in again",
        )),
        None => Err(RpcError::new(
            ErrorCode::NotAuthenticated,
            "log in first (session.login)",
        )),
    }
}

impl Service for AgentService {
    type Session = AgentSession;

    async fn stream(self: Arc<Self>, target: StreamTarget, ws: RawSocket) {
        if target.path == "/console" {
            self.console.clone().serve_websocket(target, ws).await;
        } else {
            refuse_stream(target, ws).await;
        }
    }

    async fn call(
        self: Arc<Self>,
        conn: Arc<Connection<AgentSession>>,
        method: String,
        params: Value,
    ) -> Result<Value, RpcError> {
        let a = &self.agent;
        match method.as_str() {
            m::ServerInfoMethod::NAME => {
                handle::<m::ServerInfoMethod, _, _>(params, |_| async {
                    Ok(ServerInfo {
                        product: "Strata".into(),
                        version: strata_shared::VERSION.into(),
                        kind: ServerKind::HostAgent,
                        id: a.id,
                    })
                })
                .await
            }
            m::SessionLogin::NAME => {
                handle::<m::SessionLogin, _, _>(params, |p| async move {
                    let check = {
                        let a = a.clone();
                        let (u, pw) = (p.username.clone(), p.password.clone());
                        tokio::task::spawn_blocking(move || a.auth.check(&u, &pw))
                            .await
                            .map_err(|e| RpcError::internal(e.to_string()))?
                    };
                    let Some(role) = check else {
                        warn!(user = %p.username, peer = %conn.peer, "login failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        return Err(RpcError::new(
                            ErrorCode::NotAuthenticated,
                            "incorrect user name or password",
                        ));
                    };
                    let (token, s) = a.auth.start_session(&p.username, role);
                    info!(user = %p.username, peer = %conn.peer, "logged in");
                    conn.set_session(Some(s.clone()));
                    Ok(SessionInfo {
                        token,
                        username: s.username,
                        role: s.role,
                        expires_ms: s.expires_ms,
                    })
                })
                .await
            }
            m::SessionResume::NAME => {
                handle::<m::SessionResume, _, _>(params, |p| async move {
                    let s = a.auth.resume(&p.token).ok_or_else(|| {
                        RpcError::new(
                            ErrorCode::NotAuthenticated,
                            "the session token is invalid or has expired",
                        )
                    })?;
                    conn.set_session(Some(s.clone()));
                    Ok(SessionInfo {
                        token: p.token,
                        username: s.username,
                        role: s.role,
                        expires_ms: s.expires_ms,
                    })
                })
                .await
            }
            _ => {
                let session = require(&conn)?;
                self.authenticated(conn, session, method, params).await
            }
        }
    }
}

impl AgentService {
    async fn authenticated(
        &self,
        conn: Arc<Connection<AgentSession>>,
        session: AgentSession,
        method: String,
        params: Value,
    ) -> Result<Value, RpcError> {
        let a = &self.agent;
        if crate::auth::is_manager(&session.username) {
            a.manager_called(&session.username);
        }
        match method.as_str() {
            m::SessionLogout::NAME => {
                handle::<m::SessionLogout, _, _>(params, |_| async {
                    conn.set_session(None);
                    Ok(Empty {})
                })
                .await
            }
            m::HostInfoMethod::NAME => {
                handle::<m::HostInfoMethod, _, _>(params, |_| async { Ok(a.facts()) }).await
            }
            m::HostRegisterManager::NAME => {
                handle::<m::HostRegisterManager, _, _>(params, |p| async move {
                    if session.username != "root" {
                        return Err(RpcError::new(
                            ErrorCode::NoPermission,
                            "only root may register a manager",
                        ));
                    }
                    let a = a.clone();
                    let (username, key) =
                        tokio::task::spawn_blocking(move || a.auth.register_manager(p.manager_id))
                            .await
                            .map_err(|e| RpcError::internal(e.to_string()))?
                            .map_err(|e| RpcError::internal(e.to_string()))?;
                    info!(manager = %p.manager_id, "manager registered");
                    Ok(ManagerCredential { username, key })
                })
                .await
            }
            m::HostSubscribe::NAME => {
                handle::<m::HostSubscribe, _, _>(params, |_| async {
                    forward_notifications(conn.clone(), a.subscribe());
                    Ok(Empty {})
                })
                .await
            }
            m::HostApplyResources::NAME => {
                handle::<m::HostApplyResources, _, _>(params, |p| async move {
                    a.apply_resources(p).map(|_| Empty {})
                })
                .await
            }
            m::VmList::NAME => handle::<m::VmList, _, _>(params, |_| async { Ok(a.list()) }).await,
            m::VmGet::NAME => {
                handle::<m::VmGet, _, _>(params, |p| async move { a.get(p.id) }).await
            }
            m::DatastoreBrowse::NAME => {
                handle::<m::DatastoreBrowse, _, _>(params, |p| a.browse(p)).await
            }
            m::HostStats::NAME => {
                handle::<m::HostStats, _, _>(params, |_| async { Ok(a.stats()) }).await
            }
            m::VmSnapshotList::NAME => {
                handle::<m::VmSnapshotList, _, _>(params, |p| async move { a.snapshot_list(p.id) })
                    .await
            }
            m::VmDiskList::NAME => {
                handle::<m::VmDiskList, _, _>(params, |p| async move { a.disk_list(p.id) }).await
            }
            _ if session.role < Role::Operator => Err(RpcError::new(
                ErrorCode::NoPermission,
                format!("{method} needs the operator role"),
            )),
            m::VmCreate::NAME => {
                handle::<m::VmCreate, _, _>(params, |p| async move { a.create(&p) }).await
            }
            m::VmPowerOn::NAME => handle::<m::VmPowerOn, _, _>(params, |p| a.power_on(p.id)).await,
            m::VmPowerOff::NAME => {
                handle::<m::VmPowerOff, _, _>(params, |p| a.power_off(p.id, p.hard, p.timeout_secs))
                    .await
            }
            m::VmReset::NAME => handle::<m::VmReset, _, _>(params, |p| a.reset(p.id)).await,
            m::VmSuspend::NAME => handle::<m::VmSuspend, _, _>(params, |p| a.suspend(p.id)).await,
            m::VmPause::NAME => handle::<m::VmPause, _, _>(params, |p| a.pause(p.id, true)).await,
            m::VmUnpause::NAME => {
                handle::<m::VmUnpause, _, _>(params, |p| a.pause(p.id, false)).await
            }
            m::VmDestroy::NAME => {
                handle::<m::VmDestroy, _, _>(params, |p| async move {
                    a.destroy(p.id).await.map(|_| Empty {})
                })
                .await
            }
            m::VmConsoleRead::NAME => {
                handle::<m::VmConsoleRead, _, _>(params, |p| async move {
                    a.console_read(p.id, p.offset, p.max_bytes)
                })
                .await
            }
            m::VmConsoleSend::NAME => {
                handle::<m::VmConsoleSend, _, _>(params, |p| async move {
                    a.console_send(p.id, &p.data).await.map(|_| Empty {})
                })
                .await
            }
            m::VmConsoleTicket::NAME => {
                handle::<m::VmConsoleTicket, _, _>(params, |p| async move {
                    a.require_running(p.id)?;
                    // A manager names its own user; anyone else gets tickets in their name.
                    let user = match p.user {
                        Some(u) if crate::auth::is_manager(&session.username) => u,
                        _ => session.username.clone(),
                    };
                    self.console
                        .issue(p.id, &user)
                        .map_err(|e| RpcError::new(ErrorCode::InsufficientResources, e.to_string()))
                })
                .await
            }
            m::VmDiskCreate::NAME => {
                handle::<m::VmDiskCreate, _, _>(params, |p| async move { a.disk_create(&p).await })
                    .await
            }
            m::VmDiskGrow::NAME => {
                handle::<m::VmDiskGrow, _, _>(params, |p| async move { a.disk_grow(&p).await })
                    .await
            }
            m::VmDiskAttach::NAME => {
                handle::<m::VmDiskAttach, _, _>(params, |p| async move { a.disk_attach(&p).await })
                    .await
            }
            m::VmDiskRemove::NAME => {
                handle::<m::VmDiskRemove, _, _>(params, |p| async move { a.disk_remove(&p).await })
                    .await
            }
            m::DatastoreUpload::NAME => {
                handle::<m::DatastoreUpload, _, _>(params, |p| a.upload(p)).await
            }
            m::DatastoreDownload::NAME => {
                handle::<m::DatastoreDownload, _, _>(params, |p| a.download(p)).await
            }
            m::VmDiskMapDevice::NAME => {
                handle::<m::VmDiskMapDevice, _, _>(params, |p| async move {
                    a.disk_map_device(&p).await
                })
                .await
            }
            m::VmSnapshotCreate::NAME => {
                handle::<m::VmSnapshotCreate, _, _>(params, |p| async move {
                    a.snapshot_create(&p).await
                })
                .await
            }
            m::VmSnapshotRevert::NAME => {
                handle::<m::VmSnapshotRevert, _, _>(params, |p| async move {
                    a.snapshot_revert(&p).await
                })
                .await
            }
            m::VmSnapshotDelete::NAME => {
                handle::<m::VmSnapshotDelete, _, _>(params, |p| async move {
                    a.snapshot_delete(&p).await
                })
                .await
            }
            m::VmClone::NAME => {
                handle::<m::VmClone, _, _>(params, |p| async move { a.clone_vm(&p).await }).await
            }
            m::VmSetTemplate::NAME => {
                handle::<m::VmSetTemplate, _, _>(
                    params,
                    |p| async move { a.set_template(&p).await },
                )
                .await
            }
            m::VmReconfigure::NAME => {
                handle::<m::VmReconfigure, _, _>(params, |p| async move { a.reconfigure(&p).await })
                    .await
            }
            other => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("no method {other:?} on the host agent"),
            )),
        }
    }
}
