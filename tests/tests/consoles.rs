//! VM consoles end to end: a real third-party VNC client (vncdotool, from PyPI, installed by
//! scripts/setup into .tools/venv) opens a running guest's screen through a console ticket
//! from the manager, sees what the guest shows, types into it, and is refused without a
//! valid ticket; the WebSocket endpoint carries RFB for a ticket and refuses the rest; every
//! open, close and refusal is an Event.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_shared::{ErrorCode, Trust};
use strata_tests::{bins, boot, guest_spec, wait_console, Lab};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// vncdotool's `vncdo`, from the project's virtualenv.
fn vncdo_path() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/vncdo");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it installs vncdotool from PyPI)",
        p.display()
    );
    p
}

/// Runs vncdo against the ticket's plain VNC endpoint with `password`; returns whether it
/// succeeded and what it printed.
async fn vncdo(t: &ConsoleTicket, password: &str, actions: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(vncdo_path())
        .arg("-s")
        .arg(format!("{}::{}", t.vnc_host, t.vnc_port))
        .arg("-p")
        .arg(password)
        .arg("-t")
        .arg("60")
        .args(actions)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run vncdo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn ticket(c: &strata_shared::Client, vm: uuid::Uuid) -> ConsoleTicket {
    c.call::<m::VmConsoleTicket>(IdParams { id: vm })
        .await
        .expect("vm.consoleTicket")
}

async fn events(c: &strata_shared::Client, kind: &str) -> Vec<EventInfo> {
    c.call::<m::EventList>(EventListParams {
        object: None,
        after_id: None,
        limit: Some(1000),
    })
    .await
    .unwrap()
    .into_iter()
    .filter(|e| e.kind == kind)
    .collect()
}

/// Waits until at least `n` events of `kind` exist.
async fn wait_events(c: &strata_shared::Client, kind: &str, n: usize) -> Vec<EventInfo> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let e = events(c, kind).await;
        if e.len() >= n {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {n} {kind} events: {e:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Share of pixels that are not black, and whether any is grey (the VGA text console draws
/// light grey on black).
fn screen_facts(png: &Path) -> (f64, bool) {
    let img = image::open(png).expect("a PNG").to_rgb8();
    let total = (img.width() * img.height()) as f64;
    let lit = img.pixels().filter(|p| p.0 != [0, 0, 0]).count() as f64;
    let grey = img
        .pixels()
        .any(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2] && p.0[0] > 0x60);
    (lit / total, grey)
}

/// Opens the ticket's WebSocket (pinned to its thumbprint); returns the first binary bytes
/// or the close reason.
async fn ws_first(url: &str, thumbprint: &str) -> Result<Vec<u8>, String> {
    let (mut ws, _, _) = strata_shared::client::connect_websocket(
        url,
        Trust::Thumbprint(thumbprint.to_string()),
        9443,
    )
    .await
    .map_err(|e| e.to_string())?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => return Ok(b.to_vec()),
            Ok(Some(Ok(Message::Close(f)))) => {
                return Err(f.map(|f| f.reason.to_string()).unwrap_or_default())
            }
            Ok(Some(Ok(_))) => continue,
            other => return Err(format!("{other:?}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vnc_client_sees_and_types_into_a_qemu_guest_only_with_a_ticket() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let spec = VmSpec {
        machine: Machine::Q35,
        ..guest_spec()
    };
    let vm = lab.create_vm("con01", spec).await;

    // A powered-off VM has no console to open.
    let e = c
        .call::<m::VmConsoleTicket>(IdParams { id: vm })
        .await
        .unwrap_err();
    assert!(e.code() == Some(ErrorCode::InvalidState), "{e}");

    let off = boot(c, vm).await;
    let shots = lab.dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();

    // The screen: the guest's VGA text console, with the kernel's messages on it.
    let t = ticket(c, vm).await;
    assert_eq!(t.vm, vm);
    assert_eq!(t.user, "admin");
    assert_eq!(t.vnc_password.len(), 8);
    assert!(t
        .ws_url
        .starts_with(&format!("wss://{}/console?", lab.agent.address)));
    let png = shots.join("screen.png");
    let (ok, out) = vncdo(&t, &t.vnc_password, &["capture", png.to_str().unwrap()]).await;
    assert!(ok, "vncdo capture failed: {out}");
    let (lit, grey) = screen_facts(&png);
    if let Ok(keep) = std::env::var("STRATA_KEEP_SCREEN") {
        std::fs::copy(&png, keep).unwrap();
    }
    assert!(lit > 0.01 && grey, "the screen shows text ({lit:.3} lit)");
    wait_events(c, "vm.console.opened", 1).await;
    let closed = wait_events(c, "vm.console.closed", 1).await;
    assert_eq!(closed[0].user.as_deref(), Some("admin"));

    // The ticket is spent: its password opens nothing now; a wrong one neither.
    let (ok, _) = vncdo(&t, &t.vnc_password, &["capture", png.to_str().unwrap()]).await;
    assert!(!ok, "a used ticket was accepted");
    let (ok, _) = vncdo(&t, "wrongpw1", &["capture", png.to_str().unwrap()]).await;
    assert!(!ok, "a wrong password was accepted");
    let refused = wait_events(c, "vm.console.refused", 2).await;
    assert!(
        refused
            .iter()
            .all(|e| e.message.contains("VNC authentication failed")),
        "{refused:?}"
    );

    // Typing: a shell on the screen's console runs what the VNC client types (shifted
    // symbols included) and its output goes to the serial log.
    let t = ticket(c, vm).await;
    let (ok, out) = vncdo(
        &t,
        &t.vnc_password,
        &["type", "echo VNC-$((6*7))-OK > /dev/ttyS0", "key", "enter"],
    )
    .await;
    assert!(ok, "vncdo type failed: {out}");
    if let Err(e) = wait_console(c, vm, off, "VNC-42-OK", Duration::from_secs(60)).await {
        let t = ticket(c, vm).await;
        let after = shots.join("after-typing.png");
        vncdo(&t, &t.vnc_password, &["capture", after.to_str().unwrap()]).await;
        if let Ok(keep) = std::env::var("STRATA_KEEP_SCREEN") {
            std::fs::copy(&after, keep).unwrap();
        }
        panic!("typed command did not run: {e}");
    }

    // The WebSocket: a ticket opens RFB once; no ticket, a used one or a bad one does not.
    let t = ticket(c, vm).await;
    let first = ws_first(&t.ws_url, &t.thumbprint).await.unwrap();
    assert!(first.starts_with(b"RFB 003.008\n"), "{first:?}");
    let again = ws_first(&t.ws_url, &t.thumbprint).await.unwrap_err();
    assert!(again.contains("already used"), "{again}");
    let base = t.ws_url.split('?').next().unwrap().to_string();
    let none = ws_first(&base, &t.thumbprint).await.unwrap_err();
    assert!(none.contains("no console ticket"), "{none}");
    let bad = ws_first(&format!("{base}?ticket=00ff"), &t.thumbprint)
        .await
        .unwrap_err();
    assert!(bad.contains("not valid"), "{bad}");
    let other = ws_first(&t.ws_url.replace("/console", "/nothing"), &t.thumbprint)
        .await
        .unwrap_err();
    assert!(other.contains("no such endpoint"), "{other}");

    // Garbage on the VNC port is refused and hurts nothing.
    let mut s = tokio::net::TcpStream::connect((t.vnc_host.as_str(), t.vnc_port))
        .await
        .unwrap();
    let mut version = [0u8; 12];
    s.read_exact(&mut version).await.unwrap();
    assert_eq!(&version, b"RFB 003.008\n");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    let t = ticket(c, vm).await;
    let (ok, out) = vncdo(&t, &t.vnc_password, &["capture", png.to_str().unwrap()]).await;
    assert!(ok, "after garbage, a good client still gets in: {out}");

    // `strata vm console-url` prints an address any VNC client can use; one session of that
    // client stays on the screen across a guest reset (QEMU keeps its display).
    let out = std::process::Command::new(bins!().cli)
        .args(["--json", "vm", "console-url", "con01"])
        .env("STRATA_URL", format!("wss://{}", lab.server.address))
        .env("STRATA_USERNAME", "admin")
        .env("STRATA_PASSWORD", strata_tests::PASSWORD)
        .env("STRATA_THUMBPRINT", &lab.server.thumbprint)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t: ConsoleTicket = serde_json::from_slice(&out.stdout).unwrap();
    let (before, after) = (shots.join("before.png"), shots.join("after.png"));
    let session = {
        let t = t.clone();
        let (b, a) = (before.clone(), after.clone());
        tokio::spawn(async move {
            vncdo(
                &t,
                &t.vnc_password,
                &[
                    "capture",
                    b.to_str().unwrap(),
                    "pause",
                    "20",
                    "capture",
                    a.to_str().unwrap(),
                ],
            )
            .await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !before.exists() {
        assert!(tokio::time::Instant::now() < deadline, "no first capture");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let size = strata_tests::console_size(c, vm).await;
    strata_tests::task_ok(c, c.call::<m::VmReset>(IdParams { id: vm }).await.unwrap()).await;
    wait_console(
        c,
        vm,
        size,
        strata_tests::READY_MARKER,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let (ok, out) = session.await.unwrap();
    assert!(ok, "the session across the reset failed: {out}");
    assert_ne!(
        std::fs::read(&before).unwrap(),
        std::fs::read(&after).unwrap(),
        "the screen after the reset is the new boot's"
    );
    let (lit, _) = screen_facts(&after);
    assert!(lit > 0.01, "not blank after the reset");

    // Read-only users get no tickets.
    c.call::<m::UserCreate>(UserCreateParams {
        username: "viewer".into(),
        password: strata_tests::PASSWORD.into(),
        role: Role::ReadOnly,
    })
    .await
    .unwrap();
    let viewer = lab.server.client("viewer").await;
    let e = viewer
        .call::<m::VmConsoleTicket>(IdParams { id: vm })
        .await
        .unwrap_err();
    assert!(e.code() == Some(ErrorCode::NoPermission), "{e}");
    strata_tests::power_off(c, vm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vnc_client_sees_and_types_into_a_native_guest_only_with_a_ticket() {
    strata_tests::require_kvm();
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let vm = lab.create_native_vm("conn", 1, 64).await;
    let before = strata_tests::console_size(c, vm).await;
    strata_tests::power_on(c, vm).await;
    let (_, off) = wait_console(
        c,
        vm,
        before,
        strata_hostagent::vmm::TESTGUEST_READY_MARKER,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let shots = lab.dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();

    // The screen: the test guest's eight colour bars over the top two thirds.
    let t = ticket(c, vm).await;
    let png = shots.join("native.png");
    let (ok, out) = vncdo(&t, &t.vnc_password, &["capture", png.to_str().unwrap()]).await;
    assert!(ok, "vncdo capture failed: {out}");
    if let Ok(keep) = std::env::var("STRATA_KEEP_NATIVE_SCREEN") {
        std::fs::copy(&png, keep).unwrap();
    }
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (640, 480));
    let bars: Vec<[u8; 3]> = (0..8).map(|i| img.get_pixel(i * 80 + 40, 100).0).collect();
    assert_eq!(
        bars,
        vec![
            [255, 255, 255],
            [255, 255, 0],
            [0, 255, 255],
            [0, 255, 0],
            [255, 0, 255],
            [255, 0, 0],
            [0, 0, 255],
            [0, 0, 0]
        ],
        "white, yellow, cyan, green, magenta, red, blue, black"
    );

    // Typed through the gateway and strata-vmx's keyboard: the shifted '!' arrives shifted.
    let t = ticket(c, vm).await;
    let (ok, out) = vncdo(&t, &t.vnc_password, &["type", "hi!", "key", "enter"]).await;
    assert!(ok, "vncdo type failed: {out}");
    wait_console(c, vm, off, "typed \"hi!\"", Duration::from_secs(30))
        .await
        .unwrap();

    // Without a valid ticket: nothing.
    let (ok, _) = vncdo(&t, &t.vnc_password, &["capture", png.to_str().unwrap()]).await;
    assert!(!ok, "a used ticket was accepted");
    let first = ws_first(&ticket(c, vm).await.ws_url, &t.thumbprint)
        .await
        .unwrap();
    assert!(first.starts_with(b"RFB 003.008\n"), "{first:?}");
    strata_tests::power_off_hard(c, vm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_without_a_display_shows_its_serial_console_and_takes_keys() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    // A microvm: no display device; its console is the serial console as text.
    let vm = lab.create_vm("con02", guest_spec()).await;
    let off = boot(c, vm).await;
    let shots = lab.dir.path().join("shots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("serial.png");
    let t = ticket(c, vm).await;
    let (ok, out) = vncdo(&t, &t.vnc_password, &["capture", png.to_str().unwrap()]).await;
    assert!(ok, "vncdo capture failed: {out}");
    if let Ok(keep) = std::env::var("STRATA_KEEP_SERIAL_SCREEN") {
        std::fs::copy(&png, keep).unwrap();
    }
    let (lit, grey) = screen_facts(&png);
    assert!(
        lit > 0.005 && grey,
        "the serial text is drawn ({lit:.4} lit)"
    );
    let t = ticket(c, vm).await;
    let (ok, out) = vncdo(
        &t,
        &t.vnc_password,
        &["type", "echo SER-$((2*21))-IAL", "key", "enter"],
    )
    .await;
    assert!(ok, "vncdo type failed: {out}");
    wait_console(c, vm, off, "SER-42-IAL", Duration::from_secs(60))
        .await
        .unwrap();
    strata_tests::power_off(c, vm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ticket_is_refused_and_the_refusal_is_an_event() {
    // Tickets of this host live 2 s.
    let lab = Lab::start_with_agent(&bins!(), &["--console-ticket-secs", "2"]).await;
    let c = &lab.client;
    let vm = lab.create_vm("con03", guest_spec()).await;
    boot(c, vm).await;
    let t = ticket(c, vm).await;
    assert_eq!(t.expires_in_secs, 2);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let png = lab.dir.path().join("expired.png");
    let (ok, _) = vncdo(&t, &t.vnc_password, &["capture", png.to_str().unwrap()]).await;
    assert!(!ok, "an expired password was accepted");
    let t2 = ticket(c, vm).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let why = ws_first(&t2.ws_url, &t2.thumbprint).await.unwrap_err();
    assert!(why.contains("expired"), "{why}");
    let refused = wait_events(c, "vm.console.refused", 2).await;
    assert!(
        refused.iter().any(|e| e.message.contains("expired")),
        "{refused:?}"
    );
    // A fresh ticket used at once still works.
    let t3 = ticket(c, vm).await;
    let (ok, out) = vncdo(&t3, &t3.vnc_password, &["capture", png.to_str().unwrap()]).await;
    assert!(ok, "{out}");
    strata_tests::power_off_hard(c, vm).await;
}
