//! The native engine end to end: a real manager and host agent on loopback, VMs on
//! strata-vmx (our own KVM VMM) booting the test guest built from hostagent/testguest,
//! driven through the SDK. Needs /dev/kvm (fails with a clear message without it).

use std::time::Duration;

use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_tests::{bins, power_on, require_kvm, task_error, task_ok, wait_console, Lab};

const MARKER: &str = strata_hostagent::vmm::TESTGUEST_READY_MARKER;
const BOOT: Duration = Duration::from_secs(60);

async fn power_off(lab: &Lab, vm: uuid::Uuid, hard: bool) -> VmInfo {
    let t = lab
        .client
        .call::<m::VmPowerOff>(m::PowerOffParams {
            id: vm,
            hard,
            timeout_secs: Some(20),
        })
        .await
        .unwrap();
    let done = task_ok(&lab.client, t).await;
    serde_json::from_value(done.result.unwrap()).unwrap()
}

async fn event_messages(lab: &Lab, vm: uuid::Uuid) -> Vec<String> {
    lab.client
        .call::<m::EventList>(EventListParams {
            object: Some(vm),
            after_id: None,
            limit: None,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect()
}

async fn send(lab: &Lab, vm: uuid::Uuid, text: &str) {
    lab.client
        .call::<m::VmConsoleSend>(m::ConsoleSendParams {
            id: vm,
            data: text.into(),
        })
        .await
        .unwrap();
}

async fn console_size(lab: &Lab, vm: uuid::Uuid) -> u64 {
    lab.client
        .call::<m::VmConsoleRead>(m::ConsoleReadParams {
            id: vm,
            offset: -1,
            max_bytes: None,
        })
        .await
        .unwrap()
        .size
}

async fn wait_powered_off(lab: &Lab, vm: uuid::Uuid, limit: Duration) -> VmInfo {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let info = lab
            .client
            .call::<m::VmGet>(IdParams { id: vm })
            .await
            .unwrap();
        if info.power_state == PowerState::PoweredOff {
            return info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "VM still {:?} after {limit:?}",
            info.power_state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The control socket strata-vmx `pid` serves (from its command line).
fn control_socket_of(pid: u32) -> std::path::PathBuf {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let at = args.iter().position(|a| a == "--control-socket").unwrap();
    args[at + 1].clone().into()
}

/// One request on a strata-vmx control socket.
fn control(
    ctl: &std::path::Path,
    req: serde_json::Value,
) -> strata_hostagent::vmm::control::ControlResponse {
    use std::io::{BufRead, Write};
    let s = std::os::unix::net::UnixStream::connect(ctl).unwrap();
    writeln!(&s, "{req}").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_vm_lifecycle_end_to_end() {
    require_kvm();
    let mut lab = Lab::start(&bins!()).await;
    let c = &lab.client.clone();

    let hosts = c.call::<m::HostList>(Empty {}).await.unwrap();
    let facts = hosts[0].facts.clone().expect("host facts");
    assert!(
        facts.engines.contains(&Engine::Native),
        "a host with a usable /dev/kvm offers the native engine: {:?}",
        facts.engines
    );
    let expected_default = if facts.hardware_virtualization {
        Engine::Native
    } else {
        Engine::Qemu
    };
    assert_eq!(facts.default_engine, expected_default);

    let vm = lab.create_native_vm("tg01", 2, 64).await;
    let dir = lab.datastore().join("tg01");

    // Power on: the guest boots and prints its marker and what the VMM told it.
    power_on(c, vm).await;
    let info = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(info.power_state, PowerState::PoweredOn);
    // The host agent (asked directly: the manager does not track the running engine) runs
    // it on the native engine.
    let agent = lab.agent.client("root").await;
    let on_host = agent
        .call::<strata_shared::api::agent::VmGet>(IdParams { id: vm })
        .await
        .unwrap();
    assert_eq!(on_host.running_engine, Some(Engine::Native));
    let (boot, offset) = wait_console(c, vm, 0, MARKER, BOOT).await.unwrap();
    assert!(
        boot.contains("memory 63 MiB"),
        "the guest saw the VM's memory (64 MiB less the legacy hole) in its PVH map:\n{boot}"
    );
    assert!(
        boot.contains("cpus 2 online of 2 in the MP table"),
        "the guest found both vCPUs in the MP table and started the AP (INIT/SIPI):\n{boot}"
    );
    assert!(
        boot.contains("strata.vm=tg01"),
        "the command line reached the guest:\n{boot}"
    );
    let pid: u32 = std::fs::read_to_string(dir.join("vmm.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("strata-vmx"),
        "the VM runs in its own strata-vmx process"
    );

    // Serial input reaches the guest, which echoes it.
    send(&lab, vm, "hello-native-42\n").await;
    let (_, offset) = wait_console(c, vm, offset, "hello-native-42", Duration::from_secs(20))
        .await
        .unwrap();

    // The console devices of an agent-run VM, through its control socket (what the VNC
    // console will drive): typed keys reach the guest's i8042, and a screen dump shows what
    // the guest drew in its framebuffer.
    let ctl = control_socket_of(pid);
    wait_console(c, vm, 0, "framebuffer 640x480 drawn", BOOT)
        .await
        .unwrap();
    let r = control(
        &ctl,
        serde_json::json!({"cmd": "type", "text": "typed via agent 7\n"}),
    );
    assert!(r.ok, "{r:?}");
    let (_, offset) = wait_console(
        c,
        vm,
        offset,
        "typed \"typed via agent 7\"",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let shot = lab.dir.path().join("tg01.ppm");
    let r = control(&ctl, serde_json::json!({"cmd": "screendump", "path": shot}));
    assert!(r.ok, "{r:?}");
    let ppm = std::fs::read(&shot).unwrap();
    let header = b"P6\n640 480\n255\n";
    assert_eq!(&ppm[..header.len()], header);
    let px = |x: usize, y: usize| {
        let i = header.len() + (y * 640 + x) * 3;
        [ppm[i], ppm[i + 1], ppm[i + 2]]
    };
    assert_eq!(px(40, 10), [255, 255, 255], "the white bar");
    assert_eq!(px(600, 10), [0, 0, 0], "the black bar");
    assert_eq!(px(360, 10), [255, 0, 255], "the magenta bar");

    // The VM is its own process: it keeps running across a host agent restart, and the new
    // agent re-attaches to it on the native engine.
    lab.agent.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let h = c
            .call::<m::HostGet>(IdParams { id: lab.host })
            .await
            .unwrap();
        if h.connection_state == ConnectionState::Connected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "host did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agent = lab.agent.client("root").await;
    let on_host = agent
        .call::<strata_shared::api::agent::VmGet>(IdParams { id: vm })
        .await
        .unwrap();
    assert_eq!(on_host.power_state, PowerState::PoweredOn);
    assert_eq!(on_host.running_engine, Some(Engine::Native));
    assert_eq!(on_host.pid, Some(pid), "the same strata-vmx process");
    send(&lab, vm, "still-here\n").await;
    wait_console(c, vm, offset, "still-here", Duration::from_secs(20))
        .await
        .unwrap();

    // Reset: the guest boots again, in the same process.
    let before = console_size(&lab, vm).await;
    let t = c.call::<m::VmReset>(IdParams { id: vm }).await.unwrap();
    task_ok(c, t).await;
    let (_, offset) = wait_console(c, vm, before, MARKER, BOOT).await.unwrap();
    send(&lab, vm, "after-reset\n").await;
    wait_console(c, vm, offset, "after-reset", Duration::from_secs(20))
        .await
        .unwrap();

    // Shutdown request ("power button"): the guest powers itself off.
    let off = power_off(&lab, vm, false).await;
    assert_eq!(off.power_state, PowerState::PoweredOff);
    let messages = event_messages(&lab, vm).await;
    assert!(
        messages.iter().any(|m| m.contains("guest shut down")),
        "the guest shut down on the power button, not by a hard stop: {messages:?}"
    );
    // Gone (or a zombie until its new parent reaps it: the agent that spawned it restarted).
    assert!(!strata_hostagent::engine::process::alive(pid));
    let log = std::fs::read_to_string(dir.join("serial.log")).unwrap();
    assert!(log.contains("shutdown requested"), "{log}");

    // Hard power-off.
    let from = console_size(&lab, vm).await;
    power_on(c, vm).await;
    wait_console(c, vm, from, MARKER, BOOT).await.unwrap();
    let off = power_off(&lab, vm, true).await;
    assert_eq!(off.power_state, PowerState::PoweredOff);
    assert!(event_messages(&lab, vm)
        .await
        .iter()
        .any(|m| m.contains("stopped hard")));

    // A guest that makes KVM fail is reported as crashed, and the VMX exits cleanly.
    let from = console_size(&lab, vm).await;
    power_on(c, vm).await;
    wait_console(c, vm, from, MARKER, BOOT).await.unwrap();
    send(&lab, vm, "crash\n").await;
    wait_powered_off(&lab, vm, Duration::from_secs(20)).await;
    let vmm_log = std::fs::read_to_string(dir.join("vmm.log")).unwrap();
    assert!(
        vmm_log.contains("strata-vmx: crashed: vCPU 0:"),
        "the VMX logged why:\n{vmm_log}"
    );
    // The state is stored a moment before its event: wait for the event.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let messages = event_messages(&lab, vm).await;
        if messages.iter().any(|m| m.contains("crashed")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the crash is recorded as an event: {messages:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A kernel that is not a PVH ELF fails at power-on, before any guest runs, with the
    // VMX's own reason.
    let bad = lab
        .create_native_vm_with("notpvh", 1, 64, "/bin/true")
        .await;
    let t = c.call::<m::VmPowerOn>(IdParams { id: bad }).await.unwrap();
    let done = c.wait_task(t.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(done.state, TaskState::Error);
    let msg = done.error.unwrap().message;
    assert!(msg.contains("cannot load kernel /bin/true"), "{msg}");
    let info = c.call::<m::VmGet>(IdParams { id: bad }).await.unwrap();
    assert_eq!(info.power_state, PowerState::PoweredOff);
}

/// Boots the native VM and waits for its marker; returns the console offset after it.
async fn boot_native(lab: &Lab, vm: uuid::Uuid) -> u64 {
    let from = console_size(lab, vm).await;
    power_on(&lab.client, vm).await;
    wait_console(&lab.client, vm, from, MARKER, BOOT)
        .await
        .unwrap()
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_snapshots_are_whole_copies_and_revert_the_disk() {
    require_kvm();
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let vm = lab.create_native_vm("snapn", 1, 64).await;
    let t = c
        .call::<m::VmDiskCreate>(strata_tests::new_disk(
            vm,
            1,
            DiskFormat::Raw,
            Provisioning::Thin,
        ))
        .await
        .unwrap();
    task_ok(c, t).await;
    let dir = lab.datastore().join("snapn");

    let off = boot_native(&lab, vm).await;
    send(&lab, vm, "blkw 3 original-data\n").await;
    wait_console(c, vm, off, "sector 3 written", BOOT)
        .await
        .unwrap();
    power_off(&lab, vm, true).await;

    let t = c
        .call::<m::VmSnapshotCreate>(m::SnapshotCreateParams {
            id: vm,
            name: "s1".into(),
            description: String::new(),
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    let tree = c
        .call::<m::VmSnapshotList>(IdParams { id: vm })
        .await
        .unwrap();
    let s1 = &tree.snapshots[0];
    assert!(s1.copies, "the native engine gets whole copies");
    assert_eq!(s1.disks[0].file, "snapn-000001.raw");
    let info = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(
        info.spec.disks[0].file, "snapn.raw",
        "the VM keeps its raw disk"
    );

    let off = boot_native(&lab, vm).await;
    send(&lab, vm, "blkw 3 changed-data\n").await;
    wait_console(c, vm, off, "sector 3 written", BOOT)
        .await
        .unwrap();
    power_off(&lab, vm, true).await;
    let frozen = std::fs::read(dir.join("snapn-000001.raw")).unwrap();
    assert_eq!(&frozen[3 * 512..3 * 512 + 13], b"original-data");

    // A linked clone of a copy snapshot is refused with the reason.
    let t = c
        .call::<m::VmClone>(m::VmCloneParams {
            id: vm,
            name: "snapn-lc".into(),
            linked: true,
            snapshot: Some(s1.id),
            hostname: None,
            template: false,
        })
        .await
        .unwrap();
    let done = c.wait_task(t.id, BOOT).await.unwrap();
    assert_eq!(done.state, TaskState::Error);
    assert!(done.error.unwrap().message.contains("full clone"));

    let t = c
        .call::<m::VmSnapshotRevert>(m::SnapshotParams {
            id: vm,
            snapshot: s1.id,
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    let off = boot_native(&lab, vm).await;
    send(&lab, vm, "blkr 3\n").await;
    wait_console(c, vm, off, "sector 3: original-data", BOOT)
        .await
        .unwrap();
    power_off(&lab, vm, true).await;

    let t = c
        .call::<m::VmSnapshotDelete>(m::SnapshotParams {
            id: vm,
            snapshot: s1.id,
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    assert!(!dir.join("snapn-000001.raw").exists(), "the copy is gone");
    let live = std::fs::read(dir.join("snapn.raw")).unwrap();
    assert_eq!(&live[3 * 512..3 * 512 + 13], b"original-data");
    let tree = c
        .call::<m::VmSnapshotList>(IdParams { id: vm })
        .await
        .unwrap();
    assert!(tree.snapshots.is_empty() && tree.current.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_is_hot_added_to_a_running_native_guest() {
    require_kvm();
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;
    let vm = lab.create_native_vm("hotn", 1, 64).await;
    let raw = |mib| strata_tests::new_disk(vm, mib, DiskFormat::Raw, Provisioning::Thin);
    task_ok(c, c.call::<m::VmDiskCreate>(raw(1)).await.unwrap()).await;
    let dir = lab.datastore().join("hotn");

    let off = boot_native(&lab, vm).await;
    send(&lab, vm, "blkslot 4\n").await;
    let (_, off) = wait_console(c, vm, off, "virtio-blk 0 sectors", BOOT)
        .await
        .unwrap();

    // Added while the guest runs: the guest is told, sees the capacity and writes to it.
    task_ok(c, c.call::<m::VmDiskCreate>(raw(2)).await.unwrap()).await;
    send(&lab, vm, "blkcap\n").await;
    let (_, off) = wait_console(
        c,
        vm,
        off,
        "capacity 4096 sectors, configuration changed",
        BOOT,
    )
    .await
    .unwrap();
    send(&lab, vm, "blkw 9 hot-added-native\n").await;
    wait_console(c, vm, off, "sector 9 written", BOOT)
        .await
        .unwrap();
    let info = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(info.spec.disks.len(), 2, "the disk is in the configuration");
    let hot = dir.join(&info.spec.disks[1].file);
    assert_eq!(
        &std::fs::read(&hot).unwrap()[9 * 512..9 * 512 + 16],
        b"hot-added-native"
    );

    // The slot holds one disk: a third is refused and leaves nothing behind.
    let t = c.call::<m::VmDiskCreate>(raw(1)).await.unwrap();
    let e = task_error(c, t).await;
    assert!(e.contains("2 disks per VM"), "{e}");
    let after = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(after.spec.disks, info.spec.disks);
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".raw"))
        })
        .count();
    assert_eq!(files, 2, "no file left from the refused disk");

    // A new power-on boots with both disks, the added one in the hot-add slot.
    power_off(&lab, vm, true).await;
    let off = boot_native(&lab, vm).await;
    send(&lab, vm, "blkslot 4\nblkr 9\n").await;
    wait_console(c, vm, off, "sector 9: hot-added-native", BOOT)
        .await
        .unwrap();
    power_off(&lab, vm, true).await;
}
