//! The client side of a VM's RFB socket: connect, and (for the plain VNC endpoint, which
//! did its own authentication) the handshake up to the point where ClientInit is due.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// How long a backend gets for its part of the handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Why the VM's console could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No socket, or nobody listening: the VM is not running (or its VMM has no console).
    #[error("the VM's console is not available (is the VM running?)")]
    Unavailable,
    /// The backend's handshake went wrong.
    #[error("the VM's console answered unexpectedly: {0}")]
    Protocol(String),
    /// I/O with the backend failed.
    #[error("the VM's console failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Connects to the RFB socket at `path`.
pub async fn connect(path: &Path) -> Result<UnixStream, BackendError> {
    UnixStream::connect(path)
        .await
        .map_err(|_| BackendError::Unavailable)
}

/// Runs the backend's handshake as an RFB 3.8 client choosing security type None, up to
/// (not including) ClientInit.
pub async fn handshake_none(s: &mut UnixStream) -> Result<(), BackendError> {
    tokio::time::timeout(HANDSHAKE, async {
        let mut version = [0u8; 12];
        s.read_exact(&mut version).await?;
        if !version.starts_with(b"RFB 003.") {
            return Err(BackendError::Protocol(format!(
                "not an RFB server ({:?})",
                String::from_utf8_lossy(&version)
            )));
        }
        s.write_all(b"RFB 003.008\n").await?;
        let count = s.read_u8().await?;
        if count == 0 {
            let len = s.read_u32().await?.min(4096) as usize;
            let mut reason = vec![0u8; len];
            s.read_exact(&mut reason).await?;
            return Err(BackendError::Protocol(format!(
                "refused: {}",
                String::from_utf8_lossy(&reason)
            )));
        }
        let mut types = vec![0u8; usize::from(count)];
        s.read_exact(&mut types).await?;
        if !types.contains(&1) {
            return Err(BackendError::Protocol(format!(
                "it offers no security type None ({types:?})"
            )));
        }
        s.write_u8(1).await?;
        match s.read_u32().await? {
            0 => Ok(()),
            n => Err(BackendError::Protocol(format!("security result {n}"))),
        }
    })
    .await
    .map_err(|_| BackendError::Protocol("no handshake within 10 s".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_backend_handshake_picks_none_and_refuses_other_servers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vnc");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            c.write_all(b"RFB 003.008\n").await.unwrap();
            let mut v = [0u8; 12];
            c.read_exact(&mut v).await.unwrap();
            assert_eq!(&v, b"RFB 003.008\n");
            c.write_all(&[2, 2, 1]).await.unwrap();
            assert_eq!(c.read_u8().await.unwrap(), 1);
            c.write_u32(0).await.unwrap();
            // A second client meets something that is not RFB.
            let (mut c2, _) = listener.accept().await.unwrap();
            c2.write_all(b"HTTP/1.1 400").await.unwrap();
        });
        let mut s = connect(&path).await.unwrap();
        handshake_none(&mut s).await.unwrap();
        let mut s2 = connect(&path).await.unwrap();
        assert!(matches!(
            handshake_none(&mut s2).await,
            Err(BackendError::Protocol(_))
        ));
        server.await.unwrap();
        assert!(matches!(
            connect(&dir.path().join("none")).await,
            Err(BackendError::Unavailable)
        ));
    }
}
