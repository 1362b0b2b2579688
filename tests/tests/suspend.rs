//! Suspend / resume and pause / unpause end to end, through the manager, on both engines:
//! the native engine with the test guest (its line counter and dirty-page checksum live in
//! guest memory) and the qemu engine with the Debian kernel + busybox guest (a shell variable
//! and a /tmp file live in guest RAM). Needs /dev/kvm and QEMU (fails clearly without them).

use std::path::Path;
use std::time::{Duration, Instant};

use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_shared::Client;
use strata_tests::{
    bins, boot, console_run, power_on, require_kvm, task_error, task_ok, wait_console, Lab,
};
use uuid::Uuid;

const MARKER: &str = strata_hostagent::vmm::TESTGUEST_READY_MARKER;
const LEASE: &str = strata_hostagent::datastore::lease::LEASE_FILE;

async fn get(c: &Client, vm: Uuid) -> VmInfo {
    c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap()
}

async fn send(c: &Client, vm: Uuid, text: &str) {
    c.call::<m::VmConsoleSend>(m::ConsoleSendParams {
        id: vm,
        data: text.into(),
    })
    .await
    .unwrap();
}

async fn suspend(c: &Client, vm: Uuid) -> VmInfo {
    let t = c.call::<m::VmSuspend>(IdParams { id: vm }).await.unwrap();
    let done = task_ok(c, t).await;
    serde_json::from_value(done.result.unwrap()).unwrap()
}

async fn pause(c: &Client, vm: Uuid, on: bool) -> TaskInfo {
    if on {
        c.call::<m::VmPause>(IdParams { id: vm }).await.unwrap()
    } else {
        c.call::<m::VmUnpause>(IdParams { id: vm }).await.unwrap()
    }
}

async fn events(c: &Client, vm: Uuid) -> Vec<String> {
    c.call::<m::EventList>(EventListParams {
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

fn pid_of(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("vmm.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn saved(dir: &Path) -> strata_hostagent::engine::saved_state::SavedState {
    strata_hostagent::engine::saved_state::read(dir).expect("a complete saved state")
}

/// Checks what suspending must leave: state Suspended, process gone, lease released, state
/// saved in the VM's directory.
async fn assert_suspended(c: &Client, vm: Uuid, dir: &Path, pid: u32) {
    assert_eq!(get(c, vm).await.power_state, PowerState::Suspended);
    assert!(
        strata_hostagent::engine::process::wait_gone(pid, Duration::from_secs(10)).await,
        "the VM process {pid} ended"
    );
    assert!(!dir.join(LEASE).exists(), "the datastore lease is released");
    assert!(dir.join("suspend").join("saved.json").is_file());
}

/// The dirty-page checksum the test guest prints for its `generation`-th `dirty n` run.
fn checksum(generation: u64, n: u64) -> u64 {
    n * (generation << 32) + n * (n - 1) / 2
}

async fn restart_agent(lab: &mut Lab) {
    lab.agent.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let h = lab
            .client
            .call::<m::HostGet>(IdParams { id: lab.host })
            .await
            .unwrap();
        if h.connection_state == ConnectionState::Connected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "host did not reconnect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_vm_suspends_resumes_and_pauses() {
    require_kvm();
    let mut lab = Lab::start(&bins!()).await;
    let c = &lab.client.clone();
    let vm = lab.create_native_vm("sus01", 2, 64).await;
    let dir = lab.datastore().join("sus01");

    // Suspending a powered-off VM is refused.
    let t = c.call::<m::VmSuspend>(IdParams { id: vm }).await.unwrap();
    let e = task_error(c, t).await;
    assert!(e.contains("powered off"), "{e}");

    power_on(c, vm).await;
    let (_, at) = wait_console(c, vm, 0, MARKER, Duration::from_secs(60))
        .await
        .unwrap();
    send(c, vm, "dirty 300\n").await;
    let want = format!("dirtied 300 pages, checksum {}", checksum(1, 300));
    let (_, at) = wait_console(c, vm, at, &want, Duration::from_secs(30))
        .await
        .unwrap();
    send(c, vm, "two\n").await;
    let (_, at) = wait_console(c, vm, at, "line 2", Duration::from_secs(30))
        .await
        .unwrap();

    // Pause: the vCPUs stop, so typed input is not echoed until the VM runs again.
    task_ok(c, pause(c, vm, true).await).await;
    assert_eq!(get(c, vm).await.power_state, PowerState::Paused);
    let e = task_error(c, pause(c, vm, true).await).await;
    assert!(e.contains("already paused"), "{e}");
    send(c, vm, "while-paused\n").await;
    assert!(
        wait_console(c, vm, at, "while-paused", Duration::from_secs(2))
            .await
            .is_err(),
        "a paused guest does not answer"
    );
    task_ok(c, pause(c, vm, false).await).await;
    assert_eq!(get(c, vm).await.power_state, PowerState::PoweredOn);
    let (_, at) = wait_console(c, vm, at, "line 3", Duration::from_secs(30))
        .await
        .unwrap();
    let e = task_error(c, pause(c, vm, false).await).await;
    assert!(e.contains("not paused"), "{e}");

    // Suspend: state saved, process gone, lease released.
    let pid = pid_of(&dir);
    let started = Instant::now();
    let info = suspend(c, vm).await;
    let suspend_took = started.elapsed();
    assert_eq!(info.power_state, PowerState::Suspended);
    assert_suspended(c, vm, &dir, pid).await;
    let size = saved(&dir).bytes;
    assert!(dir.join("suspend").join("vm.snap").is_file());
    let e = task_error(
        c,
        c.call::<m::VmSuspend>(IdParams { id: vm }).await.unwrap(),
    )
    .await;
    assert!(e.contains("already suspended"), "{e}");
    let e = task_error(c, pause(c, vm, true).await).await;
    assert!(e.contains("not running"), "{e}");

    // A host agent restart still reports it suspended (from the saved state on disk).
    restart_agent(&mut lab).await;
    let agent = lab.agent.client("root").await;
    let on_host = agent
        .call::<strata_shared::api::agent::VmGet>(IdParams { id: vm })
        .await
        .unwrap();
    assert_eq!(on_host.power_state, PowerState::Suspended);
    assert_eq!(get(c, vm).await.power_state, PowerState::Suspended);

    // Power on resumes: the guest's counters in memory go on where they were.
    let started = Instant::now();
    power_on(c, vm).await;
    let resume_took = started.elapsed();
    assert_eq!(get(c, vm).await.power_state, PowerState::PoweredOn);
    assert_ne!(pid_of(&dir), pid, "a new process");
    assert!(
        !dir.join("suspend").exists(),
        "the saved state is deleted after resuming"
    );
    send(c, vm, "check\n").await;
    let (text, at) = wait_console(
        c,
        vm,
        at,
        &format!("checksum {} ok", checksum(1, 300)),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(
        text.contains("line 4"),
        "the line counter went on from 3:\n{text}"
    );
    assert!(
        !text.contains("long mode"),
        "resumed, not booted again:\n{text}"
    );
    send(c, vm, "dirty 300\n").await;
    let want = format!("dirtied 300 pages, checksum {}", checksum(2, 300));
    wait_console(c, vm, at, &want, Duration::from_secs(30))
        .await
        .unwrap();
    let msgs = events(c, vm).await;
    for word in ["paused", "unpaused", "suspended", "resumed"] {
        assert!(
            msgs.iter().any(|m| m.contains(word)),
            "an event says {word}: {msgs:?}"
        );
    }
    eprintln!(
        "native 64 MiB, 2 vCPUs: suspend {suspend_took:?}, resume {resume_took:?}, saved state {size} bytes on disk"
    );

    // A corrupt saved state: power-on fails with the reason; the VM stays suspended and the
    // state is kept.
    let pid = pid_of(&dir);
    suspend(c, vm).await;
    assert_suspended(c, vm, &dir, pid).await;
    // Cut short: the stream ends inside guest memory.
    let snap = dir.join("suspend").join("vm.snap");
    let len = std::fs::metadata(&snap).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&snap)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let t = c.call::<m::VmPowerOn>(IdParams { id: vm }).await.unwrap();
    let e = task_error(c, t).await;
    eprintln!("native resume of a corrupt state: {e}");
    assert!(e.contains("saved state"), "{e}");
    assert_eq!(get(c, vm).await.power_state, PowerState::Suspended);
    assert!(dir.join("suspend").join("saved.json").is_file());
    assert!(
        !dir.join(LEASE).exists(),
        "the failed resume let go of the lease"
    );

    // Powering off a suspended VM discards its saved state.
    let t = c
        .call::<m::VmPowerOff>(m::PowerOffParams {
            id: vm,
            hard: true,
            timeout_secs: None,
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    assert_eq!(get(c, vm).await.power_state, PowerState::PoweredOff);
    assert!(!dir.join("suspend").exists());
    // And the next power-on boots afresh.
    power_on(c, vm).await;
    let (text, _) = wait_console(c, vm, at, MARKER, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(text.contains("long mode"), "{text}");
    print_timings(&lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_vm_suspends_resumes_and_pauses() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client.clone();
    let vm = lab.create_guest_vm("deb01", 1).await;
    let dir = lab.datastore().join("deb01");
    let at = boot(c, vm).await;
    // A shell variable and a tmpfs file: both live only in guest RAM.
    let (_, at) = console_run(
        c,
        vm,
        at,
        "X=mark-$((6*7))-ok; echo set-$X; echo file-$((9*11)) > /tmp/f",
        "set-mark-42-ok",
    )
    .await;

    // Pause and unpause through QMP.
    task_ok(c, pause(c, vm, true).await).await;
    assert_eq!(get(c, vm).await.power_state, PowerState::Paused);
    let e = task_error(c, pause(c, vm, true).await).await;
    assert!(e.contains("already paused"), "{e}");
    task_ok(c, pause(c, vm, false).await).await;
    assert_eq!(get(c, vm).await.power_state, PowerState::PoweredOn);
    let (_, at) = console_run(c, vm, at, "echo alive-$((5*5))", "alive-25").await;

    let pid = pid_of(&dir);
    let started = Instant::now();
    let info = suspend(c, vm).await;
    let suspend_took = started.elapsed();
    assert_eq!(info.power_state, PowerState::Suspended);
    assert_suspended(c, vm, &dir, pid).await;
    assert!(dir.join("suspend").join("qemu.state").is_file());
    let size = saved(&dir).bytes;

    let started = Instant::now();
    power_on(c, vm).await;
    let resume_took = started.elapsed();
    assert_eq!(get(c, vm).await.power_state, PowerState::PoweredOn);
    assert!(!dir.join("suspend").exists());
    let (_, at) = console_run(c, vm, at, "echo got-$X", "got-mark-42-ok").await;
    console_run(c, vm, at, "cat /tmp/f", "file-99").await;
    eprintln!(
        "qemu (TCG) 256 MiB, 1 vCPU: suspend {suspend_took:?}, resume {resume_took:?}, saved state {size} bytes on disk"
    );

    // A corrupt migration stream: QEMU refuses it, the VM stays suspended.
    let pid = pid_of(&dir);
    suspend(c, vm).await;
    assert_suspended(c, vm, &dir, pid).await;
    let state = dir.join("suspend").join("qemu.state");
    let mut bytes = std::fs::read(&state).unwrap();
    bytes.truncate(bytes.len() / 3);
    std::fs::write(&state, bytes).unwrap();
    let t = c.call::<m::VmPowerOn>(IdParams { id: vm }).await.unwrap();
    let e = task_error(c, t).await;
    eprintln!("qemu resume of a corrupt state: {e}");
    assert!(e.contains("saved state"), "{e}");
    assert_eq!(get(c, vm).await.power_state, PowerState::Suspended);
    assert!(state.is_file(), "the saved state is kept");
    assert!(!dir.join(LEASE).exists());
    // Garbage: refused before QEMU starts.
    std::fs::write(&state, b"not a migration stream").unwrap();
    let t = c.call::<m::VmPowerOn>(IdParams { id: vm }).await.unwrap();
    let e = task_error(c, t).await;
    assert!(e.contains("not a QEMU migration stream"), "{e}");
    assert_eq!(get(c, vm).await.power_state, PowerState::Suspended);
    print_timings(&lab);
}

/// The host agent's own account of each suspend and resume (milliseconds, bytes).
fn print_timings(lab: &Lab) {
    for line in lab.agent.log().lines() {
        if line.contains("VM suspended") || line.contains("VM resumed") {
            eprintln!("agent: {line}");
        }
    }
}

fn cpu_reservation(mhz: u64) -> ResourceAllocation {
    ResourceAllocation {
        cpu: Allocation {
            reservation: mhz,
            ..Default::default()
        },
        memory: Allocation::default(),
    }
}

/// Admission control: a paused VM keeps its reservation, a suspended one holds none (like a
/// powered-off VM), and resuming it is admitted like a power-on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_vms_reserve_nothing_and_paused_ones_keep_their_reservation() {
    require_kvm();
    let mut lab = Lab::start(&bins!()).await;
    let c = &lab.client.clone();
    let capacity = c
        .call::<m::PoolUsageGet>(IdParams { id: lab.host })
        .await
        .unwrap()[0]
        .cpu
        .reservation;
    let a = lab.create_native_vm("resA", 1, 32).await;
    let b = lab.create_native_vm("resB", 1, 32).await;
    for (vm, mhz) in [(a, capacity), (b, capacity / 2)] {
        c.call::<m::VmSetAllocation>(VmAllocationParams {
            id: vm,
            allocation: cpu_reservation(mhz),
        })
        .await
        .unwrap();
    }
    let refused = |e: strata_shared::ClientError| {
        assert_eq!(
            e.code(),
            Some(strata_shared::ErrorCode::InsufficientResources),
            "{e}"
        )
    };
    power_on(c, a).await;
    wait_console(c, a, 0, MARKER, Duration::from_secs(60))
        .await
        .unwrap();
    refused(
        c.call::<m::VmPowerOn>(IdParams { id: b })
            .await
            .unwrap_err(),
    );
    task_ok(c, pause(c, a, true).await).await;
    refused(
        c.call::<m::VmPowerOn>(IdParams { id: b })
            .await
            .unwrap_err(),
    );
    // A restarted host agent asks the engine and still reports it paused.
    restart_agent(&mut lab).await;
    let on_host = lab
        .agent
        .client("root")
        .await
        .call::<strata_shared::api::agent::VmGet>(IdParams { id: a })
        .await
        .unwrap();
    assert_eq!(on_host.power_state, PowerState::Paused);
    assert_eq!(get(c, a).await.power_state, PowerState::Paused);

    // Suspending the paused VM frees its reservation.
    suspend(c, a).await;
    power_on(c, b).await;
    // And resuming it is admitted like any power-on: refused while B holds its share, with
    // the VM still suspended and its state kept.
    refused(
        c.call::<m::VmPowerOn>(IdParams { id: a })
            .await
            .unwrap_err(),
    );
    assert_eq!(get(c, a).await.power_state, PowerState::Suspended);
    assert!(saved_state_kept(&lab.datastore().join("resA")));
    let t = c
        .call::<m::VmPowerOff>(m::PowerOffParams {
            id: b,
            hard: true,
            timeout_secs: None,
        })
        .await
        .unwrap();
    task_ok(c, t).await;
    let from = c
        .call::<m::VmConsoleRead>(m::ConsoleReadParams {
            id: a,
            offset: -1,
            max_bytes: None,
        })
        .await
        .unwrap()
        .size;
    power_on(c, a).await;
    assert_eq!(get(c, a).await.power_state, PowerState::PoweredOn);
    // It was paused when suspended; resumed, it runs and answers.
    send(c, a, "after\n").await;
    let (text, _) = wait_console(c, a, from, "line 1", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!text.contains("long mode"), "resumed, not booted:\n{text}");
}

fn saved_state_kept(dir: &Path) -> bool {
    strata_hostagent::engine::saved_state::read(dir).is_some()
}
