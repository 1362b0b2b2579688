//! Two host agents sharing one datastore: a VM's on-disk lease decides which host may run it.

use std::time::{Duration, Instant};

use strata_shared::api::agent as a;
use strata_shared::model::*;
use strata_shared::{Client, ErrorCode, Trust};
use strata_tests::{bins, guest, Daemon, PASSWORD};

async fn direct(d: &Daemon) -> Client {
    let c = Client::connect_with_port(&d.address, Trust::Thumbprint(d.thumbprint.clone()), 9443)
        .await
        .unwrap();
    c.login("root", PASSWORD).await.unwrap();
    c
}

fn pids_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

fn kill9(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_decides_which_host_runs_a_shared_vm() {
    strata_tests::require_qemu();
    let bins = bins!();
    let dir = tempfile::Builder::new()
        .prefix("strata-e2e")
        .tempdir_in(strata_tests::scratch_root())
        .unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let ds = format!("shared={}", shared.display());
    let flags = ["--datastore", ds.as_str(), "--lease-secs", "2"];
    let mut ha = Daemon::agent_with(&bins, &dir.path().join("a"), 0, &flags);
    let mut hb = Daemon::agent_with(&bins, &dir.path().join("b"), 0, &flags);
    let g = guest();
    let spec = VmSpec {
        vcpus: 1,
        memory_mib: 128,
        engine: Engine::Qemu,
        machine: Machine::Microvm,
        boot: BootSpec {
            kernel: g.kernel.display().to_string(),
            initrd: Some(g.initrd.display().to_string()),
            cmdline: String::new(),
        },
        allocation: Default::default(),
        disks: Vec::new(),
        template: false,
        nics: Vec::new(),
    };
    let ca = direct(&ha).await;
    let vm = ca
        .call::<a::VmCreate>(a::AgentVmCreateParams {
            id: None,
            name: "twin".into(),
            datastore: Some("shared".into()),
            spec,
        })
        .await
        .unwrap();
    hb.restart(); // B finds the VM on the shared datastore
    let cb = direct(&hb).await;
    assert_eq!(
        cb.call::<a::VmGet>(IdParams { id: vm.id })
            .await
            .unwrap()
            .name,
        "twin"
    );

    // Two hosts race to power it on: exactly one wins, the other gets a clear error.
    let (ra, rb) = tokio::join!(
        ca.call::<a::VmPowerOn>(IdParams { id: vm.id }),
        cb.call::<a::VmPowerOn>(IdParams { id: vm.id })
    );
    assert!(
        ra.is_ok() != rb.is_ok(),
        "exactly one wins: {ra:?} / {rb:?}"
    );
    let (winner, loser, winner_daemon) = if ra.is_ok() {
        (&ca, &cb, &mut ha)
    } else {
        (&cb, &ca, &mut hb)
    };
    let e = match (ra, rb) {
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => e,
        _ => unreachable!("checked above"),
    };
    assert_eq!(e.code(), Some(ErrorCode::Conflict));
    assert!(e.to_string().contains("in use by host"), "{e}");
    // Destroying it from the other host is refused too.
    assert_eq!(
        loser
            .call::<a::VmDestroy>(IdParams { id: vm.id })
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::Conflict)
    );

    // Powered off on the winner, the loser may run it.
    winner
        .call::<a::VmPowerOff>(a::PowerOffParams {
            id: vm.id,
            hard: true,
            timeout_secs: None,
        })
        .await
        .unwrap();
    loser
        .call::<a::VmPowerOn>(IdParams { id: vm.id })
        .await
        .unwrap();
    loser
        .call::<a::VmPowerOff>(a::PowerOffParams {
            id: vm.id,
            hard: true,
            timeout_secs: None,
        })
        .await
        .unwrap();
    winner
        .call::<a::VmPowerOn>(IdParams { id: vm.id })
        .await
        .unwrap();
    let vm_pid = winner
        .call::<a::VmGet>(IdParams { id: vm.id })
        .await
        .unwrap()
        .pid
        .unwrap();

    // The winner's agent dies: the VM and its lease keeper live on, so the lease stays held
    // however long we wait.
    winner_daemon.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let e = loser
        .call::<a::VmPowerOn>(IdParams { id: vm.id })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");

    // The whole host dies (keeper and VM): the lease expires, but not before lease + margin.
    let lease = shared.join("twin").join(".strata-lease");
    for pid in pids_with(&format!("--lease\u{0}{}", lease.display())) {
        kill9(pid);
    }
    kill9(vm_pid);
    let died = Instant::now();
    let e = loser
        .call::<a::VmPowerOn>(IdParams { id: vm.id })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(ErrorCode::Conflict),
        "not taken before it expires: {e}"
    );
    let mut took = None;
    while died.elapsed() < Duration::from_secs(20) {
        if loser
            .call::<a::VmPowerOn>(IdParams { id: vm.id })
            .await
            .is_ok()
        {
            took = Some(died.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = took.expect("the lease was taken over");
    eprintln!("lease 2 s + margin 1 s: taken over {took:?} after the owner died");
    assert!(took >= Duration::from_secs(3), "taken too early: {took:?}");
    loser
        .call::<a::VmPowerOff>(a::PowerOffParams {
            id: vm.id,
            hard: true,
            timeout_secs: None,
        })
        .await
        .unwrap();
}
