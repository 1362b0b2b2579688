//! virtio-net on the native engine, end to end: a test-made tap, a VM whose spec names it,
//! powered on through a real manager and host agent; the host side of the tap (an
//! AF_PACKET socket) sees the guest's boot frame, and frames sent to the guest come back
//! echoed. A second test pauses a NIC-carrying strata-vmx (nothing is received while
//! paused), snapshots it and restores it in a new process on the same tap. Needs /dev/kvm, root and iproute2 (fails clearly without).
//! Frames go nowhere but the test's own tap (no address, IPv6 off).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_hostagent::net::mac::MacAddr;
use strata_hostagent::net::packet::PacketSocket;
use strata_hostagent::net::FrameIo;
use strata_hostagent::vmm::control::ControlResponse;
use strata_hostagent::vmm::{TESTGUEST_PATH, TESTGUEST_READY_MARKER};
use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_tests::{
    bins, native_spec, power_on, require_kvm, task_ok, wait_console, Lab, TapGuard,
};

const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
/// The address the host side pretends to have.
const HOST_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01];

/// Waits for a frame of the Strata ethertype from `src` whose payload starts with
/// `prefix`; skips everything else (including our own outgoing frames, which an AF_PACKET
/// socket sees too).
fn wait_frame(sock: &mut PacketSocket, src: MacAddr, prefix: &[u8], limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no frame from {src} starting {:?} within {limit:?}",
            String::from_utf8_lossy(prefix)
        );
        let Some(n) = sock.recv_timeout(&mut buf, left).unwrap() else {
            continue;
        };
        let f = &buf[..n];
        if n >= 14 && f[6..12] == src.0 && f[12..14] == ETHERTYPE && f[14..].starts_with(prefix) {
            return f.to_vec();
        }
    }
}

fn ping_frame(dst: MacAddr, token: &str) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&ETHERTYPE);
    f.extend_from_slice(format!("STRATA-PING {token}").as_bytes());
    f.resize(60.max(f.len()), 0);
    f
}

/// Sends a ping and waits for its echo; returns the round-trip time.
fn ping(sock: &mut PacketSocket, vm_mac: MacAddr, token: &str) -> Duration {
    let sent = Instant::now();
    sock.send_frame(&ping_frame(vm_mac, token)).unwrap();
    let echo = wait_frame(
        sock,
        vm_mac,
        format!("STRATA-PONG {token}").as_bytes(),
        Duration::from_secs(20),
    );
    let rtt = sent.elapsed();
    assert_eq!(&echo[..6], &HOST_MAC, "the echo goes back to its sender");
    rtt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_vm_nic_on_a_tap_end_to_end() {
    require_kvm();
    let tap = TapGuard::create();
    // Bound before the VM exists, so the boot frame cannot be missed.
    let mut sock = PacketSocket::bind(&tap.name).unwrap();
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client.clone();

    let mac: MacAddr = "52:54:00:5e:77:01".parse().unwrap();
    let mut spec = native_spec("net01", 1, 64, TESTGUEST_PATH);
    spec.nics = vec![NicSpec {
        tap: tap.name.clone(),
        mac: Some(mac.to_string()),
    }];
    let vm = lab.create_vm("net01", spec).await;
    let stored = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(stored.spec.nics.len(), 1, "the manager keeps the NIC");

    power_on(c, vm).await;
    let (boot, offset) = wait_console(c, vm, 0, TESTGUEST_READY_MARKER, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        boot.contains(&format!("virtio-net mac {mac}")),
        "the guest found the NIC with the spec's MAC in its config space:\n{boot}"
    );

    // The guest's boot frame reaches the host side of the tap: a broadcast from its MAC.
    let hello = wait_frame(&mut sock, mac, b"STRATA-HELLO", Duration::from_secs(30));
    assert_eq!(&hello[..6], &[0xff; 6]);

    // Frames sent into the tap reach the guest (its receive interrupt) and come back.
    let mut rtts: Vec<Duration> = (0..20)
        .map(|i| ping(&mut sock, mac, &format!("t{i}")))
        .collect();
    rtts.sort();
    eprintln!(
        "native_net: 20 echoes through tap {}, round trip min {:?} median {:?} max {:?}",
        tap.name, rtts[0], rtts[10], rtts[19]
    );
    // A big frame (1500-byte payload) crosses both ways whole.
    let token = "b".repeat(1480);
    ping(&mut sock, mac, &token);

    // Other ethertypes reach the guest but are not echoed back at the host's stack.
    let mut other = ping_frame(mac, "ipv4");
    other[12..14].copy_from_slice(&[0x08, 0x00]);
    sock.send_frame(&other).unwrap();
    let (_, offset) = wait_console(
        c,
        vm,
        offset,
        "net ignored a frame of type 0x0800",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    c.call::<m::VmConsoleSend>(m::ConsoleSendParams {
        id: vm,
        data: "net\n".into(),
    })
    .await
    .unwrap();
    let (counters, _) = wait_console(c, vm, offset, "ignored 1", Duration::from_secs(20))
        .await
        .unwrap();
    assert!(counters.contains("echoed 21,"), "{counters}");

    let t = c
        .call::<m::VmPowerOff>(m::PowerOffParams {
            id: vm,
            hard: true,
            timeout_secs: Some(20),
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    assert!(
        tap.exists(),
        "the VM does not remove a tap it did not create"
    );
}

struct Vmx(Child);

impl Drop for Vmx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_log(path: &Path, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(Instant::now() < deadline, "{needle:?} not seen:\n{text}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn control(ctl: &Path, req: serde_json::Value) -> ControlResponse {
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

/// The receive queue's next used index in a snapshot's state file.
fn rx_next_used(dir: &Path) -> u64 {
    let (state, _, _) = strata_hostagent::vmm::persist::Snapshot::open_file(dir).unwrap();
    let v = serde_json::to_value(&state).unwrap();
    v["net"]["transport"]["queue_next_used"].as_u64().unwrap()
}

/// The NIC's queues survive a snapshot: a new process restored from it (on the same tap,
/// named by the snapshot) goes on echoing without the guest re-initialising its driver.
#[test]
fn a_nic_survives_snapshot_and_restore_in_a_new_process() {
    require_kvm();
    let tap = TapGuard::create();
    let mut sock = PacketSocket::bind(&tap.name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let snap = d.join("snap");
    std::fs::create_dir(&snap).unwrap();
    let vmx = env!("CARGO_BIN_EXE_e2e-strata-vmx");
    let mac: MacAddr = "52:54:00:5e:77:02".parse().unwrap();
    let (log_a, ctl_a) = (d.join("a.log"), d.join("a.ctl"));
    let a = Command::new(vmx)
        .args(["--kernel", TESTGUEST_PATH, "--memory-mib", "32"])
        .args(["--net-tap", &tap.name, "--net-mac", &mac.to_string()])
        .arg("--serial-log")
        .arg(&log_a)
        .arg("--control-socket")
        .arg(&ctl_a)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut a = Vmx(a);
    wait_log(&log_a, TESTGUEST_READY_MARKER, Duration::from_secs(30));
    wait_frame(&mut sock, mac, b"STRATA-HELLO", Duration::from_secs(30));
    ping(&mut sock, mac, "before");

    // Paused, the NIC leaves guest memory and its queues alone: a frame that comes in waits
    // in the tap (two snapshots around it see the same receive ring), and is delivered when
    // the VM resumes.
    assert!(control(&ctl_a, serde_json::json!({"cmd": "pause"})).ok);
    let snap0 = d.join("snap0");
    std::fs::create_dir(&snap0).unwrap();
    let r = control(&ctl_a, serde_json::json!({"cmd": "snapshot", "dir": snap0}));
    assert!(r.ok, "{r:?}");
    sock.send_frame(&ping_frame(mac, "while-paused")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = control(&ctl_a, serde_json::json!({"cmd": "snapshot", "dir": snap}));
    assert!(r.ok, "{r:?}");
    assert_eq!(
        rx_next_used(&snap0),
        rx_next_used(&snap),
        "nothing was received into a paused VM"
    );
    assert!(control(&ctl_a, serde_json::json!({"cmd": "resume"})).ok);
    wait_frame(
        &mut sock,
        mac,
        b"STRATA-PONG while-paused",
        Duration::from_secs(20),
    );
    assert!(control(&ctl_a, serde_json::json!({"cmd": "stop"})).ok);
    let _ = a.0.wait();

    let (log_b, ctl_b) = (d.join("b.log"), d.join("b.ctl"));
    let b = Command::new(vmx)
        .arg("--restore")
        .arg(&snap)
        .arg("--serial-log")
        .arg(&log_b)
        .arg("--control-socket")
        .arg(&ctl_b)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _b = Vmx(b);
    assert!(control(&ctl_b, serde_json::json!({"cmd": "status"})).ok);
    for i in 0..3 {
        ping(&mut sock, mac, &format!("after{i}"));
    }
    let text = std::fs::read_to_string(&log_b).unwrap_or_default();
    assert!(
        !text.contains(TESTGUEST_READY_MARKER) && text.contains("net echoed"),
        "the restored guest went on (no second boot) and echoed:\n{text}"
    );
}
