//! The console view against a real RFB server: QEMU (TCG, no disk, standard VGA, so SeaBIOS
//! draws "No bootable device" on the text screen) serving VNC on a unix socket. The session
//! runs over the socket directly, and once over a test-made TLS WebSocket gateway that
//! behaves like the host agent's (ticket in the URL, certificate pinned by thumbprint, RFB in
//! binary messages). The tests drive the view headless with egui_kittest.
//!
//! QEMU is required: these tests fail with a clear message when `qemu-system-x86_64` is
//! missing (`scripts/setup` installs it). Every QEMU started is killed at the end of its test,
//! also when the test fails (a guard kills it on drop).
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use strata_client::app::console::session::Backoff;
use strata_client::app::console::view::SCREEN_LABEL;
use strata_client::app::console::{
    Connector, ConsoleSession, ConsoleStatus, ConsoleView, SessionOptions, TicketSource,
};
use strata_shared::model::ConsoleTicket;

/// A QEMU serving VNC on a unix socket; killed on drop.
struct Qemu {
    child: Option<Child>,
    sock: PathBuf,
    trace: PathBuf,
}

impl Qemu {
    /// Starts QEMU with its VNC socket and key-event trace in `dir`.
    fn start(dir: &Path) -> Qemu {
        let sock = dir.join("vnc.sock");
        let trace = dir.join("qemu-trace.log");
        let _ = std::fs::remove_file(&sock);
        let child = Command::new("qemu-system-x86_64")
            .args(["-machine", "q35", "-accel", "tcg", "-m", "64"])
            .args([
                "-display",
                "none",
                "-nodefaults",
                "-no-user-config",
                "-vga",
                "std",
            ])
            .arg("-vnc")
            .arg(format!("unix:{}", sock.display()))
            // Every key event QEMU receives, with the keysym, lands in the trace.
            .args([
                "-trace",
                "vnc_key_event_map",
                "-trace",
                "input_event_btn",
                "-D",
            ])
            .arg(&trace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start qemu-system-x86_64 ({e}): these tests need QEMU; \
                     install it with scripts/setup"
                )
            });
        let mut q = Qemu {
            child: Some(child),
            sock,
            trace,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !q.sock.exists() {
            if let Some(c) = q.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("qemu-system-x86_64 exited at start: {status}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "QEMU's VNC socket did not appear"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        q
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The mouse button changes QEMU received so far, as trace lines.
    fn buttons_received(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.trace).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("input_event_btn"))
            .map(str::to_string)
            .collect()
    }

    /// The key events QEMU received so far, as `(down, keysym)`.
    fn keys_received(&self) -> Vec<(bool, u32)> {
        let text = std::fs::read_to_string(&self.trace).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let rest = l.split("vnc_key_event_map down ").nth(1)?;
                let (down, rest) = rest.split_once(", sym 0x")?;
                let sym = rest.split_whitespace().next()?;
                Some((down == "1", u32::from_str_radix(sym, 16).ok()?))
            })
            .collect()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Fixture {
    view: ConsoleView,
    /// Runs the session; dropped with the harness.
    _runtime: tokio::runtime::Runtime,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("console-test")
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn options() -> SessionOptions {
    SessionOptions {
        backoff: Backoff {
            first: Duration::from_millis(1500),
            max: Duration::from_secs(3),
        },
        ..SessionOptions::default()
    }
}

fn harness(connector: Connector) -> Harness<'static, Fixture> {
    let runtime = runtime();
    let session = ConsoleSession::start(runtime.handle(), connector, Arc::new(|| {}), options());
    let mut view = ConsoleView::default();
    view.open(session);
    Harness::builder()
        .with_size([1000.0, 700.0])
        .build_ui_state(
            |ui, f: &mut Fixture| f.view.show(ui),
            Fixture {
                view,
                _runtime: runtime,
            },
        )
}

/// Steps the UI until `done` holds, failing with `what` after `limit`.
fn step_until(
    h: &mut Harness<'static, Fixture>,
    limit: Duration,
    what: &str,
    done: impl Fn(&Harness<'static, Fixture>) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        h.step();
        if done(h) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}; status: {:?}",
            h.state().view.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connected_size(h: &Harness<'static, Fixture>) -> Option<(u16, u16)> {
    match h.state().view.status() {
        Some(ConsoleStatus::Connected { width, height }) => Some((*width, *height)),
        _ => None,
    }
}

/// Connected in SeaBIOS's text mode (720x400; QEMU starts at 640x480 with its "not
/// initialized" notice and resizes), and the text has arrived.
fn wait_for_text_screen(h: &mut Harness<'static, Fixture>) {
    step_until(h, Duration::from_secs(60), "no 720x400 text screen", |h| {
        connected_size(h) == Some((720, 400))
            && h.state()
                .view
                .framebuffer()
                .is_some_and(|f| f.size() == [720, 400] && !f.is_black())
    });
}

#[test]
fn the_console_shows_qemus_screen_takes_keys_and_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let mut qemu = Qemu::start(dir.path());
    let mut h = harness(Connector::unix(qemu.sock.clone()));

    // Connected, with the size QEMU reports in the status line (after DesktopSize resizes),
    // and a picture.
    wait_for_text_screen(&mut h);
    assert!(h.query_by_label_contains("Connected 720x400").is_some());
    let view = &h.state().view;
    assert_eq!(view.framebuffer().map(|f| f.size()), Some([720, 400]));
    assert_eq!(view.texture_size(), Some([720, 400]));
    assert_eq!(view.bad_updates(), 0);
    // The texture goes up whole once per screen size, otherwise in pieces (the text cursor
    // blinks, so changes keep coming).
    step_until(&mut h, Duration::from_secs(10), "no partial upload", |h| {
        h.state().view.uploads().partial >= 2
    });
    let up = h.state().view.uploads();
    assert!((1..=3).contains(&up.full), "{up:?}");
    assert!(up.partial_pixels < up.partial * 720 * 400, "{up:?}");

    // Focus the screen by clicking it, then type: a plain letter, a shifted symbol, Enter.
    h.get_by_label(SCREEN_LABEL).click();
    h.run_steps(2);
    let sent_before = h
        .state()
        .view
        .session()
        .unwrap()
        .stats()
        .inputs_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    h.event(egui::Event::Text("a!".into()));
    h.key_press(egui::Key::Enter);
    step_until(&mut h, Duration::from_secs(10), "keys not sent", |h| {
        let sent = h
            .state()
            .view
            .session()
            .unwrap()
            .stats()
            .inputs_sent
            .load(std::sync::atomic::Ordering::Relaxed);
        // a down/up, Shift down, ! down/up, Shift up, Enter down/up.
        sent >= sent_before + 8
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = [
        (true, 0x61),
        (false, 0x61),
        (true, 0xffe1),
        (true, 0x21),
        (false, 0x21),
        (false, 0xffe1),
        (true, 0xff0d),
        (false, 0xff0d),
    ];
    loop {
        let got = qemu.keys_received();
        if got.ends_with(&want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "QEMU received {got:x?}, expected it to end with {want:x?} ({:?}, status {:?})",
            h.state().view.session().unwrap().stats(),
            h.state().view.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        h.state()
            .view
            .session()
            .unwrap()
            .stats()
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the connection dropped while typing"
    );
    // A click on the focused screen reaches the guest's mouse.
    let clicks_before = qemu.buttons_received().len();
    h.get_by_label(SCREEN_LABEL).click();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        h.step();
        let got = qemu.buttons_received();
        let new = &got[clicks_before.min(got.len())..];
        if new
            .iter()
            .any(|l| l.contains("left") && l.contains("down 1"))
            && new
                .iter()
                .any(|l| l.contains("left") && l.contains("down 0"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "QEMU saw no left click: {new:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Still connected: nothing went wrong on the wire.
    h.run_steps(3);
    assert_eq!(connected_size(&h), Some((720, 400)));

    // The guest's host goes away: disconnected, with a reconnect scheduled.
    qemu.kill();
    step_until(
        &mut h,
        Duration::from_secs(15),
        "no disconnect shown",
        |h| {
            matches!(
                h.state().view.status(),
                Some(ConsoleStatus::Disconnected {
                    retry_at: Some(_),
                    ..
                })
            )
        },
    );
    assert!(h
        .query_by_label_contains("Disconnected, reconnecting in")
        .is_some());

    // It comes back (like a VM restarted on another host): the session reconnects by itself.
    let mut qemu = Qemu::start(dir.path());
    step_until(&mut h, Duration::from_secs(30), "no reconnect", |h| {
        h.state()
            .view
            .session()
            .unwrap()
            .stats()
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
            == 2
    });
    wait_for_text_screen(&mut h);
    let connections = h
        .state()
        .view
        .session()
        .unwrap()
        .stats()
        .connections
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(connections, 2);

    // The Reconnect button drops the connection and connects again at once.
    h.get_by_label("Reconnect").click();
    step_until(&mut h, Duration::from_secs(30), "no reconnect", |h| {
        h.state()
            .view
            .session()
            .unwrap()
            .stats()
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
            == 3
            && connected_size(h).is_some()
    });
    qemu.kill();
}

/// A gateway like the host agent's: TLS with its own certificate, one WebSocket per ticket
/// at `/console?ticket=…`, RFB bytes in binary messages, relayed to QEMU's socket.
async fn gateway(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    vnc: PathBuf,
    ticket: String,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, vnc, ticket) = (acceptor.clone(), vnc.clone(), ticket.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            // The callback's signature is tungstenite's.
            #[allow(clippy::result_large_err)]
            let check = |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                let want = format!("/console?ticket={ticket}");
                if req.uri().to_string() == want {
                    Ok(resp)
                } else {
                    let mut refuse =
                        tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(None);
                    *refuse.status_mut() =
                        tokio_tungstenite::tungstenite::http::StatusCode::FORBIDDEN;
                    Err(refuse)
                }
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async(tls, check).await else {
                return;
            };
            let Ok(sock) = tokio::net::UnixStream::connect(&vnc).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (mut rd, mut wr) = sock.into_split();
            let up = async {
                while let Some(Ok(m)) = stream.next().await {
                    if let Message::Binary(b) = m {
                        if wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                }
            };
            let down = async {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = rd.read(&mut buf).await {
                    if n == 0 || sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            };
            tokio::select! { _ = up => {}, _ = down => {} }
        });
    }
}

#[test]
fn the_console_runs_through_a_pinned_tls_websocket_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let qemu = Qemu::start(dir.path());
    let identity =
        strata_shared::tls::load_or_create_identity(&dir.path().join("tls"), &["localhost".into()])
            .unwrap();
    let acceptor =
        tokio_rustls::TlsAcceptor::from(strata_shared::tls::server_config(&identity).unwrap());
    let rt = runtime();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(gateway(
        listener,
        acceptor,
        qemu.sock.clone(),
        "t0ps3cret".into(),
    ));

    let ticket = |thumbprint: String| -> TicketSource {
        Arc::new(move || {
            let t = ConsoleTicket {
                vm: uuid::Uuid::nil(),
                user: "admin".into(),
                ws_url: format!("wss://127.0.0.1:{port}/console?ticket=t0ps3cret"),
                thumbprint: thumbprint.clone(),
                vnc_host: "127.0.0.1".into(),
                vnc_port: 5900,
                vnc_password: "unused00".into(),
                expires_in_secs: 30,
            };
            Box::pin(async move { Ok(t) })
        })
    };

    // The right thumbprint: connected, with a picture.
    let mut h = harness(Connector::tickets(ticket(identity.thumbprint.clone())));
    wait_for_text_screen(&mut h);
    drop(h);

    // A different certificate than the ticket names: refused, in words, and retried.
    let wrong = "00:".repeat(31) + "00";
    let mut h = harness(Connector::tickets(ticket(wrong)));
    step_until(
        &mut h,
        Duration::from_secs(20),
        "no refusal shown",
        |h| matches!(h.state().view.status(), Some(ConsoleStatus::Disconnected { reason, retry_at: Some(_) }) if reason.contains("not the trusted")),
    );
    assert!(h.query_by_label_contains("not the trusted").is_some());
    // The ticket never shows in what the user sees.
    let status = h.state().view.status_text(Instant::now());
    assert!(!status.contains("t0ps3cret"), "{status}");
    drop(h);
    drop(rt);
    drop(qemu);
}
