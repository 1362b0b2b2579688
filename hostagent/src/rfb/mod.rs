//! The server side of RFB 3.8 (VNC, RFC 6143), small and independent of the VMM: strata-vmx
//! serves its console with it on a unix socket (see `vmm::vnc`); authentication, TLS,
//! WebSocket and TCP belong to the host agent's gateway in front of that socket.
//!
//! - Handshake: ProtocolVersion 3.8 (3.3 and 3.7 clients too), security type None only,
//!   SecurityResult, ClientInit, ServerInit (32 bpp XRGB, the framebuffer's own format).
//! - Client messages ([`protocol`]): SetPixelFormat (any true-colour format, 8/16/32 bpp,
//!   either byte order — [`pixel`]), SetEncodings, FramebufferUpdateRequest, KeyEvent
//!   (keysyms become PS/2 set-1 scan codes — [`keysym`]), PointerEvent (ignored),
//!   ClientCutText (skipped). Memory stays bounded whatever the client claims; anything
//!   that is not RFB closes that one connection.
//! - Encodings sent: Raw, CopyRect (vertical scrolls — [`scroll`]), ZRLE ([`zrle`]) and
//!   the DesktopSize pseudo-encoding, by the client's order of preference.
//! - Updates ([`session`]): per-client shadow of what was sent, 64x64 tile comparison,
//!   requests held while nothing changes.
//! - Text mode ([`text`]): a serial console rendered with an 8x8 font, for guests without
//!   a framebuffer driver.
//! - Serving ([`server`]): an accept thread and one thread per client (at most four),
//!   blocking I/O with timeouts; [`client`] is a small client that checks all of it.
//!
//! # Why not the `rustvncserver` crate
//!
//! `rustvncserver` 2.2.1 (crates.io) was evaluated first. It is a capable server (eleven
//! encodings, all pixel formats), but it does not fit strata-vmx:
//! - Runtime: it is built on a multi-threaded tokio runtime (`tokio` with `rt-multi-thread`,
//!   `net`, `macros`), its framebuffer is an `Arc<RwLock<Vec<u8>>>` behind async methods
//!   that the application must fill with whole copies (`update_from_slice`). strata-vmx is a
//!   thread-per-device VMM without an async runtime, whose framebuffer lives in guest
//!   memory; a runtime would be a second scheduler in a process confined by seccomp, and
//!   every frame an extra copy.
//! - Listener: `VncServer::listen(port)` binds TCP on 0.0.0.0, and clients are
//!   `tokio::net::TcpStream`s; there is no way to hand it a unix socket. strata-vmx must
//!   not listen on the network at all (the gateway does, with authentication).
//! - Protocol: it offers 3.8 only (3.3 clients cannot connect), and does not check the
//!   security type a client picks.
//! - Dependencies: it pulls `tokio`'s runtime, `bytes`, `des` (VNC password auth, which
//!   we must not offer), `rand`, `log` (we use `tracing`), `thiserror` 1 (a second major
//!   version beside our 2) and `rfb-encodings`; its `rust-version` is 1.90, above the
//!   workspace's 1.85.
//!
//! What strata-vmx needs is a few hundred lines per part, synchronous, with no unsafe
//! code and no new dependencies beyond `flate2` (zlib for ZRLE) and `font8x8`.

pub mod client;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod keysym;
pub mod pixel;
pub mod protocol;
pub mod scroll;
pub mod server;
pub mod session;
pub mod text;
pub mod zrle;

pub use server::{serve, Console, MAX_CLIENTS};
pub use session::{Frame, Session, SessionError};
pub use text::TextConsole;
