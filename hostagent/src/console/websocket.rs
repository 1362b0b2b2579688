//! The console over the agent's TLS WebSocket: `/console?ticket=…` takes the ticket, then
//! carries the VM's RFB byte stream both ways in binary messages (the client does the RFB
//! handshake itself; the VM offers security type None, the ticket having authenticated).

use std::sync::Arc;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use strata_shared::model::ConsoleEventKind;
use strata_shared::service::{RawSocket, StreamTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::key_fixup::KeyFixup;
use super::ConsoleGateway;

const VIA: &str = "websocket";
/// The largest chunk read from the VM per message.
const CHUNK: usize = 64 << 10;

async fn close(ws: &mut RawSocket, code: CloseCode, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    let _ = ws.close(Some(frame)).await;
}

impl ConsoleGateway {
    /// Serves one `/console` WebSocket.
    pub async fn serve_websocket(self: Arc<Self>, target: StreamTarget, mut ws: RawSocket) {
        let peer = target.peer;
        let Ok(_permit) = self.open.clone().try_acquire_owned() else {
            let why = "too many consoles are open";
            self.report(None, ConsoleEventKind::Refused, peer, VIA, why.into());
            close(&mut ws, CloseCode::Again, why).await;
            return;
        };
        let grant = match self.tickets.take_token(target.param("ticket")) {
            Ok(g) => g,
            Err(refusal) => {
                self.report(
                    None,
                    ConsoleEventKind::Refused,
                    peer,
                    VIA,
                    refusal.to_string(),
                );
                close(&mut ws, CloseCode::Policy, &refusal.to_string()).await;
                return;
            }
        };
        let vm = match self.connect_vm(&grant, peer, VIA, false).await {
            Ok(s) => s,
            Err(why) => {
                close(&mut ws, CloseCode::Error, &why).await;
                return;
            }
        };
        let since = Instant::now();
        let (mut vm_read, mut vm_write) = vm.into_split();
        let (mut sink, mut stream) = ws.split();
        let mut buf = vec![0u8; CHUNK];
        let mut keys = KeyFixup::from_handshake();
        let mut fixed = Vec::new();
        let (mut up, mut down) = (0u64, 0u64);
        let why = loop {
            tokio::select! {
                n = vm_read.read(&mut buf) => match n {
                    Ok(0) => {
                        let frame = CloseFrame { code: CloseCode::Away, reason: "the VM's console closed".into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break "the VM's console closed".to_string();
                    }
                    Ok(n) => {
                        down += n as u64;
                        if let Err(e) = sink.send(Message::Binary(buf[..n].to_vec().into())).await {
                            break format!("client write failed: {e}");
                        }
                    }
                    Err(e) => break format!("VM read failed: {e}"),
                },
                msg = stream.next() => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        up += b.len() as u64;
                        fixed.clear();
                        keys.feed(&b, &mut fixed);
                        if let Err(e) = vm_write.write_all(&fixed).await {
                            break format!("VM write failed: {e}");
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => {
                        // As on the VNC port: let the VM take what was typed last.
                        if keys.typed_within(super::LINGER) {
                            tokio::time::sleep(super::LINGER).await;
                        }
                        break "the client closed".to_string();
                    }
                    Some(Ok(Message::Text(_))) => {
                        let frame = CloseFrame { code: CloseCode::Unsupported, reason: "the console carries binary messages only".into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break "the client sent text".to_string();
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break format!("client read failed: {e}"),
                },
            }
        };
        self.report_closed(
            &grant,
            peer,
            VIA,
            since,
            &format!("{up} bytes in, {down} bytes out; {why}"),
        );
    }
}
