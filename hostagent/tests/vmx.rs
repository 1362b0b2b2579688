//! strata-vmx as a process: bad configurations are refused before any guest runs, and the
//! control socket pauses and resumes a running guest. Needs /dev/kvm (fails clearly
//! without it).

// Test code: unwrap() is how a test says "this must work".
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_hostagent::vmm::control::{ControlResponse, RunState};
use strata_hostagent::vmm::{TESTGUEST_PATH, TESTGUEST_READY_MARKER};

mod common;
use common::{request, request_json, require_kvm, wait_for, Vm, VMX};

fn vmx(dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(VMX);
    c.env("NO_COLOR", "1")
        .arg("--serial-log")
        .arg(dir.join("serial.log"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn refused(dir: &Path, extra: &[&str]) -> String {
    let out = vmx(dir, extra).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "bad config exits 1");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_configs_fail_before_the_guest_starts() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = refused(d, &["--kernel", "/nonexistent/kernel"]);
    assert!(
        e.contains("kernel /nonexistent/kernel does not exist"),
        "{e}"
    );
    let e = refused(
        d,
        &["--kernel", TESTGUEST_PATH, "--memory-mib", "100000000"],
    );
    assert!(e.contains("more than this host has"), "{e}");
    let e = refused(d, &["--kernel", TESTGUEST_PATH, "--vcpus", "100000"]);
    assert!(e.contains("more than KVM allows"), "{e}");
    let e = refused(d, &["--kernel", TESTGUEST_PATH, "--vcpus", "0"]);
    assert!(e.contains("at least one vCPU"), "{e}");
    let e = refused(d, &["--kernel", "/bin/true"]);
    assert!(e.contains("cannot load kernel /bin/true"), "{e}");
    let serial = std::fs::read_to_string(d.join("serial.log")).unwrap_or_default();
    assert!(serial.is_empty(), "no guest ran: {serial}");
}

#[test]
fn pause_holds_the_guest_and_resume_lets_it_go_on() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ctl, serial_in, log) = (d.join("ctl"), d.join("serial"), d.join("serial.log"));
    let child = vmx(
        d,
        &[
            "--kernel",
            TESTGUEST_PATH,
            "--vcpus",
            "2",
            "--memory-mib",
            "32",
            "--control-socket",
            ctl.to_str().unwrap(),
            "--serial-socket",
            serial_in.to_str().unwrap(),
            "--pid-file",
            d.join("pid").to_str().unwrap(),
        ],
    )
    .spawn()
    .unwrap();
    let vm = Vm(child);
    wait_for(&log, TESTGUEST_READY_MARKER, Duration::from_secs(30));
    let status = std::fs::read_to_string(format!("/proc/{}/status", vm.0.id())).unwrap();
    assert!(
        status.lines().any(|l| l == "Seccomp:\t2"),
        "strata-vmx runs under its seccomp filter"
    );
    let st = request(&ctl, "status");
    assert_eq!(
        (st.ok, st.state, st.vcpus),
        (true, Some(RunState::Running), Some(2))
    );

    // Reset (here from the guest, through the i8042) re-executes strata-vmx under its
    // seccomp filter: same pid, the guest boots again.
    let pid = vm.0.id();
    UnixStream::connect(&serial_in)
        .unwrap()
        .write_all(b"reset\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches(TESTGUEST_READY_MARKER)
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "no second boot after reset");
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while request_json_opt(&ctl).is_none() {
        assert!(Instant::now() < deadline, "no control socket after reset");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(request(&ctl, "status").pid, Some(pid));

    assert_eq!(request(&ctl, "pause").state, Some(RunState::Paused));
    UnixStream::connect(&serial_in)
        .unwrap()
        .write_all(b"while-paused\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("while-paused"),
        "a paused guest echoed:\n{text}"
    );
    assert_eq!(request(&ctl, "resume").state, Some(RunState::Running));
    wait_for(&log, "while-paused", Duration::from_secs(10));

    let bad = {
        let mut s = UnixStream::connect(&ctl).unwrap();
        s.write_all(b"{\"cmd\":\"fly\"}\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str::<ControlResponse>(&line).unwrap()
    };
    assert!(!bad.ok && bad.error.unwrap().contains("bad request"));
    assert!(request(&ctl, "stop").ok);
}

#[test]
fn snapshot_restores_in_a_new_process_and_the_guest_goes_on() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let snap = d.join("snap");
    std::fs::create_dir(&snap).unwrap();
    let (ctl_a, in_a, log_a) = (d.join("ctl-a"), d.join("in-a"), d.join("a.log"));
    let disk = d.join("disk.raw");
    std::fs::write(&disk, vec![0u8; 64 << 10]).unwrap();
    let a = Command::new(VMX)
        .arg("--disk")
        .arg(&disk)
        .args([
            "--kernel",
            TESTGUEST_PATH,
            "--vcpus",
            "2",
            "--memory-mib",
            "64",
        ])
        .arg("--serial-log")
        .arg(&log_a)
        .arg("--control-socket")
        .arg(&ctl_a)
        .arg("--serial-socket")
        .arg(&in_a)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut a = Vm(a);
    wait_for(&log_a, TESTGUEST_READY_MARKER, Duration::from_secs(30));
    UnixStream::connect(&in_a)
        .unwrap()
        .write_all(b"before\n")
        .unwrap();
    wait_for(&log_a, "line 1", Duration::from_secs(10));
    send_line(&in_a, "blkw 3 before-snapshot");
    wait_for(&log_a, "sector 3 written", Duration::from_secs(10));

    let mut s = UnixStream::connect(&ctl_a).unwrap();
    writeln!(s, "{}", serde_json::json!({"cmd": "snapshot", "dir": snap})).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    let r: ControlResponse = serde_json::from_str(&line).unwrap();
    assert!(r.ok, "{line}");
    assert_eq!(r.state, Some(RunState::Paused), "the source stays paused");
    assert!(request(&ctl_a, "stop").ok);
    let _ = a.0.wait();

    // A new process, with no kernel: memory, vCPUs (both), devices come from the snapshot.
    let (ctl_b, in_b, log_b) = (d.join("ctl-b"), d.join("in-b"), d.join("b.log"));
    let b = Command::new(VMX)
        .arg("--restore")
        .arg(&snap)
        .arg("--serial-log")
        .arg(&log_b)
        .arg("--control-socket")
        .arg(&ctl_b)
        .arg("--serial-socket")
        .arg(&in_b)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _b = Vm(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&in_b).is_err() {
        assert!(Instant::now() < deadline, "restored VMX did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = request(&ctl_b, "status");
    assert_eq!((st.vcpus, st.memory_mib), (Some(2), Some(64)));
    UnixStream::connect(&in_b)
        .unwrap()
        .write_all(b"after\n")
        .unwrap();
    wait_for(&log_b, "line 3", Duration::from_secs(10));
    // The disk and its virtio queue carry on (the guest's ring indices match the device's).
    send_line(&in_b, "blkr 3");
    wait_for(&log_b, "sector 3: before-snapshot", Duration::from_secs(10));
    send_line(&in_b, "blkw 4 after-restore");
    let text = wait_for(&log_b, "sector 4 written", Duration::from_secs(10));
    assert_eq!(
        &std::fs::read(&disk).unwrap()[4 * 512..4 * 512 + 13],
        b"after-restore"
    );
    assert!(
        !text.contains(TESTGUEST_READY_MARKER),
        "the guest did not boot again, it went on:\n{text}"
    );
}

#[test]
fn dirty_logging_sees_the_pages_the_guest_writes() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ctl, serial_in, log) = (d.join("ctl"), d.join("serial"), d.join("serial.log"));
    let child = vmx(
        d,
        &[
            "--kernel",
            TESTGUEST_PATH,
            "--memory-mib",
            "64",
            "--control-socket",
            ctl.to_str().unwrap(),
            "--serial-socket",
            serial_in.to_str().unwrap(),
        ],
    )
    .spawn()
    .unwrap();
    let _vm = Vm(child);
    wait_for(&log, TESTGUEST_READY_MARKER, Duration::from_secs(30));
    assert!(
        request_json(
            &ctl,
            serde_json::json!({"cmd": "dirty_log", "enable": true})
        )
        .ok
    );
    // Baseline: an idle guest writes (almost) nothing.
    let idle = request_json(&ctl, serde_json::json!({"cmd": "dirty_pages"}));
    assert!(idle.ok);
    UnixStream::connect(&serial_in)
        .unwrap()
        .write_all(b"dirty 300\n")
        .unwrap();
    wait_for(&log, "dirtied 300 pages", Duration::from_secs(20));
    let after = request_json(&ctl, serde_json::json!({"cmd": "dirty_pages"}))
        .dirty_pages
        .unwrap();
    // The 300 pages, plus the few the guest's stack, counters and input buffer live in.
    assert!(
        (300..=310).contains(&after),
        "{after} pages dirty after the guest wrote 300"
    );
    let again = request_json(&ctl, serde_json::json!({"cmd": "dirty_pages"}))
        .dirty_pages
        .unwrap();
    assert!(again < 5, "reading the log clears it ({again} left)");
    UnixStream::connect(&serial_in)
        .unwrap()
        .write_all(b"check\n")
        .unwrap();
    wait_for(&log, " ok", Duration::from_secs(20));
    assert!(
        request_json(
            &ctl,
            serde_json::json!({"cmd": "dirty_log", "enable": false})
        )
        .ok
    );
}

fn send_line(path: &Path, text: &str) {
    UnixStream::connect(path)
        .unwrap()
        .write_all(format!("{text}\n").as_bytes())
        .unwrap();
}

#[test]
fn virtio_blk_reads_writes_and_guards_the_disk() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = d.join("disk.raw");
    let mut image = vec![0u8; 1 << 20];
    image[..11].copy_from_slice(b"from-host-0");
    std::fs::write(&disk, &image).unwrap();
    let (serial_in, log) = (d.join("serial"), d.join("serial.log"));
    let child = vmx(
        d,
        &[
            "--kernel",
            TESTGUEST_PATH,
            "--disk",
            disk.to_str().unwrap(),
            "--serial-socket",
            serial_in.to_str().unwrap(),
        ],
    )
    .spawn()
    .unwrap();
    let mut vm = Vm(child);
    let boot = wait_for(&log, TESTGUEST_READY_MARKER, Duration::from_secs(30));
    assert!(boot.contains("virtio-blk 2048 sectors"), "{boot}");

    // A second VM cannot take the same disk.
    let e = refused(
        d,
        &["--kernel", TESTGUEST_PATH, "--disk", disk.to_str().unwrap()],
    );
    assert!(e.contains("is in use by another VM"), "{e}");

    send_line(&serial_in, "blkr 0");
    wait_for(&log, "sector 0: from-host-0", Duration::from_secs(10));
    send_line(&serial_in, "blkw 7 from-guest-7");
    wait_for(&log, "sector 7 written", Duration::from_secs(10));
    send_line(&serial_in, "blkr 2048");
    wait_for(&log, "sector 2048 error 1", Duration::from_secs(10));
    send_line(&serial_in, "poweroff");
    assert!(vm.0.wait().unwrap().success());
    let on_disk = std::fs::read(&disk).unwrap();
    assert_eq!(&on_disk[7 * 512..7 * 512 + 12], b"from-guest-7");

    // Read-only: reads work, writes fail with an I/O error status.
    let log_ro = d.join("ro.log");
    let in_ro = d.join("serial-ro");
    let child = Command::new(VMX)
        .args(["--kernel", TESTGUEST_PATH, "--disk-read-only", "--disk"])
        .arg(&disk)
        .arg("--serial-log")
        .arg(&log_ro)
        .arg("--serial-socket")
        .arg(&in_ro)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ro = Vm(child);
    wait_for(&log_ro, TESTGUEST_READY_MARKER, Duration::from_secs(30));
    send_line(&in_ro, "blkr 7");
    wait_for(&log_ro, "sector 7: from-guest-7", Duration::from_secs(10));
    send_line(&in_ro, "blkw 7 nope");
    wait_for(&log_ro, "sector 7 error 1", Duration::from_secs(10));
    assert_eq!(
        &std::fs::read(&disk).unwrap()[7 * 512..7 * 512 + 12],
        b"from-guest-7"
    );
}

fn request_json_opt(ctl: &Path) -> Option<ControlResponse> {
    let mut s = UnixStream::connect(ctl).ok()?;
    writeln!(s, "{{\"cmd\":\"status\"}}").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

/// The Linux boot protocol end to end as far as KVM PVM lets a kernel go: Debian's bzImage
/// (from the test-guest cache) is loaded, entered at its 64-bit entry with the zero page,
/// and its decompressor reads our command line and prints on our UART. (A Linux kernel
/// cannot finish booting under PVM; on hardware KVM it boots on.)
#[test]
fn a_linux_bzimage_starts_through_the_linux_boot_protocol() {
    require_kvm();
    let img =
        strata_hostagent::guest_image::build(&strata_hostagent::guest_image::default_cache_dir())
            .unwrap_or_else(|e| {
                panic!("cannot build the Linux test image: {e} (run scripts/setup)")
            });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serial.log");
    let child = Command::new(VMX)
        .arg("--kernel")
        .arg(&img.kernel)
        .arg("--initrd")
        .arg(&img.initrd)
        .args([
            "--memory-mib",
            "256",
            "--cmdline",
            "console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr",
        ])
        .arg("--serial-log")
        .arg(&log)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _vm = Vm(child);
    wait_for(
        &log,
        "KASLR disabled: 'nokaslr' on cmdline",
        Duration::from_secs(60),
    );
}

#[test]
fn a_disk_hot_added_to_a_running_guest_is_seen_and_kept_across_reset() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = d.join("hot.raw");
    let mut image = vec![0u8; 4 << 20];
    image[..9].copy_from_slice(b"hot-disk!");
    std::fs::write(&disk, &image).unwrap();
    let (ctl, serial_in, log) = (d.join("ctl"), d.join("serial"), d.join("serial.log"));
    let child = vmx(
        d,
        &[
            "--kernel",
            TESTGUEST_PATH,
            "--control-socket",
            ctl.to_str().unwrap(),
            "--serial-socket",
            serial_in.to_str().unwrap(),
        ],
    )
    .spawn()
    .unwrap();
    let mut vm = Vm(child);
    let boot = wait_for(&log, TESTGUEST_READY_MARKER, Duration::from_secs(30));
    assert!(!boot.contains("virtio-blk 8192"), "no disk at boot: {boot}");

    // The hot-add slot is there from the start, empty.
    send_line(&serial_in, "blkslot 4");
    wait_for(&log, "virtio-blk 0 sectors", Duration::from_secs(10));
    send_line(&serial_in, "blkr 0");
    wait_for(&log, "sector 0 error 1", Duration::from_secs(10));

    // Bad requests change nothing.
    let r = request_json(
        &ctl,
        serde_json::json!({"cmd": "attach_disk", "path": "relative.raw"}),
    );
    assert!(!r.ok && r.error.unwrap().contains("not an absolute path"));
    let r = request_json(
        &ctl,
        serde_json::json!({"cmd": "attach_disk", "path": d.join("missing.raw")}),
    );
    assert!(!r.ok && r.error.unwrap().contains("cannot open disk"));

    let r = request_json(
        &ctl,
        serde_json::json!({"cmd": "attach_disk", "path": disk}),
    );
    assert!(r.ok, "{r:?}");
    send_line(&serial_in, "blkcap");
    wait_for(
        &log,
        "virtio-blk capacity 8192 sectors, configuration changed",
        Duration::from_secs(10),
    );
    send_line(&serial_in, "blkr 0");
    wait_for(&log, "sector 0: hot-disk!", Duration::from_secs(10));
    send_line(&serial_in, "blkw 5 written-after-hot-add");
    wait_for(&log, "sector 5 written", Duration::from_secs(10));
    assert_eq!(
        &std::fs::read(&disk).unwrap()[5 * 512..5 * 512 + 22],
        b"written-after-hot-add\0"
    );
    // One disk a slot; the disk is locked against other VMs.
    let r = request_json(
        &ctl,
        serde_json::json!({"cmd": "attach_disk", "path": disk}),
    );
    assert!(!r.ok && r.error.unwrap().contains("already holds"));
    let e = refused(
        d,
        &["--kernel", TESTGUEST_PATH, "--disk", disk.to_str().unwrap()],
    );
    assert!(e.contains("is in use by another VM"), "{e}");

    // A reset boots afresh with the disk still in its slot.
    let before = std::fs::read_to_string(&log).unwrap().len();
    send_line(&serial_in, "reset");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap()[before..].contains(TESTGUEST_READY_MARKER) {
        assert!(Instant::now() < deadline, "no second boot");
        std::thread::sleep(Duration::from_millis(20));
    }
    send_line(&serial_in, "blkslot 4");
    send_line(&serial_in, "blkr 5");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap()[before..]
        .contains("sector 5: written-after-hot-add")
    {
        assert!(Instant::now() < deadline, "the disk is gone after reset");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A snapshot keeps the slot's disk and driver state: the restored guest reads on.
    let snap = d.join("snap");
    std::fs::create_dir(&snap).unwrap();
    let r = request_json(&ctl, serde_json::json!({"cmd": "snapshot", "dir": snap}));
    assert!(r.ok, "{r:?}");
    assert!(request(&ctl, "stop").ok);
    vm.0.wait().unwrap();
    let (ctl_b, in_b, log_b) = (d.join("ctl-b"), d.join("in-b"), d.join("b.log"));
    let b = Command::new(VMX)
        .arg("--restore")
        .arg(&snap)
        .arg("--serial-log")
        .arg(&log_b)
        .arg("--control-socket")
        .arg(&ctl_b)
        .arg("--serial-socket")
        .arg(&in_b)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _b = Vm(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&in_b).is_err() {
        assert!(Instant::now() < deadline, "restored VMX did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    send_line(&in_b, "blkr 0");
    wait_for(&log_b, "sector 0: hot-disk!", Duration::from_secs(10));
    let r = request_json(
        &ctl_b,
        serde_json::json!({"cmd": "attach_disk", "path": disk}),
    );
    assert!(
        !r.ok && r.error.unwrap().contains("already holds"),
        "restored with its disk"
    );
}
