//! The WebSocket JSON-RPC service loop shared by the manager and the host agent: TLS accept,
//! WebSocket upgrade, request limits, per-request dispatch, server-pushed notifications and
//! graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use crate::api::Method;
use crate::rpc::{ErrorCode, Notification, Request, Response, RpcError};

/// Limits applied to every connection.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    /// Largest request answered; larger ones get an `InvalidRequest` error and the
    /// connection stays open.
    pub max_request_bytes: usize,
    /// Largest WebSocket message read at all; beyond it the connection is closed.
    pub max_message_bytes: usize,
    /// Connections served at once; more are refused.
    pub max_connections: usize,
    /// Requests of one connection under way at once; more wait.
    pub max_inflight_per_connection: usize,
    /// Notifications queued for one connection; a client that falls further behind is
    /// disconnected.
    pub outbound_queue: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 1 << 20,
            max_message_bytes: 16 << 20,
            max_connections: 1024,
            max_inflight_per_connection: 64,
            outbound_queue: 4096,
        }
    }
}

/// A daemon's API: called once per request with the connection it came on.
pub trait Service: Send + Sync + 'static {
    /// What a logged-in connection carries.
    type Session: Clone + Send + Sync + 'static;
    /// Handles one request.
    fn call(
        self: Arc<Self>,
        conn: Arc<Connection<Self::Session>>,
        method: String,
        params: Value,
    ) -> impl Future<Output = Result<Value, RpcError>> + Send;
    /// The connection ended.
    fn disconnected(&self, _conn: &Connection<Self::Session>) {}
    /// A WebSocket opened on a path other than the JSON-RPC endpoint (`/`): the service takes
    /// the stream over (a VM console, say) and ends it when it is done. By default such
    /// paths do not exist: the socket is closed with a policy error.
    fn stream(
        self: Arc<Self>,
        target: StreamTarget,
        ws: RawSocket,
    ) -> impl Future<Output = ()> + Send {
        refuse_stream(target, ws)
    }
}

/// Closes a WebSocket opened on a path nobody serves, saying so.
pub async fn refuse_stream(target: StreamTarget, mut ws: RawSocket) {
    let frame = CloseFrame {
        code: CloseCode::Policy,
        reason: format!("no such endpoint: {}", target.path).into(),
    };
    let _ = ws.close(Some(frame)).await;
}

/// A WebSocket over the service's TLS connection, handed to [`Service::stream`].
pub type RawSocket = tokio_tungstenite::WebSocketStream<tokio_rustls::server::TlsStream<TcpStream>>;

/// Where a non-RPC WebSocket was opened, and by whom.
#[derive(Debug, Clone)]
pub struct StreamTarget {
    /// The request path, e.g. `/console`.
    pub path: String,
    /// The query string without `?` (may hold secrets such as tickets: never log it).
    pub query: String,
    /// Remote address.
    pub peer: SocketAddr,
}

impl StreamTarget {
    /// The value of query parameter `name` (no percent-decoding: values are URL-safe).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// One client connection.
pub struct Connection<S> {
    /// Unique within the process.
    pub id: u64,
    /// Remote address.
    pub peer: SocketAddr,
    session: Mutex<Option<S>>,
    outbound: mpsc::Sender<Message>,
    closed: watch::Sender<bool>,
}

impl<S: Clone> Connection<S> {
    /// The session, once logged in.
    pub fn session(&self) -> Option<S> {
        self.session.lock().ok().and_then(|s| s.clone())
    }
    /// Sets or clears the session.
    pub fn set_session(&self, session: Option<S>) {
        if let Ok(mut s) = self.session.lock() {
            *s = session;
        }
    }
    /// Queues a notification; false when the connection is gone or hopelessly behind
    /// (then it is closed).
    pub fn notify(&self, note: &Notification) -> bool {
        let Ok(text) = serde_json::to_string(note) else {
            return false;
        };
        match self.outbound.try_send(Message::Text(text.into())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(conn = self.id, peer = %self.peer, "client is not reading notifications; disconnecting it");
                let _ = self.closed.send(true);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
    /// Resolves when the connection ends.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}

/// Parses a method's params, mapping failures to `InvalidParams`.
pub fn parse_params<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params).map_err(|e| {
        RpcError::new(
            ErrorCode::InvalidParams,
            format!("invalid params for {method}: {e}"),
        )
    })
}

/// Parses params for `M`, runs `f`, serializes its result.
pub async fn handle<M, F, Fut>(params: Value, f: F) -> Result<Value, RpcError>
where
    M: Method,
    F: FnOnce(M::Params) -> Fut,
    Fut: Future<Output = Result<M::Result, RpcError>>,
{
    let p = parse_params::<M::Params>(M::NAME, params)?;
    let r = f(p).await?;
    to_value(&r)
}

/// Serializes a result.
pub fn to_value<T: Serialize>(v: &T) -> Result<Value, RpcError> {
    serde_json::to_value(v)
        .map_err(|e| RpcError::internal(format!("cannot encode the result: {e}")))
}

/// Serves `service` on `listener` until `shutdown` resolves, then closes every connection
/// (with a WebSocket close frame) and returns once they are gone or 5 s have passed.
pub async fn serve<S: Service>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: Arc<S>,
    limits: ServiceLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = TlsAcceptor::from(tls);
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let limits = Arc::new(limits);
    let next_id = AtomicU64::new(1);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    warn!(%peer, "connection limit reached; refusing a connection");
                    continue;
                };
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let (acceptor, service, limits, stop) =
                    (acceptor.clone(), service.clone(), limits.clone(), stop_rx.clone());
                tasks.spawn(async move {
                    connection(acceptor, tcp, peer, id, service, limits, stop).await;
                    drop(permit);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    let open = tasks.len();
    if open > 0 {
        info!(connections = open, "closing connections");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
}

async fn connection<S: Service>(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    service: Arc<S>,
    limits: Arc<ServiceLimits>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_message_bytes));
    let mut target: Option<(String, String)> = None;
    // The callback's error type is tungstenite's (an HTTP response); it never fails here.
    #[allow(clippy::result_large_err)]
    let record =
        |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
         resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            target = Some((
                req.uri().path().to_string(),
                req.uri().query().unwrap_or_default().to_string(),
            ));
            Ok(resp)
        };
    let ws = match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::accept_hdr_async_with_config(tls, record, Some(cfg)),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        _ => {
            debug!(%peer, "WebSocket handshake failed");
            return;
        }
    };
    if let Some((path, query)) = target.filter(|(p, _)| !p.is_empty() && p != "/") {
        debug!(conn = id, %peer, %path, "stream endpoint");
        let target = StreamTarget { path, query, peer };
        tokio::select! {
            _ = service.stream(target, ws) => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {}
        }
        return;
    }
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(limits.outbound_queue);
    let (closed_tx, mut closed_rx) = watch::channel(false);
    let conn = Arc::new(Connection {
        id,
        peer,
        session: Mutex::new(None),
        outbound: out_tx,
        closed: closed_tx,
    });
    debug!(conn = id, %peer, "connected");

    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = out_rx.recv() => {
                    let Some(msg) = msg else { break };
                    let close = matches!(msg, Message::Close(_));
                    if sink.send(msg).await.is_err() || close {
                        break;
                    }
                }
                _ = async { let _ = closed_rx.wait_for(|c| *c).await; } => {
                    while let Ok(msg) = out_rx.try_recv() {
                        if sink.send(msg).await.is_err() {
                            break;
                        }
                    }
                    break;
                }
            }
        }
        let _ = sink.close().await;
    });

    let inflight = Arc::new(Semaphore::new(limits.max_inflight_per_connection));
    let conn_closed = conn.closed();
    tokio::pin!(conn_closed);
    loop {
        let msg = tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                let frame = CloseFrame { code: CloseCode::Away, reason: "server shutting down".into() };
                let _ = conn.outbound.send(Message::Close(Some(frame))).await;
                break;
            }
            _ = &mut conn_closed => break,
            m = stream.next() => m,
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                debug!(conn = id, error = %e, "read failed; closing");
                break;
            }
            None => break,
        };
        match msg {
            Message::Text(text) => {
                if text.len() > limits.max_request_bytes {
                    let e = RpcError::new(
                        ErrorCode::InvalidRequest,
                        format!(
                            "request of {} bytes exceeds the limit of {} bytes",
                            text.len(),
                            limits.max_request_bytes
                        ),
                    );
                    send_response(&conn, Response::err(Value::Null, e)).await;
                    continue;
                }
                let Ok(permit) = inflight.clone().acquire_owned().await else {
                    break;
                };
                let (conn, service) = (conn.clone(), service.clone());
                tokio::spawn(async move {
                    if let Some(resp) = dispatch(service, conn.clone(), text.as_str()).await {
                        send_response(&conn, resp).await;
                    }
                    drop(permit);
                });
            }
            Message::Binary(_) => {
                let e = RpcError::new(
                    ErrorCode::InvalidRequest,
                    "binary messages are not accepted; send JSON-RPC as text",
                );
                send_response(&conn, Response::err(Value::Null, e)).await;
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = conn.closed.send(true);
    service.disconnected(&conn);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    debug!(conn = id, %peer, "disconnected");
}

async fn send_response<S>(conn: &Connection<S>, resp: Response) {
    match serde_json::to_string(&resp) {
        Ok(text) => {
            let _ = conn.outbound.send(Message::Text(text.into())).await;
        }
        Err(e) => warn!(error = %e, "cannot encode a response"),
    }
}

async fn dispatch<S: Service>(
    service: Arc<S>,
    conn: Arc<Connection<S::Session>>,
    text: &str,
) -> Option<Response> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Some(Response::err(
                Value::Null,
                RpcError::new(ErrorCode::ParseError, format!("invalid JSON: {e}")),
            ))
        }
    };
    if value.is_array() {
        let e = RpcError::new(
            ErrorCode::InvalidRequest,
            "batch requests are not supported",
        );
        return Some(Response::err(Value::Null, e));
    }
    let raw_id = value.get("id").cloned().unwrap_or(Value::Null);
    let req: Request = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => {
            let e = RpcError::new(
                ErrorCode::InvalidRequest,
                format!("not a JSON-RPC request: {e}"),
            );
            return Some(Response::err(raw_id, e));
        }
    };
    if let Err(e) = req.check() {
        return Some(Response::err(raw_id, e));
    }
    let params = match req.params {
        Value::Null => Value::Object(Default::default()),
        Value::Object(m) => Value::Object(m),
        _ => {
            let e = RpcError::new(ErrorCode::InvalidParams, "params must be an object");
            return req.id.map(|id| Response::err(id, e));
        }
    };
    let result = service.call(conn, req.method, params).await;
    let id = req.id?;
    Some(match result {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(id, e),
    })
}

/// Forwards notifications from `rx` to `conn` until the connection ends.
pub fn forward_notifications<S: Clone + Send + Sync + 'static>(
    conn: Arc<Connection<S>>,
    mut rx: tokio::sync::broadcast::Receiver<Notification>,
) {
    let closed = conn.closed();
    tokio::spawn(async move {
        tokio::pin!(closed);
        loop {
            tokio::select! {
                _ = &mut closed => break,
                n = rx.recv() => match n {
                    Ok(n) => {
                        if !conn.notify(&n) {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                        warn!(conn = conn.id, skipped = k, "subscriber fell behind; notifications dropped");
                    }
                    Err(_) => break,
                },
            }
        }
    });
}

/// Resolves on SIGTERM or SIGINT (the daemons' graceful-shutdown trigger).
#[cfg(unix)]
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// Resolves on Ctrl-C (the daemons' graceful-shutdown trigger).
#[cfg(not(unix))]
pub async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Sets up logging to stderr; `STRATA_LOG` takes `tracing` filter directives (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
