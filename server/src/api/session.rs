//! `server.info`, `session.*`, `user.*`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use strata_shared::api::manager as m;
use strata_shared::api::Method;
use strata_shared::model::{
    Empty, ObjectKind, ObjectRef, ServerInfo, ServerKind, SessionInfo, Severity, UserInfo,
};
use strata_shared::password;
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::{handle, Connection};
use tracing::info;
use uuid::Uuid;

use super::Session;
use crate::app::App;
use crate::db::DbError;

fn user_ref(name: &str) -> ObjectRef {
    ObjectRef {
        kind: ObjectKind::User,
        id: Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
        name: name.into(),
    }
}

/// Methods that need no session.
pub(super) async fn public(
    app: &Arc<App>,
    conn: &Arc<Connection<Session>>,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    match method {
        m::ServerInfoMethod::NAME => {
            handle::<m::ServerInfoMethod, _, _>(params, |_| async {
                Ok(ServerInfo {
                    product: "Strata".into(),
                    version: strata_shared::VERSION.into(),
                    kind: ServerKind::Manager,
                    id: app.id,
                })
            })
            .await
        }
        m::SessionLogin::NAME => {
            handle::<m::SessionLogin, _, _>(params, |p| async move {
                let user = match app.db.user(&p.username).await {
                    Ok(u) => Some(u),
                    Err(DbError::NotFound) => None,
                    Err(e) => return Err(e.into()),
                };
                let hash = user
                    .as_ref()
                    .map(|u| u.password_hash.clone())
                    .unwrap_or_default();
                let pw = p.password.clone();
                let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &hash))
                    .await
                    .map_err(|e| RpcError::internal(e.to_string()))?;
                let user = match (ok, user) {
                    (true, Some(u)) => u,
                    _ => {
                        let msg =
                            format!("failed login for {:?} from {}", p.username, conn.peer.ip());
                        app.event(
                            "user.loginFailed",
                            Severity::Warning,
                            Some(&user_ref(&p.username)),
                            None,
                            &msg,
                        )
                        .await;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        return Err(RpcError::new(
                            ErrorCode::NotAuthenticated,
                            "incorrect user name or password",
                        ));
                    }
                };
                let token = password::random_secret(32);
                let digest = password::token_digest(&token);
                let expires_ms = strata_shared::now_ms()
                    .saturating_add((app.config.session_ttl_secs as i64).saturating_mul(1000));
                app.db
                    .insert_session(&digest, &user.username, expires_ms)
                    .await?;
                conn.set_session(Some(Session {
                    username: user.username.clone(),
                    role: user.role,
                    digest,
                    expires_ms,
                }));
                info!(user = %user.username, peer = %conn.peer, "logged in");
                let msg = format!("{} logged in from {}", user.username, conn.peer.ip());
                app.event(
                    "user.login",
                    Severity::Info,
                    Some(&user_ref(&user.username)),
                    Some(&user.username),
                    &msg,
                )
                .await;
                Ok(SessionInfo {
                    token,
                    username: user.username,
                    role: user.role,
                    expires_ms,
                })
            })
            .await
        }
        m::SessionResume::NAME => {
            handle::<m::SessionResume, _, _>(params, |p| async move {
                let digest = password::token_digest(&p.token);
                let s = match app.db.session(&digest).await {
                    Ok(s) => s,
                    Err(DbError::NotFound) => {
                        return Err(RpcError::new(
                            ErrorCode::NotAuthenticated,
                            "the session token is invalid or has expired",
                        ))
                    }
                    Err(e) => return Err(e.into()),
                };
                conn.set_session(Some(Session {
                    username: s.username.clone(),
                    role: s.role,
                    digest,
                    expires_ms: s.expires_ms,
                }));
                Ok(SessionInfo {
                    token: p.token,
                    username: s.username,
                    role: s.role,
                    expires_ms: s.expires_ms,
                })
            })
            .await
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("no method {other:?}"),
        )),
    }
}

/// Session and user methods that need a session.
pub(super) async fn authenticated(
    app: &Arc<App>,
    conn: &Arc<Connection<Session>>,
    s: &Session,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    match method {
        m::SessionLogout::NAME => {
            handle::<m::SessionLogout, _, _>(params, |_| async {
                app.db.delete_session(&s.digest).await?;
                conn.set_session(None);
                Ok(Empty {})
            })
            .await
        }
        m::UserList::NAME => {
            handle::<m::UserList, _, _>(params, |_| async { Ok(app.db.users().await?) }).await
        }
        m::UserCreate::NAME => {
            handle::<m::UserCreate, _, _>(params, |p| async move {
                strata_shared::model::validate_name("user", &p.username)
                    .map_err(RpcError::invalid)?;
                if p.password.chars().count() < 8 {
                    return Err(RpcError::invalid(
                        "the password must be at least 8 characters long",
                    ));
                }
                let pw = p.password.clone();
                let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
                    .await
                    .map_err(|e| RpcError::internal(e.to_string()))?
                    .map_err(|e| RpcError::internal(e.to_string()))?;
                match app.db.insert_user(&p.username, &hash, p.role).await {
                    Ok(()) => {}
                    Err(DbError::Duplicate) => {
                        return Err(RpcError::new(
                            ErrorCode::Conflict,
                            format!("user {} already exists", p.username),
                        ))
                    }
                    Err(e) => return Err(e.into()),
                }
                let msg = format!("user {} created with role {}", p.username, p.role.as_str());
                app.event(
                    "user.created",
                    Severity::Info,
                    Some(&user_ref(&p.username)),
                    Some(&s.username),
                    &msg,
                )
                .await;
                Ok(UserInfo {
                    username: p.username,
                    role: p.role,
                })
            })
            .await
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("no method {other:?}"),
        )),
    }
}
