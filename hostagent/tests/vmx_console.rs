//! strata-vmx's console devices as a process: keys injected through the control socket
//! reach the test guest through the i8042 (IRQ 1) and come back on its serial port; the
//! guest's drawing in the framebuffer comes out of a `screendump` pixel for pixel, also
//! after a snapshot is restored in a new process. The VNC console (`--vnc-socket`) shows
//! the same picture to an RFB client and types its keys; without a framebuffer it shows the
//! serial console as text; hostile clients do not hurt the VM. Needs /dev/kvm (fails
//! clearly without).

// Test code: unwrap() is how a test says "this must work".
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_hostagent::vmm::{TESTGUEST_PATH, TESTGUEST_READY_MARKER};

mod common;
use common::{request_json as request, require_kvm, wait_for, Vm, VMX};

fn start(dir: &Path, tag: &str, extra: &[&str]) -> (Vm, std::path::PathBuf, std::path::PathBuf) {
    let (log, ctl) = (
        dir.join(format!("{tag}.log")),
        dir.join(format!("{tag}.ctl")),
    );
    let child = Command::new(VMX)
        .env("NO_COLOR", "1")
        .args(["--memory-mib", "32"])
        .args(extra)
        .arg("--serial-log")
        .arg(&log)
        .arg("--control-socket")
        .arg(&ctl)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Vm(child), log, ctl)
}

/// Waits for the guest's whole "framebuffer WxH drawn, text at X,Y scale S" line (the
/// log may be read while the line is half written).
fn wait_drawn(path: &Path, geometry: &str) -> String {
    let needle = format!("framebuffer {geometry} drawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = wait_for(path, &needle, Duration::from_secs(30));
        if text
            .split(needle.as_str())
            .nth(1)
            .is_some_and(|rest| rest.contains('\n'))
        {
            return text;
        }
        assert!(Instant::now() < deadline, "{needle:?} never ended:\n{text}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn typed_keys_reach_the_guest_through_the_i8042() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let (_vm, log, ctl) = start(dir.path(), "kbd", &["--kernel", TESTGUEST_PATH]);
    wait_for(&log, TESTGUEST_READY_MARKER, Duration::from_secs(30));

    // Text: letters, digits, space, shifted characters, enter.
    let r = request(
        &ctl,
        serde_json::json!({"cmd": "type", "text": "Hello World 42!\n"}),
    );
    assert!(r.ok, "{r:?}");
    wait_for(&log, "typed \"Hello World 42!\"", Duration::from_secs(20));

    // Raw set-1 scan codes: shift down, 's', shift up, 'v', 'm', 'x', enter.
    let codes = [
        0x2a, 0x1f, 0x9f, 0xaa, 0x2f, 0xaf, 0x32, 0xb2, 0x2d, 0xad, 0x1c, 0x9c,
    ];
    assert!(request(&ctl, serde_json::json!({"cmd": "key", "codes": codes})).ok);
    wait_for(&log, "typed \"Svmx\"", Duration::from_secs(20));

    // What no key types is refused whole; so is more than the keyboard buffer holds.
    let r = request(&ctl, serde_json::json!({"cmd": "type", "text": "naïve"}));
    assert!(!r.ok && r.error.unwrap().contains("no key types"));
    let r = request(
        &ctl,
        serde_json::json!({"cmd": "key", "codes": vec![0x1e; 1100]}),
    );
    assert!(!r.ok && r.error.unwrap().contains("keyboard buffer is full"));
    assert!(request(&ctl, serde_json::json!({"cmd": "status"})).ok);
}

/// The test guest's 5x7 font (rows top to bottom, bit 4 = leftmost column).
const FONT: [(char, [u8; 7]); 4] = [
    ('S', [0x0e, 0x11, 0x10, 0x0e, 0x01, 0x11, 0x0e]),
    ('T', [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04]),
    ('R', [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11]),
    ('A', [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11]),
];

struct Ppm {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Ppm {
    fn read(path: &Path) -> Ppm {
        let data = std::fs::read(path).unwrap();
        let mut fields = Vec::new();
        let mut at = 0;
        // "P6", width, height, maxval, each followed by one whitespace byte.
        while fields.len() < 4 {
            let end = at
                + data[at..]
                    .iter()
                    .position(|b| b.is_ascii_whitespace())
                    .unwrap();
            fields.push(String::from_utf8(data[at..end].to_vec()).unwrap());
            at = end + 1;
        }
        assert_eq!((fields[0].as_str(), fields[3].as_str()), ("P6", "255"));
        let (width, height) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
        let rgb = data[at..].to_vec();
        assert_eq!(rgb.len(), width * height * 3, "the PPM has every pixel");
        Ppm { width, height, rgb }
    }

    fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// Checks the guest's picture: the eight bars, and every pixel of the "STRATA" box (white
/// exactly where the font has a dot).
fn check_picture(ppm: &Ppm, tx: usize, ty: usize, scale: usize) {
    let bars = [
        [255, 255, 255],
        [255, 255, 0],
        [0, 255, 255],
        [0, 255, 0],
        [255, 0, 255],
        [255, 0, 0],
        [0, 0, 255],
        [0, 0, 0],
    ];
    let (w, h) = (ppm.width, ppm.height);
    for (i, colour) in bars.iter().enumerate() {
        let x = (2 * i + 1) * w / 16;
        for y in [0, h / 3, h * 2 / 3 - 1] {
            assert_eq!(ppm.pixel(x, y), *colour, "bar {i} at ({x}, {y})");
        }
    }
    let mut white = 0;
    for (g, ch) in "STRATA".chars().enumerate() {
        let rows = FONT.iter().find(|(c, _)| *c == ch).unwrap().1;
        for (gy, row) in rows.iter().enumerate() {
            for gx in 0..6 {
                let on = gx < 5 && row & (0x10 >> gx) != 0;
                let expected = if on { [255; 3] } else { [0; 3] };
                for k in 0..scale * scale {
                    let x = tx + (g * 6 + gx) * scale + k % scale;
                    let y = ty + gy * scale + k / scale;
                    if x < w {
                        assert_eq!(
                            ppm.pixel(x, y),
                            expected,
                            "{ch} dot ({gx}, {gy}) at ({x}, {y})"
                        );
                    }
                }
                white += usize::from(on);
            }
        }
    }
    assert!(white > 60, "the text has its dots");
    // Outside the text box the bottom third is black.
    assert_eq!(ppm.pixel(0, h - 1), [0, 0, 0]);
}

/// "strata-testguest: framebuffer WxH drawn, text at X,Y scale S" → (X, Y, S).
fn text_position(log: &str) -> (usize, usize, usize) {
    let line = log
        .lines()
        .find(|l| l.contains(" drawn, text at "))
        .unwrap();
    let rest = line.split(" text at ").nth(1).unwrap();
    let (xy, scale) = rest.split_once(" scale ").unwrap();
    let (x, y) = xy.split_once(',').unwrap();
    (
        x.trim().parse().unwrap(),
        y.trim().parse().unwrap(),
        scale.trim().parse().unwrap(),
    )
}

#[test]
fn screendump_shows_what_the_guest_drew_and_a_snapshot_keeps_it() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut vm, log, ctl) = start(
        d,
        "fb",
        &["--kernel", TESTGUEST_PATH, "--framebuffer", "320x240"],
    );
    let text = wait_drawn(&log, "320x240");
    let (tx, ty, scale) = text_position(&text);
    let shot = d.join("a.ppm");
    let r = request(&ctl, serde_json::json!({"cmd": "screendump", "path": shot}));
    assert!(r.ok, "{r:?}");
    let ppm = Ppm::read(&shot);
    assert_eq!((ppm.width, ppm.height), (320, 240));
    check_picture(&ppm, tx, ty, scale);

    // A snapshot carries the framebuffer: a new process shows the same picture without
    // the guest drawing again.
    let snap = d.join("snap");
    std::fs::create_dir(&snap).unwrap();
    assert!(request(&ctl, serde_json::json!({"cmd": "snapshot", "dir": snap})).ok);
    assert!(request(&ctl, serde_json::json!({"cmd": "stop"})).ok);
    let _ = vm.0.wait();
    let (_b, log_b, ctl_b) = start(d, "fb-restored", &["--restore", snap.to_str().unwrap()]);
    let shot_b = d.join("b.ppm");
    let r = request(
        &ctl_b,
        serde_json::json!({"cmd": "screendump", "path": shot_b}),
    );
    assert!(r.ok, "{r:?}");
    assert_eq!(
        std::fs::read(&shot_b).unwrap(),
        std::fs::read(&shot).unwrap()
    );
    // The restored guest runs on (its keyboard too).
    assert!(request(&ctl_b, serde_json::json!({"cmd": "type", "text": "on\n"})).ok);
    let after = wait_for(&log_b, "typed \"on\"", Duration::from_secs(20));
    assert!(!after.contains(TESTGUEST_READY_MARKER), "{after}");

    // Without a framebuffer, a screendump is refused with the reason.
    let (_c, log_c, ctl_c) = start(d, "nofb", &["--kernel", TESTGUEST_PATH]);
    wait_for(&log_c, TESTGUEST_READY_MARKER, Duration::from_secs(30));
    let r = request(
        &ctl_c,
        serde_json::json!({"cmd": "screendump", "path": d.join("c.ppm")}),
    );
    assert!(!r.ok && r.error.unwrap().contains("no framebuffer"));
}

// ---- the VNC console ----

use strata_hostagent::rfb::client::Client;
use strata_hostagent::rfb::protocol::encoding;
use strata_hostagent::rfb::text::{glyph, TextConsole, CELL_H, CELL_W, FOREGROUND};

/// What the tests' RFB client announces: ZRLE first, then CopyRect, Raw, DesktopSize.
const ENCODINGS: [i32; 4] = [
    encoding::ZRLE,
    encoding::COPY_RECT,
    encoding::RAW,
    encoding::DESKTOP_SIZE,
];

/// Connects to the VNC socket (waiting for it to appear) without a handshake.
fn vnc_stream(sock: &Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        match UnixStream::connect(sock) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "VNC socket: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// A connection the server serves: it sent its version (a connection beyond the client
/// limit is closed at once; the slots of clients that just left free up a moment later).
fn vnc_served(sock: &Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = vnc_stream(sock);
        let mut v = [0u8; 12];
        if std::io::Read::read_exact(&mut s, &mut v).is_ok() {
            assert_eq!(&v, b"RFB 003.008\n");
            return s;
        }
        assert!(Instant::now() < deadline, "the VNC server serves no one");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A client through the handshake (3.8, None, shared), in 32 bpp little-endian with
/// [`ENCODINGS`] (retried while the server is at its client limit).
fn vnc_client(sock: &Path) -> Client<UnixStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        match Client::handshake(vnc_stream(sock), b"RFB 003.008\n") {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "VNC handshake: {e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    c.set_native_format().unwrap();
    c.set_encodings(&ENCODINGS).unwrap();
    c
}

/// A client with a whole first frame.
fn vnc_frame(sock: &Path) -> Client<UnixStream> {
    let mut c = vnc_client(sock);
    c.request(false).unwrap();
    let (w, h) = c.screen.size();
    let u = c.read_update().unwrap();
    assert!(u.covers(w, h), "the first update covers the screen: {u:?}");
    c
}

/// The client's picture as a PPM-like RGB image.
fn vnc_picture<S>(c: &Client<S>) -> Ppm {
    let (w, h) = c.screen.size();
    let rgb = c
        .screen
        .pixels()
        .chunks_exact(4)
        .flat_map(|p| [p[2], p[1], p[0]])
        .collect();
    Ppm {
        width: usize::from(w),
        height: usize::from(h),
        rgb,
    }
}

fn vnc_args(sock: &Path, fb: bool) -> Vec<&str> {
    let mut args = vec![
        "--kernel",
        TESTGUEST_PATH,
        "--vnc-socket",
        sock.to_str().unwrap(),
    ];
    if fb {
        args.extend(["--framebuffer", "640x480"]);
    }
    args
}

#[test]
fn vnc_console_shows_the_framebuffer_and_types_on_the_keyboard() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("vnc.sock");
    let (_vm, log, ctl) = start(d, "vnc", &vnc_args(&sock, true));
    let text = wait_drawn(&log, "640x480");
    let (tx, ty, scale) = text_position(&text);

    let mut c = vnc_frame(&sock);
    assert_eq!(c.screen.size(), (640, 480));
    let picture = vnc_picture(&c);
    check_picture(&picture, tx, ty, scale);
    // Pixel for pixel what a screendump shows.
    let shot = d.join("vnc.ppm");
    assert!(request(&ctl, serde_json::json!({"cmd": "screendump", "path": shot})).ok);
    assert!(
        Ppm::read(&shot).rgb == picture.rgb,
        "VNC and screendump differ"
    );
    // Raw works too.
    let mut raw = vnc_client(&sock);
    raw.set_encodings(&[encoding::RAW]).unwrap();
    raw.request(false).unwrap();
    let u = raw.read_update().unwrap();
    assert!(u.rects.iter().all(|(_, e)| *e == encoding::RAW), "{u:?}");
    assert!(vnc_picture(&raw).rgb == picture.rgb);

    // Keys: 'h', 'i', then '!' without the client pressing Shift, then Return.
    for k in [0x68, 0x69, 0x21, 0xff0d] {
        c.tap(k).unwrap();
    }
    wait_for(&log, "typed \"hi!\"", Duration::from_secs(20));
    // With the client's Shift held, 'A' (and Shift+'1') come out shifted once.
    c.key(true, 0xffe1).unwrap();
    for k in [0x41, 0x21] {
        c.tap(k).unwrap();
    }
    c.key(false, 0xffe1).unwrap();
    c.tap(0xff0d).unwrap();
    wait_for(&log, "typed \"A!\"", Duration::from_secs(20));

    // A reset re-executes strata-vmx: clients are disconnected, the socket comes back.
    assert!(request(&ctl, serde_json::json!({"cmd": "reset"})).ok);
    c.request(true).unwrap_or(());
    let mut gone = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match c.read_update() {
            Ok(_) => {
                let _ = c.request(true);
            }
            Err(_) => {
                gone = true;
                break;
            }
        }
    }
    assert!(gone, "the client was not disconnected by the reset");
    let deadline = Instant::now() + Duration::from_secs(30);
    let again = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.matches(TESTGUEST_READY_MARKER).count() >= 2 {
            if let Ok(s) = UnixStream::connect(&sock) {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                if let Ok(mut c) = Client::handshake(s, b"RFB 003.008\n") {
                    c.set_native_format().unwrap();
                    c.set_encodings(&ENCODINGS).unwrap();
                    c.request(false).unwrap();
                    c.read_update().unwrap();
                    break c;
                }
            }
        }
        assert!(Instant::now() < deadline, "no VNC console after the reset");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(again.screen.size(), (640, 480));
}

#[test]
fn vnc_console_shows_the_serial_console_without_a_framebuffer() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("vnc.sock");
    let (_vm, log, _ctl) = start(d, "text", &vnc_args(&sock, false));
    wait_for(&log, TESTGUEST_READY_MARKER, Duration::from_secs(30));

    let mut c = vnc_frame(&sock);
    assert_eq!(c.screen.size(), (640, 480));
    // Where the marker is: the same text console fed with serial.log.
    let mut expect = TextConsole::new(80);
    expect.feed(&std::fs::read(&log).unwrap());
    let lines: Vec<String> = expect.lines().collect();
    let row = lines
        .iter()
        .position(|l| l.contains(TESTGUEST_READY_MARKER))
        .unwrap();
    let col = lines[row].find(TESTGUEST_READY_MARKER).unwrap();
    assert!(row < 480 / CELL_H, "the marker is on screen (row {row})");
    // Its first glyph, 'S', is drawn exactly (each font row twice) in light grey.
    let s = glyph('S');
    let mut lit = 0;
    for y in 0..CELL_H {
        for x in 0..CELL_W {
            let (px, py) = ((col * CELL_W + x) as u16, (row * CELL_H + y) as u16);
            let on = s[y / 2] >> x & 1 != 0;
            let want = if on {
                u32::from_le_bytes([FOREGROUND[0], FOREGROUND[1], FOREGROUND[2], 0])
            } else {
                0
            };
            assert_eq!(c.screen.rgb(px, py), want, "'S' pixel ({x}, {y})");
            lit += usize::from(on);
        }
    }
    assert!(lit > 10);
    // The whole screen is that text console's picture.
    let mut px = Vec::new();
    expect.render(640, 480, &mut px);
    assert!(c.screen.pixels() == &px[..], "the text console differs");

    // Typing echoes on the serial port, so the text changes and an update follows.
    c.request(true).unwrap();
    for k in [0x6f, 0x6b] {
        c.tap(k).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        c.read_update().unwrap();
        let mut now = TextConsole::new(80);
        now.feed(&std::fs::read(&log).unwrap());
        now.render(640, 480, &mut px);
        if now.lines().last().unwrap().ends_with("ok") && c.screen.pixels() == &px[..] {
            break;
        }
        assert!(Instant::now() < deadline, "the typed text did not show");
        c.request(true).unwrap();
    }
}

#[test]
fn hostile_vnc_clients_do_not_hurt_the_vm() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock = d.join("vnc.sock");
    let (mut vm, log, ctl) = start(d, "hostile", &vnc_args(&sock, true));
    wait_drawn(&log, "640x480");
    let closed = |s: &mut UnixStream| {
        // The server closes: EOF (or a reset) after whatever it had to say.
        let mut buf = [0u8; 4096];
        loop {
            match std::io::Read::read(s, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };

    // At most four clients at once: a fifth is closed at once.
    let four: Vec<_> = (0..4).map(|_| vnc_client(&sock)).collect();
    let mut fifth = vnc_stream(&sock);
    let mut b = [0u8; 12];
    assert_eq!(std::io::Read::read(&mut fifth, &mut b).unwrap(), 0);
    drop(four);

    // Garbage instead of a version.
    let mut s = vnc_served(&sock);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    closed(&mut s);
    // A ClientCutText claiming 4 GiB.
    let mut c = vnc_client(&sock);
    c.stream()
        .write_all(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    c.stream().write_all(&[b'x'; 1000]).unwrap_or(());
    closed(c.stream());
    // An unknown message type.
    let mut c = vnc_client(&sock);
    c.stream().write_all(&[0xfe; 16]).unwrap();
    closed(c.stream());
    // A colour-map pixel format.
    let mut c = vnc_client(&sock);
    let mut pf = strata_hostagent::rfb::protocol::PixelFormat::NATIVE;
    pf.true_colour = false;
    c.set_pixel_format(&pf).unwrap();
    closed(c.stream());
    // SetEncodings with 65535 entries: read and dropped, and the connection goes on.
    let mut c = vnc_client(&sock);
    let mut m = vec![2u8, 0, 0xff, 0xff];
    for i in 0..65535u32 {
        m.extend_from_slice(&(i % 300).to_be_bytes());
    }
    c.stream().write_all(&m).unwrap();
    c.request(false).unwrap();
    let u = c.read_update().unwrap();
    assert!(u.covers(640, 480));
    drop(c);
    // Disconnects mid-handshake and mid-message.
    drop(vnc_served(&sock));
    let mut s = vnc_served(&sock);
    s.write_all(b"RFB 003.0").unwrap();
    drop(s);
    let mut c = vnc_client(&sock);
    c.stream().write_all(&[3, 0, 0]).unwrap();
    drop(c);
    let mut c = vnc_client(&sock);
    c.stream().write_all(&m[..1001]).unwrap();
    drop(c);

    // The VM is unharmed: the guest answers, and a fresh client gets the whole picture.
    assert!(
        request(
            &ctl,
            serde_json::json!({"cmd": "type", "text": "still here\n"})
        )
        .ok
    );
    wait_for(&log, "typed \"still here\"", Duration::from_secs(20));
    let fresh = vnc_frame(&sock);
    let shot = d.join("after.ppm");
    assert!(request(&ctl, serde_json::json!({"cmd": "screendump", "path": shot})).ok);
    assert!(Ppm::read(&shot).rgb == vnc_picture(&fresh).rgb);
    assert!(
        vm.0.try_wait().unwrap().is_none(),
        "strata-vmx is still running"
    );
}
