//! The plain VNC endpoint for standard clients: RFB with VNC authentication, where the
//! password is a console ticket's one-time password. After authentication the gateway does
//! the VM backend's handshake (security None) and splices the two streams, so the client's
//! ClientInit goes to the VM and the VM's ServerInit comes back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;
use strata_shared::model::ConsoleEventKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::key_fixup::KeyFixup;
use super::tickets::{Grant, Refusal};
use super::ConsoleGateway;

/// How long a client gets to authenticate.
const HANDSHAKE: Duration = Duration::from_secs(15);
/// Pause before a failed authentication is answered (slows guessing down).
const FAILURE_DELAY: Duration = Duration::from_millis(500);
const VIA: &str = "vnc";

/// Why the client side of the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    /// The client is not speaking RFB as expected.
    #[error("{0}")]
    Protocol(String),
    /// The ticket was refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// I/O failed (the client went away).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Parses a client's ProtocolVersion; returns the minor version to speak (3, 7 or 8).
pub fn client_minor(version: &[u8; 12]) -> Result<u8, FrontError> {
    let text = std::str::from_utf8(version).unwrap_or("");
    let bad = || FrontError::Protocol(format!("not an RFB client version: {text:?}"));
    let rest = text
        .strip_prefix("RFB 003.")
        .and_then(|r| r.strip_suffix('\n'))
        .ok_or_else(bad)?;
    let minor: u32 = rest.parse().map_err(|_| bad())?;
    Ok(match minor {
        3..=6 => 3,
        7 => 7,
        // 3.8, and later minors (Apple's 3.889) speak at least 3.8.
        _ if minor >= 8 => 8,
        _ => return Err(bad()),
    })
}

/// Runs the server side of the handshake with VNC authentication against the gateway's
/// tickets; on success the client is authenticated and owes ClientInit next.
pub async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    gateway: &ConsoleGateway,
) -> Result<Grant, FrontError> {
    s.write_all(b"RFB 003.008\n").await?;
    let mut version = [0u8; 12];
    s.read_exact(&mut version).await?;
    let minor = client_minor(&version)?;
    if minor >= 7 {
        s.write_all(&[1, 2]).await?;
        let chosen = s.read_u8().await?;
        if chosen != 2 {
            fail(s, minor, "only VNC authentication is offered").await?;
            return Err(FrontError::Protocol(format!(
                "the client chose security type {chosen}"
            )));
        }
    } else {
        s.write_u32(2).await?;
    }
    let mut challenge = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut challenge);
    s.write_all(&challenge).await?;
    let mut answer = [0u8; 16];
    s.read_exact(&mut answer).await?;
    match gateway.tickets.take_vnc(&challenge, &answer) {
        Ok(grant) => {
            s.write_u32(0).await?;
            Ok(grant)
        }
        Err(refusal) => {
            tokio::time::sleep(FAILURE_DELAY).await;
            fail(s, minor, &refusal.to_string()).await?;
            Err(refusal.into())
        }
    }
}

/// SecurityResult "failed", with the reason for 3.8 clients.
async fn fail<S: AsyncWrite + Unpin>(s: &mut S, minor: u8, reason: &str) -> std::io::Result<()> {
    s.write_u32(1).await?;
    if minor >= 8 {
        s.write_u32(reason.len() as u32).await?;
        s.write_all(reason.as_bytes()).await?;
    }
    s.flush().await
}

impl ConsoleGateway {
    /// Serves the plain VNC endpoint on `listener` until the task is dropped.
    pub async fn serve_vnc(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "console accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let gw = self.clone();
            tokio::spawn(async move { gw.vnc_connection(tcp, peer).await });
        }
    }

    async fn vnc_connection(self: Arc<Self>, mut tcp: TcpStream, peer: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = self.open.clone().try_acquire_owned() else {
            self.report(
                None,
                ConsoleEventKind::Refused,
                peer,
                VIA,
                "too many consoles are open".into(),
            );
            return;
        };
        let grant = match tokio::time::timeout(HANDSHAKE, authenticate(&mut tcp, &self)).await {
            Ok(Ok(g)) => g,
            Ok(Err(FrontError::Io(e))) => {
                debug!(%peer, error = %e, "VNC client went away during the handshake");
                return;
            }
            Ok(Err(e)) => {
                self.report(None, ConsoleEventKind::Refused, peer, VIA, e.to_string());
                return;
            }
            Err(_) => {
                self.report(
                    None,
                    ConsoleEventKind::Refused,
                    peer,
                    VIA,
                    "no authentication within 15 s".into(),
                );
                return;
            }
        };
        let Ok(mut vm) = self.connect_vm(&grant, peer, VIA, true).await else {
            return;
        };
        let since = Instant::now();
        let why = splice(&mut tcp, &mut vm).await;
        self.report_closed(&grant, peer, VIA, since, &why);
        drop(permit);
    }
}

/// Carries the client's bytes (key events fixed up) to the VM and the VM's back until
/// either side ends; says how it went.
async fn splice(client: &mut TcpStream, vm: &mut tokio::net::UnixStream) -> String {
    let (mut cr, mut cw) = client.split();
    let (mut vr, mut vw) = vm.split();
    let up = async {
        let mut keys = KeyFixup::from_client_init();
        let (mut buf, mut fixed) = (vec![0u8; 16 << 10], Vec::new());
        let mut n_total = 0u64;
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                // A scripted client may type and leave at once: give the VM time to take
                // the input (QEMU feeds keys to the guest 10 ms apart) before hanging up.
                if keys.typed_within(super::LINGER) {
                    tokio::time::sleep(super::LINGER).await;
                }
                let _ = vw.shutdown().await;
                return Ok::<u64, std::io::Error>(n_total);
            }
            n_total += n as u64;
            fixed.clear();
            keys.feed(&buf[..n], &mut fixed);
            vw.write_all(&fixed).await?;
        }
    };
    let down = async {
        let n = tokio::io::copy(&mut vr, &mut cw).await?;
        let _ = cw.shutdown().await;
        Ok::<u64, std::io::Error>(n)
    };
    tokio::select! {
        r = up => match r {
            Ok(n) => format!("the client closed after {n} bytes"),
            Err(e) => format!("client side ended: {e}"),
        },
        r = down => match r {
            Ok(n) => format!("the VM's console closed after {n} bytes"),
            Err(e) => format!("VM side ended: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_versions_are_parsed_and_junk_refused() {
        assert_eq!(client_minor(b"RFB 003.008\n").unwrap(), 8);
        assert_eq!(client_minor(b"RFB 003.007\n").unwrap(), 7);
        assert_eq!(client_minor(b"RFB 003.003\n").unwrap(), 3);
        assert_eq!(client_minor(b"RFB 003.889\n").unwrap(), 8);
        assert!(client_minor(b"RFB 004.000\n").is_err());
        assert!(client_minor(b"GET / HTTP/1").is_err());
        assert!(client_minor(b"RFB 003.0x8\n").is_err());
    }
}
