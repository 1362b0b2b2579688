//! Serving RFB clients on a unix socket with plain threads and blocking I/O: one thread
//! (`vnc`) accepts, at most [`MAX_CLIENTS`] connections are served at once (more are
//! closed at once), each on its own thread (`vnc-client`) running a [`Session`].
//!
//! A connection thread blocks in `read` with a timeout: none while the client has no
//! update request pending, the time to the next frame check while it has (frames are
//! checked at most every [`FRAME_INTERVAL`], ~60 a second), and what is left of
//! [`HANDSHAKE_TIMEOUT`] until the handshake is done. Writes time out after
//! [`WRITE_TIMEOUT`] (a client that stops reading is dropped). Only read, write,
//! setsockopt (the timeouts), accept4 and the calls of thread start-up are made: all in
//! strata-vmx's seccomp list.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::session::{Frame, Session, SessionError};

/// Most clients served at once.
pub const MAX_CLIENTS: usize = 4;
/// Shortest time between two looks at the display while a client waits.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(16);
/// Time a client has to finish the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a write may block (the client is not reading).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a key event waits for room in the guest's keyboard buffer before it is
/// dropped.
pub const KEY_WAIT: Duration = Duration::from_millis(200);

/// What the server shows and where keys go.
pub trait Console: Send + Sync {
    /// Writes the current picture into `out` (XRGB8888, bytes B, G, R, X, no padding
    /// between rows) and returns its width and height.
    fn capture(&self, out: &mut Vec<u8>) -> (u16, u16);
    /// Queues PS/2 set-1 scan codes on the keyboard, all or none; false when there is no
    /// room for them now.
    fn keys(&self, codes: &[u8]) -> bool;
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The client broke the protocol (or cannot follow the display).
    #[error(transparent)]
    Protocol(#[from] SessionError),
    /// The handshake took too long.
    #[error("the client did not finish the handshake within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
    /// Reading or writing failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// Accepts clients on `listener` until it fails, serving each on its own thread.
pub fn serve(listener: UnixListener, console: Arc<dyn Console>, name: String) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "VNC socket accept failed");
                // Out of descriptors, say: do not spin.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if active.load(Ordering::SeqCst) >= MAX_CLIENTS {
            info!(vm = %name, max = MAX_CLIENTS, "VNC client refused: too many clients");
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let slot = Slot(active.clone());
        let (console, name) = (console.clone(), name.clone());
        let spawned = std::thread::Builder::new()
            .name("vnc-client".into())
            .spawn(move || {
                let _slot = slot;
                debug!(vm = %name, "VNC client connected");
                match serve_client(stream, &*console, &name) {
                    Ok(()) => debug!(vm = %name, "VNC client left"),
                    Err(ConnectionError::Io(e)) => {
                        debug!(vm = %name, error = %e, "VNC client gone")
                    }
                    Err(e) => warn!(vm = %name, "closing a VNC connection: {e}"),
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start a VNC client thread");
        }
    }
}

/// Frees a client slot when its thread ends (however it ends).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn send(stream: &mut UnixStream, session: &mut Session) -> std::io::Result<()> {
    let out = session.output();
    if !out.is_empty() {
        stream.write_all(out)?;
        out.clear();
    }
    Ok(())
}

/// Queues one key event's scan codes, waiting up to [`KEY_WAIT`] for room.
fn inject(console: &dyn Console, codes: &[u8]) {
    let deadline = Instant::now() + KEY_WAIT;
    while !console.keys(codes) {
        if Instant::now() > deadline {
            warn!("VNC key event dropped: the guest is not reading its keyboard");
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Serves one client until it leaves (Ok) or breaks the protocol.
pub fn serve_client(
    mut stream: UnixStream,
    console: &dyn Console,
    name: &str,
) -> Result<(), ConnectionError> {
    let mut frame = Vec::new();
    let (w, h) = console.capture(&mut frame);
    let mut session = Session::new(w, h, name);
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    send(&mut stream, &mut session)?;
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut next_frame = Instant::now();
    loop {
        let timeout = if !session.is_running() {
            let left = HANDSHAKE_TIMEOUT
                .checked_sub(started.elapsed())
                .ok_or(ConnectionError::HandshakeTimeout)?;
            Some(left.max(Duration::from_millis(1)))
        } else if session.wants_update() {
            Some(
                next_frame
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            )
        } else {
            None
        };
        stream.set_read_timeout(timeout)?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => match session.receive(&buf[..n]) {
                Ok(keys) => {
                    for k in keys {
                        inject(console, &k);
                    }
                    send(&mut stream, &mut session)?;
                }
                Err(e) => {
                    // A refusal may carry its reason.
                    let _ = send(&mut stream, &mut session);
                    return Err(e.into());
                }
            },
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e.into()),
        }
        if session.wants_update() && Instant::now() >= next_frame {
            next_frame = Instant::now() + FRAME_INTERVAL;
            let (w, h) = console.capture(&mut frame);
            if let Some(f) = Frame::new(w, h, &frame) {
                if session.update(&f)? {
                    send(&mut stream, &mut session)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfb::client::Client;
    use crate::rfb::protocol::encoding;
    use std::sync::Mutex;

    /// A console whose picture the test sets and whose keys it reads.
    struct Fake {
        picture: Mutex<(u16, u16, Vec<u8>)>,
        keys: Mutex<Vec<u8>>,
    }

    impl Console for Fake {
        fn capture(&self, out: &mut Vec<u8>) -> (u16, u16) {
            let p = self.picture.lock().unwrap();
            out.clear();
            out.extend_from_slice(&p.2);
            (p.0, p.1)
        }
        fn keys(&self, codes: &[u8]) -> bool {
            self.keys.lock().unwrap().extend_from_slice(codes);
            true
        }
    }

    fn connect(path: &std::path::Path) -> Client<UnixStream> {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Client::handshake(s, b"RFB 003.008\n").unwrap();
        c.set_native_format().unwrap();
        c.set_encodings(&[encoding::ZRLE, encoding::COPY_RECT, encoding::RAW])
            .unwrap();
        c
    }

    #[test]
    fn clients_get_frames_and_changes_keys_arrive_and_the_fifth_client_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vnc.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let fake = Arc::new(Fake {
            picture: Mutex::new((64, 32, [0x20, 0x20, 0x20, 0].repeat(64 * 32))),
            keys: Mutex::new(Vec::new()),
        });
        let console: Arc<dyn Console> = fake.clone();
        std::thread::spawn(move || serve(listener, console, "vm".into()));
        let mut clients: Vec<_> = (0..MAX_CLIENTS).map(|_| connect(&path)).collect();
        for c in &mut clients {
            c.request(false).unwrap();
            assert!(c.read_update().unwrap().covers(64, 32));
            assert_eq!(c.screen.rgb(63, 31), 0x202020);
            assert!(c.screen.pixels() == &[0x20, 0x20, 0x20, 0].repeat(64 * 32)[..]);
        }
        // The picture changes while requests wait: each client gets it.
        for c in &mut clients {
            c.request(true).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        fake.picture.lock().unwrap().2[0] = 0xff;
        for c in &mut clients {
            let u = c.read_update().unwrap();
            assert_eq!(u.rects.len(), 1);
            assert_eq!(c.screen.rgb(0, 0), 0x2020ff);
        }
        clients[0].tap('q' as u32).unwrap();
        // A fifth client is closed at once.
        let mut fifth = UnixStream::connect(&path).unwrap();
        fifth
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut b = [0u8; 12];
        assert_eq!(fifth.read(&mut b).unwrap(), 0);
        // Once one leaves, there is room again.
        clients.pop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = UnixStream::connect(&path).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            if Client::handshake(s, b"RFB 003.008\n").is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "no room after a client left");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(*fake.keys.lock().unwrap(), vec![0x10, 0x90]);
    }

    #[test]
    fn a_protocol_error_closes_only_that_connection() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let fake = Fake {
            picture: Mutex::new((8, 8, vec![0; 256])),
            keys: Mutex::new(Vec::new()),
        };
        let t = std::thread::spawn(move || serve_client(a, &fake, "x"));
        b.write_all(b"RFB 003.008\n\x01\x01\xee").unwrap();
        let e = t.join().unwrap().unwrap_err();
        assert!(matches!(e, ConnectionError::Protocol(_)), "{e}");
    }
}
