//! strata-vmx's console devices as a process: keys injected through the control socket
//! reach the test guest through the i8042 (IRQ 1) and come back on its serial port; the
//! guest's drawing in the framebuffer comes out of a `screendump` pixel for pixel, also
//! after a snapshot is restored in a new process. Needs /dev/kvm (fails clearly without).

// Test code: unwrap() is how a test says "this must work".
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_hostagent::vmm::control::ControlResponse;
use strata_hostagent::vmm::{TESTGUEST_PATH, TESTGUEST_READY_MARKER};

const VMX: &str = env!("CARGO_BIN_EXE_strata-vmx");

fn require_kvm() {
    assert!(
        strata_hostagent::vmm::vstate::kvm::usable(),
        "/dev/kvm is missing or not usable read-write: strata-vmx needs KVM"
    );
}

struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

fn wait_for(path: &Path, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not seen in {limit:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn request(ctl: &Path, req: serde_json::Value) -> ControlResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        match UnixStream::connect(ctl) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "control socket: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let mut w = s.try_clone().unwrap();
    writeln!(w, "{req}").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
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
    let text = wait_for(&log, "framebuffer 320x240 drawn", Duration::from_secs(30));
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
