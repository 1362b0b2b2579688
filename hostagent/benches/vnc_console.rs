//! VNC console benchmark (not a test): strata-vmx with the test guest, a 640x480
//! framebuffer and `--vnc-socket`, measured by an RFB client (the one in
//! `strata_hostagent::rfb::client`), once announcing Raw only and once ZRLE first:
//! - time from connect to the first full frame (handshake, SetPixelFormat, SetEncodings,
//!   FramebufferUpdateRequest, the whole update read and decoded), median of 5;
//! - frames per second while the guest runs `fbfill 200` (the whole screen repainted 200
//!   times, alternating two colours): FramebufferUpdates that cover the whole screen,
//!   counted from sending the command until the guest prints that it is done — next to
//!   all updates per second, the bytes received and the guest's own repaint rate (under a
//!   software-emulated KVM such as KVM PVM one repaint takes longer than the server's 16 ms
//!   between looks, so most updates carry the part of the screen repainted meanwhile);
//! - the encoder alone, in-process: whole-screen updates per second and their size, for
//!   the frames fbfill draws (no guest, no socket).
//!
//! Run: `cargo bench -p strata-hostagent --bench vnc_console` (needs /dev/kvm).
//! `STRATA_BENCH_FILLS` changes the number of repaints.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_hostagent::rfb::client::Client;
use strata_hostagent::rfb::protocol::encoding;
use strata_hostagent::vmm::TESTGUEST_PATH;

struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path, needle: &str, count: usize, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches(needle).count() >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{needle:?} not seen within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn connect(path: &Path) -> Result<UnixStream, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(30)))
                    .map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) if Instant::now() > deadline => return Err(format!("{}: {e}", path.display())),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Connects and reads the first whole frame.
fn first_frame(sock: &Path, encodings: &[i32]) -> Result<Client<UnixStream>, String> {
    let s = connect(sock)?;
    let mut c = Client::handshake(s, b"RFB 003.008\n").map_err(|e| e.to_string())?;
    c.set_native_format().map_err(|e| e.to_string())?;
    c.set_encodings(encodings).map_err(|e| e.to_string())?;
    c.request(false).map_err(|e| e.to_string())?;
    let u = c.read_update().map_err(|e| e.to_string())?;
    let (w, h) = c.screen.size();
    if !u.covers(w, h) {
        return Err("the first update is not the whole screen".into());
    }
    Ok(c)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Figures {
    first_frame_ms: f64,
    fill_s: f64,
    updates: usize,
    whole: usize,
    bytes: u64,
}

/// A stream that counts what it reads.
struct Counting {
    inner: UnixStream,
    read: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn measure(
    sock: &Path,
    serial: &Path,
    log: &Path,
    encodings: &'static [i32],
    fills: u64,
    round: usize,
) -> Result<Figures, String> {
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        first_frame(sock, encodings)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let stream = connect(sock)?;
    let closer = stream.try_clone().map_err(|e| e.to_string())?;
    let read = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: stream,
        read: read.clone(),
    };
    let mut c = Client::handshake(counting, b"RFB 003.008\n").map_err(|e| e.to_string())?;
    c.set_native_format().map_err(|e| e.to_string())?;
    c.set_encodings(encodings).map_err(|e| e.to_string())?;
    c.request(false).map_err(|e| e.to_string())?;
    c.read_update().map_err(|e| e.to_string())?;
    let (w, h) = c.screen.size();
    c.request(true).map_err(|e| e.to_string())?;
    // A reader thread: each update is answered with the next request at once; the time
    // of each update, and whether it covered the screen, come back over a channel.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        while let Ok(u) = c.read_update() {
            let sample = (Instant::now(), u.covers(w, h));
            if tx.send(sample).is_err() || c.request(true).is_err() {
                break;
            }
        }
    });
    let mut input = UnixStream::connect(serial).map_err(|e| e.to_string())?;
    let before = read.load(Ordering::Relaxed);
    let start = Instant::now();
    input
        .write_all(format!("fbfill {fills}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    wait_for(log, "fbfill done", round, Duration::from_secs(600))?;
    let end = Instant::now();
    let bytes = read.load(Ordering::Relaxed) - before;
    let _ = closer.shutdown(std::net::Shutdown::Both);
    let _ = reader.join();
    let seen: Vec<(Instant, bool)> = rx.try_iter().filter(|s| s.0 <= end).collect();
    Ok(Figures {
        first_frame_ms: median(times),
        fill_s: (end - start).as_secs_f64(),
        updates: seen.len(),
        whole: seen.iter().filter(|s| s.1).count(),
        bytes,
    })
}

/// The encoder alone: whole-screen updates of the two colours fbfill draws, alternating,
/// for about a second. Returns (updates per second, bytes per update).
fn encoder_alone(encodings: &[i32]) -> (f64, f64) {
    use strata_hostagent::rfb::session::{Frame, Session};
    let mut s = Session::new(640, 480, "bench");
    let mut hs = b"RFB 003.008\n\x01\x01".to_vec();
    hs.extend_from_slice(&[2, 0]);
    hs.extend_from_slice(&(encodings.len() as u16).to_be_bytes());
    for e in encodings {
        hs.extend_from_slice(&e.to_be_bytes());
    }
    let request = [3u8, 1, 0, 0, 0, 0, 2, 128, 1, 224];
    if s.receive(&hs).is_err() {
        return (0.0, 0.0);
    }
    let frames = [
        [0x40, 0x30, 0x20, 0].repeat(640 * 480),
        [0x20, 0x80, 0xc0, 0].repeat(640 * 480),
    ];
    let (mut n, mut bytes) = (0u64, 0usize);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        if s.receive(&request).is_err() {
            return (0.0, 0.0);
        }
        let Some(f) = Frame::new(640, 480, &frames[(n % 2) as usize]) else {
            return (0.0, 0.0);
        };
        if !matches!(s.update(&f), Ok(true)) {
            return (0.0, 0.0);
        }
        bytes += s.output().len();
        s.output().clear();
        n += 1;
    }
    (
        n as f64 / start.elapsed().as_secs_f64(),
        bytes as f64 / n as f64,
    )
}

fn main() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: this benchmark needs KVM"
    );
    let fills: u64 = std::env::var("STRATA_BENCH_FILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = std::env::temp_dir().join(format!("strata-vnc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let p = |n: &str| -> PathBuf { dir.join(n) };
    let (log, sock, serial) = (p("serial.log"), p("vnc.sock"), p("serial.sock"));
    let child = Command::new(env!("CARGO_BIN_EXE_strata-vmx"))
        .env("STRATA_LOG", "warn")
        .args(["--kernel", TESTGUEST_PATH, "--memory-mib", "64"])
        .args(["--framebuffer", "640x480"])
        .arg("--serial-log")
        .arg(&log)
        .arg("--vnc-socket")
        .arg(&sock)
        .arg("--serial-socket")
        .arg(&serial)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("strata-vmx starts");
    let vm = Vm(child);
    wait_for(
        &log,
        "framebuffer 640x480 drawn",
        1,
        Duration::from_secs(60),
    )
    .expect("the guest draws its framebuffer");
    println!("\nVNC console of strata-vmx: test guest, 640x480, fbfill {fills}");
    println!(
        "{:<6} {:>13} {:>14} {:>11} {:>11} {:>13} {:>16} {:>18}",
        "",
        "first frame",
        "whole-screen/s",
        "updates/s",
        "KiB/s",
        "guest fills/s",
        "encoder alone/s",
        "bytes/whole update"
    );
    let runs: [(&str, &'static [i32]); 2] = [
        ("Raw", &[encoding::RAW]),
        (
            "ZRLE",
            &[
                encoding::ZRLE,
                encoding::COPY_RECT,
                encoding::RAW,
                encoding::DESKTOP_SIZE,
            ],
        ),
    ];
    for (round, (name, encodings)) in runs.iter().enumerate() {
        let (alone, size) = encoder_alone(encodings);
        match measure(&sock, &serial, &log, encodings, fills, round + 1) {
            Ok(f) => println!(
                "{name:<6} {:>10.2} ms {:>14.1} {:>11.1} {:>11.0} {:>13.1} {:>16.0} {:>18.0}",
                f.first_frame_ms,
                f.whole as f64 / f.fill_s,
                f.updates as f64 / f.fill_s,
                f.bytes as f64 / 1024.0 / f.fill_s,
                fills as f64 / f.fill_s,
                alone,
                size
            ),
            Err(e) => println!("{name:<6} failed: {e}"),
        }
    }
    drop(vm);
    let _ = std::fs::remove_dir_all(&dir);
}
