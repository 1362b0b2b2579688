//! The async SDK client: one WebSocket connection, concurrent calls, typed methods, pushed
//! notifications, and task waiting. The CLI, the desktop client, the manager (towards host
//! agents) and the tests all use it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::api::manager::{SessionLogin, TaskGet};
use crate::api::{notifications, Method};
use crate::model::{IdParams, LoginParams, SessionInfo, TaskInfo};
use crate::rpc::{ErrorCode, Notification, Response, RpcError};
use crate::tls::{self, PinnedVerifier};

/// Which server certificate to accept.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Only the certificate with this SHA-256 thumbprint.
    Thumbprint(String),
    /// Any certificate (only for first contact; the thumbprint is recorded).
    Insecure,
}

/// Errors of the SDK client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{0}")]
    Rpc(#[from] RpcError),
    /// The address could not be parsed.
    #[error("invalid server address {0:?}: expected wss://HOST:PORT or HOST:PORT")]
    Address(String),
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The server's certificate is not the trusted one.
    #[error(
        "the server at {addr} presented certificate {actual}, which is not the trusted {expected}"
    )]
    NotTrusted {
        /// Address.
        addr: String,
        /// Trusted thumbprint.
        expected: String,
        /// Presented thumbprint.
        actual: String,
    },
    /// TLS failed for another reason.
    #[error("TLS with {addr} failed: {reason}")]
    Tls {
        /// Address.
        addr: String,
        /// Cause.
        reason: String,
    },
    /// The WebSocket handshake failed.
    #[error("WebSocket handshake with {addr} failed: {reason}")]
    Handshake {
        /// Address.
        addr: String,
        /// Cause.
        reason: String,
    },
    /// The connection is gone.
    #[error("the connection to the server was closed")]
    Closed,
    /// No answer in time.
    #[error("no answer to {method} within {secs} s")]
    Timeout {
        /// Method.
        method: String,
        /// Seconds waited.
        secs: u64,
    },
    /// The answer did not match the method's result type.
    #[error("unexpected answer to {method}: {reason}")]
    Decode {
        /// Method.
        method: String,
        /// Cause.
        reason: String,
    },
}

impl ClientError {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Rpc(e) => Some(e.code),
            ClientError::NotTrusted { .. } => Some(ErrorCode::NotTrusted),
            ClientError::Timeout { .. } => Some(ErrorCode::Timeout),
            _ => None,
        }
    }
}

/// Splits `wss://host:port/...`, `host:port` or `[v6]:port` into (host, "host:port").
pub fn parse_address(url: &str, default_port: u16) -> Result<(String, String), ClientError> {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or("");
    if hostport.is_empty() || url.starts_with("ws://") || url.starts_with("http://") {
        return Err(ClientError::Address(url.to_string()));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6
            .split_once(']')
            .ok_or_else(|| ClientError::Address(url.to_string()))?;
        (h.to_string(), p.strip_prefix(':').unwrap_or(""))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (hostport.to_string(), ""),
        }
    };
    let port: u16 = if port.is_empty() {
        default_port
    } else {
        port.parse()
            .map_err(|_| ClientError::Address(url.to_string()))?
    };
    if host.is_empty() {
        return Err(ClientError::Address(url.to_string()));
    }
    let joined = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((host, joined))
}

/// Default manager port.
pub const MANAGER_PORT: u16 = 8443;
/// Default host agent port.
pub const AGENT_PORT: u16 = 9443;

type Pending = Mutex<HashMap<u64, oneshot::Sender<Response>>>;

struct Shared {
    pending: Pending,
    notes: broadcast::Sender<Notification>,
}

struct Inner {
    out: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    closed: watch::Receiver<bool>,
    thumbprint: String,
    addr: String,
    call_timeout: Duration,
}

/// A connection to a manager or a host agent.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

async fn tls_connect(
    url: &str,
    default_port: u16,
    expected: Option<String>,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, String, String), ClientError> {
    let (host, addr) = parse_address(url, default_port)?;
    let expected = match expected {
        Some(t) => Some(tls::normalize_thumbprint(&t).map_err(|e| ClientError::Tls {
            addr: addr.clone(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr))
        .await
        .map_err(|_| ClientError::Connect {
            addr: addr.clone(),
            source: std::io::ErrorKind::TimedOut.into(),
        })?
        .map_err(|source| ClientError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let verifier = PinnedVerifier::new(expected.clone());
    let config = tls::client_config(verifier.clone()).map_err(|e| ClientError::Tls {
        addr: addr.clone(),
        reason: e.to_string(),
    })?;
    let name = ServerName::try_from(host.clone())
        .map_err(|_| ClientError::Address(url.to_string()))?
        .to_owned();
    let handshake = TlsConnector::from(config).connect(name, tcp);
    let stream = match tokio::time::timeout(Duration::from_secs(10), handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(match (expected, verifier.seen()) {
                (Some(expected), Some(actual)) if expected != actual => ClientError::NotTrusted {
                    addr,
                    expected,
                    actual,
                },
                _ => ClientError::Tls {
                    addr,
                    reason: e.to_string(),
                },
            })
        }
        Err(_) => {
            return Err(ClientError::Tls {
                addr,
                reason: "handshake timed out".into(),
            })
        }
    };
    let thumbprint = verifier.seen().unwrap_or_default();
    Ok((stream, addr, thumbprint))
}

/// The path and query of `url` (`/` when it has none): `wss://h:1/console?t=x` → `/console?t=x`.
pub fn url_path(url: &str) -> &str {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => &rest[i..],
        _ => "/",
    }
}

/// Connects with TLS, accepting any certificate, and returns the thumbprint the server
/// presented (for showing to a person before trusting it).
pub async fn fetch_thumbprint(url: &str, default_port: u16) -> Result<String, ClientError> {
    let (_stream, _addr, thumbprint) = tls_connect(url, default_port, None).await?;
    Ok(thumbprint)
}

/// A bare WebSocket over TLS.
pub type WsStream = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Opens a bare TLS WebSocket to a Strata daemon at `url`'s path (`/` when it has none),
/// for tools and tests that speak the protocol by hand and for consoles; returns it with the
/// `host:port` and the server's thumbprint.
pub async fn connect_websocket(
    url: &str,
    trust: Trust,
    default_port: u16,
) -> Result<(WsStream, String, String), ClientError> {
    let expected = match trust {
        Trust::Thumbprint(t) => Some(t),
        Trust::Insecure => None,
    };
    let (stream, addr, thumbprint) = tls_connect(url, default_port, expected).await?;
    let ws = websocket_handshake(format!("wss://{addr}{}", url_path(url)), stream, &addr).await?;
    Ok((ws, addr, thumbprint))
}

/// Opens a TLS WebSocket to exactly `url` (`wss://HOST:PORT/PATH?QUERY`, path and query kept,
/// e.g. a console ticket's `ws_url`), trusting only the certificate with `thumbprint`;
/// returns it with the `host:port` it reached.
pub async fn connect_websocket_pinned(
    url: &str,
    thumbprint: &str,
) -> Result<(WsStream, String), ClientError> {
    // The query may hold a secret (a ticket): keep it out of error messages.
    let without_query = url.split('?').next().unwrap_or_default();
    if !url.starts_with("wss://") {
        return Err(ClientError::Address(without_query.to_string()));
    }
    let (stream, addr, _) =
        tls_connect(without_query, AGENT_PORT, Some(thumbprint.to_string())).await?;
    let ws = websocket_handshake(url.to_string(), stream, &addr).await?;
    Ok((ws, addr))
}

async fn websocket_handshake(
    request: String,
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    addr: &str,
) -> Result<WsStream, ClientError> {
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(cfg))
        .await
        .map_err(|e| ClientError::Handshake {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    Ok(ws)
}

impl Client {
    /// Connects to a manager (default port 8443) or any `host:port`.
    pub async fn connect(url: &str, trust: Trust) -> Result<Client, ClientError> {
        Self::connect_with_port(url, trust, MANAGER_PORT).await
    }

    /// Connects, using `default_port` when the address has none.
    pub async fn connect_with_port(
        url: &str,
        trust: Trust,
        default_port: u16,
    ) -> Result<Client, ClientError> {
        let (ws, addr, thumbprint) = connect_websocket(url, trust, default_port).await?;
        let (mut sink, mut stream) = ws.split();
        let (out_tx, mut out_rx) = mpsc::channel::<Message>(256);
        let (notes, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            notes,
        });
        let (closed_tx, closed_rx) = watch::channel(false);

        tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader_shared = shared.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if value.get("method").is_some() && value.get("id").is_none() {
                    if let Ok(n) = serde_json::from_value::<Notification>(value) {
                        let _ = reader_shared.notes.send(n);
                    }
                    continue;
                }
                let Ok(resp) = serde_json::from_value::<Response>(value) else {
                    continue;
                };
                let Some(id) = resp.id.as_u64() else { continue };
                let waiter = reader_shared
                    .pending
                    .lock()
                    .ok()
                    .and_then(|mut p| p.remove(&id));
                if let Some(tx) = waiter {
                    let _ = tx.send(resp);
                }
            }
            let _ = closed_tx.send(true);
            if let Ok(mut p) = reader_shared.pending.lock() {
                p.clear();
            }
        });
        Ok(Client {
            inner: Arc::new(Inner {
                out: out_tx,
                shared,
                next_id: AtomicU64::new(1),
                closed: closed_rx,
                thumbprint,
                addr,
                call_timeout: Duration::from_secs(120),
            }),
        })
    }

    /// SHA-256 thumbprint of the server's certificate.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// `host:port` connected to.
    pub fn address(&self) -> &str {
        &self.inner.addr
    }

    /// True once the connection has dropped.
    pub fn is_closed(&self) -> bool {
        *self.inner.closed.borrow()
    }

    /// Resolves when the connection drops.
    pub async fn closed(&self) {
        let mut rx = self.inner.closed.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Notifications the server pushes from now on.
    pub fn notifications(&self) -> broadcast::Receiver<Notification> {
        self.inner.shared.notes.subscribe()
    }

    /// Calls a method by name with raw JSON.
    pub async fn call_raw(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.call_raw_timeout(method, params, self.inner.call_timeout)
            .await
    }

    /// Calls a method by name with raw JSON, waiting at most `limit`.
    pub async fn call_raw_timeout(
        &self,
        method: &str,
        params: Value,
        limit: Duration,
    ) -> Result<Value, ClientError> {
        if self.is_closed() {
            return Err(ClientError::Closed);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.inner.shared.pending.lock() {
            p.insert(id, tx);
        }
        let req =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if self
            .inner
            .out
            .send(Message::Text(req.to_string().into()))
            .await
            .is_err()
        {
            self.forget(id);
            return Err(ClientError::Closed);
        }
        let resp = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => return Err(ClientError::Closed),
            Err(_) => {
                self.forget(id);
                return Err(ClientError::Timeout {
                    method: method.to_string(),
                    secs: limit.as_secs(),
                });
            }
        };
        if let Some(e) = resp.error {
            return Err(ClientError::Rpc(e));
        }
        Ok(resp.result.unwrap_or(Value::Null))
    }

    fn forget(&self, id: u64) {
        if let Ok(mut p) = self.inner.shared.pending.lock() {
            p.remove(&id);
        }
    }

    /// Calls a typed method.
    pub async fn call<M: Method>(&self, params: M::Params) -> Result<M::Result, ClientError> {
        self.call_timeout::<M>(params, self.inner.call_timeout)
            .await
    }

    /// Calls a typed method, waiting at most `limit`.
    pub async fn call_timeout<M: Method>(
        &self,
        params: M::Params,
        limit: Duration,
    ) -> Result<M::Result, ClientError> {
        let p = serde_json::to_value(&params).map_err(|e| ClientError::Decode {
            method: M::NAME.into(),
            reason: e.to_string(),
        })?;
        let v = self.call_raw_timeout(M::NAME, p, limit).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Decode {
            method: M::NAME.into(),
            reason: e.to_string(),
        })
    }

    /// Logs in.
    pub async fn login(&self, username: &str, password: &str) -> Result<SessionInfo, ClientError> {
        self.call::<SessionLogin>(LoginParams {
            username: username.into(),
            password: password.into(),
        })
        .await
    }

    /// Waits until a task finishes (success or error) and returns it; `limit` bounds the wait.
    pub async fn wait_task(&self, id: Uuid, limit: Duration) -> Result<TaskInfo, ClientError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut notes = self.notifications();
        loop {
            let task = self.call::<TaskGet>(IdParams { id }).await?;
            if task.state.is_done() {
                return Ok(task);
            }
            let wake = tokio::time::sleep(Duration::from_millis(200));
            tokio::select! {
                _ = wake => {}
                n = notes.recv() => {
                    if let Ok(n) = n {
                        if n.method == notifications::TASK_DONE {
                            if let Ok(t) = serde_json::from_value::<TaskInfo>(n.params) {
                                if t.id == id {
                                    return Ok(t);
                                }
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(ClientError::Timeout { method: format!("task {id}"), secs: limit.as_secs() });
                }
            }
        }
    }

    /// Calls a method that returns a task, waits for it, and turns a failed task into an error.
    pub async fn run_task<M: Method<Result = TaskInfo>>(
        &self,
        params: M::Params,
        limit: Duration,
    ) -> Result<TaskInfo, ClientError> {
        let task = self.call::<M>(params).await?;
        let done = self.wait_task(task.id, limit).await?;
        match (&done.state, &done.error) {
            (crate::model::TaskState::Error, Some(e)) => Err(ClientError::Rpc(e.clone())),
            (crate::model::TaskState::Error, None) => {
                Err(ClientError::Rpc(RpcError::internal("task failed")))
            }
            _ => Ok(done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            parse_address("wss://127.0.0.1:9000/", 1).unwrap(),
            ("127.0.0.1".into(), "127.0.0.1:9000".into())
        );
        assert_eq!(
            parse_address("example.org", 8443).unwrap().1,
            "example.org:8443"
        );
        assert_eq!(
            parse_address("[::1]:5", 1).unwrap(),
            ("::1".into(), "[::1]:5".into())
        );
        for bad in ["", "ws://x:1", "wss://:1", "x:notaport", "[::1"] {
            assert!(parse_address(bad, 1).is_err(), "{bad}");
        }
    }

    #[test]
    fn url_paths_keep_the_query() {
        assert_eq!(
            url_path("wss://h:1/console?ticket=ab"),
            "/console?ticket=ab"
        );
        assert_eq!(url_path("wss://h:1"), "/");
        assert_eq!(url_path("h:1"), "/");
        assert_eq!(url_path("wss://[::1]:5/x"), "/x");
    }
}
