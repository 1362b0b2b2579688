//! How a console reaches the RFB byte stream: a [`Connector`] opens a fresh [`Connection`]
//! for every (re)connect.
//!
//! The RFB client runs over any `AsyncRead + AsyncWrite` stream ([`ByteStream`]): a plain
//! TCP or unix socket is used as it is; a WebSocket (the host agent's console gateway, whose
//! binary messages carry the RFB bytes) is turned into one by [`over_websocket`], which pairs
//! it with an in-memory duplex pipe and a pump future that the session drives.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use strata_shared::model::ConsoleTicket;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Size of the in-memory pipe between the WebSocket pump and the RFB client.
const PIPE_BUFFER: usize = 256 * 1024;
/// Largest chunk of RFB bytes sent in one WebSocket message.
const MAX_MESSAGE: usize = 64 * 1024;

/// A byte stream the RFB client can run over.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> ByteStream for T {}

/// Any [`ByteStream`].
pub type BoxStream = Box<dyn ByteStream>;

/// Errors of reaching a console.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No ticket could be had (the manager refused or is unreachable).
    #[error("no console ticket: {0}")]
    Ticket(String),
    /// The console endpoint could not be reached.
    #[error("{0}")]
    Connect(String),
    /// The WebSocket failed.
    #[error("the console connection failed: {0}")]
    WebSocket(String),
    /// The other side closed the WebSocket and said why.
    #[error("the console gateway closed the connection: {0}")]
    Closed(String),
}

/// Drives a transport (moves bytes between a WebSocket and the RFB stream) until the
/// connection ends.
pub type Pump = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send>>;

/// One open connection to a console.
pub struct Connection {
    /// The RFB byte stream.
    pub stream: BoxStream,
    /// Must be polled for the stream to move (WebSocket transports); `None` for sockets.
    pub pump: Option<Pump>,
    /// Where it leads, for logs (never the ticket).
    pub peer: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("pump", &self.pump.is_some())
            .finish_non_exhaustive()
    }
}

/// What [`Connector::connect`] returns.
pub type ConnectFuture = Pin<Box<dyn Future<Output = Result<Connection, TransportError>> + Send>>;

/// A fresh console ticket, or why not in words.
pub type TicketFuture = Pin<Box<dyn Future<Output = Result<ConsoleTicket, String>> + Send>>;

/// Fetches a fresh ticket for one VM (the app calls `vm.consoleTicket` on the manager).
pub type TicketSource = Arc<dyn Fn() -> TicketFuture + Send + Sync>;

/// Opens connections to one console, as often as asked.
#[derive(Clone)]
pub struct Connector(Arc<dyn Fn() -> ConnectFuture + Send + Sync>);

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

impl Connector {
    /// A connector from a function that opens a connection.
    pub fn new<F>(open: F) -> Self
    where
        F: Fn() -> ConnectFuture + Send + Sync + 'static,
    {
        Connector(Arc::new(open))
    }

    /// Opens a connection.
    pub fn connect(&self) -> ConnectFuture {
        (self.0)()
    }

    /// The host agent's console gateway: gets a fresh ticket from `tickets` each time, then
    /// opens its `ws_url` (TLS, certificate pinned to the ticket's thumbprint).
    pub fn tickets(tickets: TicketSource) -> Self {
        Connector::new(move || {
            let tickets = tickets.clone();
            Box::pin(async move {
                let ticket = tickets().await.map_err(TransportError::Ticket)?;
                let (ws, addr) = strata_shared::client::connect_websocket_pinned(
                    &ticket.ws_url,
                    &ticket.thumbprint,
                )
                .await
                .map_err(|e| TransportError::Connect(e.to_string()))?;
                Ok(over_websocket(ws, addr))
            })
        })
    }

    /// A plain RFB server over TCP (no authentication).
    pub fn tcp(addr: String) -> Self {
        Connector::new(move || {
            let addr = addr.clone();
            Box::pin(async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|e| {
                    TransportError::Connect(format!("cannot connect to {addr}: {e}"))
                })?;
                let _ = tcp.set_nodelay(true);
                Ok(Connection {
                    stream: Box::new(tcp),
                    pump: None,
                    peer: addr,
                })
            })
        })
    }

    /// A plain RFB server on a unix socket (no authentication), e.g. QEMU's `-vnc unix:PATH`.
    #[cfg(unix)]
    pub fn unix(path: std::path::PathBuf) -> Self {
        Connector::new(move || {
            let path = path.clone();
            Box::pin(async move {
                let peer = path.display().to_string();
                let sock = tokio::net::UnixStream::connect(&path).await.map_err(|e| {
                    TransportError::Connect(format!("cannot connect to {peer}: {e}"))
                })?;
                Ok(Connection {
                    stream: Box::new(sock),
                    pump: None,
                    peer,
                })
            })
        })
    }
}

/// Turns a WebSocket whose binary messages carry a byte stream into a [`Connection`].
pub fn over_websocket<S>(ws: WebSocketStream<S>, peer: String) -> Connection
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (local, remote) = tokio::io::duplex(PIPE_BUFFER);
    Connection {
        stream: Box::new(local),
        pump: Some(Box::pin(pump(ws, remote))),
        peer,
    }
}

/// Moves bytes both ways until either side ends. Ends the pipe (the RFB client then sees
/// end of stream) and closes the WebSocket when done.
async fn pump<S>(
    ws: WebSocketStream<S>,
    pipe: tokio::io::DuplexStream,
) -> Result<(), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut messages) = ws.split();
    let (mut from_rfb, mut to_rfb) = tokio::io::split(pipe);
    let mut buf = vec![0u8; MAX_MESSAGE];
    let ws_err =
        |e: tokio_tungstenite::tungstenite::Error| TransportError::WebSocket(e.to_string());
    let result = loop {
        tokio::select! {
            n = from_rfb.read(&mut buf) => match n {
                Ok(0) | Err(_) => break Ok(()),
                Ok(n) => {
                    if let Err(e) = sink.send(Message::binary(buf[..n].to_vec())).await {
                        break Err(ws_err(e));
                    }
                }
            },
            msg = messages.next() => match msg {
                None => break Ok(()),
                Some(Err(e)) => break Err(ws_err(e)),
                Some(Ok(Message::Binary(data))) => {
                    if to_rfb.write_all(&data).await.is_err() {
                        // The RFB client is gone.
                        break Ok(());
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    break match frame {
                        Some(f) if !f.reason.is_empty() => Err(TransportError::Closed(f.reason.to_string())),
                        _ => Ok(()),
                    };
                }
                // Pings are answered by tungstenite; nothing else is part of the stream.
                Some(Ok(_)) => {}
            },
        }
    };
    let _ = to_rfb.shutdown().await;
    let _ = sink.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WebSocket pair over an in-memory pipe.
    async fn ws_pair() -> (
        WebSocketStream<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(tokio_tungstenite::accept_async(b));
        let (client, _) = tokio_tungstenite::client_async("ws://localhost/console", a)
            .await
            .unwrap();
        (client, server.await.unwrap().unwrap())
    }

    #[tokio::test]
    async fn binary_messages_become_a_byte_stream_both_ways() {
        let (client, mut server) = ws_pair().await;
        let conn = over_websocket(client, "test".into());
        let pump = tokio::spawn(conn.pump.unwrap());
        let mut stream = conn.stream;
        // Server → stream, split across messages.
        server
            .send(Message::binary(b"RFB 003".to_vec()))
            .await
            .unwrap();
        server
            .send(Message::binary(b".008\n".to_vec()))
            .await
            .unwrap();
        let mut got = [0u8; 12];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"RFB 003.008\n");
        // Stream → server as binary messages.
        stream.write_all(b"hello").await.unwrap();
        let msg = server.next().await.unwrap().unwrap();
        assert_eq!(msg, Message::binary(b"hello".to_vec()));
        // Text is not part of the stream; a close with a reason ends it with that reason.
        server.send(Message::text("ignored")).await.unwrap();
        server
            .send(Message::Close(Some(
                tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code:
                        tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                    reason: "VM powered off".into(),
                },
            )))
            .await
            .unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            pump.await.unwrap(),
            Err(TransportError::Closed("VM powered off".into()))
        );
    }

    #[tokio::test]
    async fn dropping_the_stream_closes_the_websocket() {
        let (client, mut server) = ws_pair().await;
        let conn = over_websocket(client, "test".into());
        let pump = tokio::spawn(conn.pump.unwrap());
        drop(conn.stream);
        assert_eq!(pump.await.unwrap(), Ok(()));
        // The server sees a close.
        loop {
            match server.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    }
}
