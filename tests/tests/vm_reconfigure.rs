//! `vm.reconfigure` end to end: a VM is renamed and given more vCPUs, memory and a new kernel
//! command line through the manager; the host agent's copy follows (the directory keeps its
//! name, a new VM with the old name gets the next directory), the guest boots with the new
//! memory, and refused requests — a running VM's vCPUs or memory, bad values, a name in use —
//! change nothing on the manager or the host. The CLI's `strata vm reconfigure` does the same.

use std::time::Duration;

use strata_shared::api::{agent as agent_api, manager as m};
use strata_shared::model::*;
use strata_shared::{ClientError, ErrorCode};
use strata_tests::{boot, console_run, power_off, task_error, task_ok, Lab};
use uuid::Uuid;

/// The call's error code and message (the call itself must fail, before any task).
fn refused<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (ErrorCode, String) {
    match r {
        Err(ClientError::Rpc(e)) => (e.code, e.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn reconfigure(lab: &Lab, p: m::VmReconfigureParams) -> Result<TaskInfo, ClientError> {
    lab.client.call::<m::VmReconfigure>(p).await
}

/// The VM as the manager and as the host agent report it.
async fn both(lab: &Lab, agent: &strata_shared::Client, id: Uuid) -> (VmInfo, VmInfo) {
    let on_manager = lab.client.call::<m::VmGet>(IdParams { id }).await.unwrap();
    let on_host = agent
        .call::<agent_api::VmGet>(IdParams { id })
        .await
        .unwrap();
    (on_manager, on_host)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_are_renamed_and_resized_and_refusals_change_nothing() {
    let lab = Lab::start(&strata_tests::bins!()).await;
    let agent = lab.agent.client("root").await;
    let vm = lab.create_guest_vm("cfg01", 1).await;
    let other = lab.create_guest_vm("cfg02", 1).await;

    // Rename and resize in one call, watched through inventory notifications.
    let mut notes = lab.client.notifications();
    lab.client
        .call::<m::InventorySubscribe>(Empty {})
        .await
        .unwrap();
    let t = reconfigure(
        &lab,
        m::VmReconfigureParams {
            id: vm,
            name: Some("cfg01-big".into()),
            vcpus: Some(2),
            memory_mib: Some(384),
            cmdline: Some("strata.test=reconfigured".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(t.description, "Reconfigure VM cfg01");
    let done = task_ok(&lab.client, t).await;
    let reported: VmInfo = serde_json::from_value(done.result.unwrap()).unwrap();
    assert_eq!(reported.name, "cfg01-big");
    let (mgr, host) = both(&lab, &agent, vm).await;
    for v in [&mgr, &host] {
        assert_eq!(v.name, "cfg01-big");
        assert_eq!((v.spec.vcpus, v.spec.memory_mib), (2, 384));
        assert_eq!(v.spec.boot.cmdline, "strata.test=reconfigured");
    }
    // The delta reached subscribers.
    let announced = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = notes.recv().await.unwrap();
            if n.method != strata_shared::api::notifications::INVENTORY_CHANGED {
                continue;
            }
            if let Ok(InventoryChange::Upsert { object }) = serde_json::from_value(n.params) {
                if let InventoryObject::Vm(v) = *object {
                    if v.id == vm && v.name == "cfg01-big" {
                        return v;
                    }
                }
            }
        }
    })
    .await
    .expect("an inventory.changed upsert of the renamed VM");
    assert_eq!(announced.spec.memory_mib, 384);
    // An event says what changed, in words.
    let events = lab
        .client
        .call::<m::EventList>(EventListParams {
            object: Some(vm),
            ..Default::default()
        })
        .await
        .unwrap();
    let ev = events
        .iter()
        .find(|e| e.kind == "vm.reconfigured")
        .expect("a vm.reconfigured event");
    assert!(
        ev.message.contains("renamed to cfg01-big")
            && ev.message.contains("2 vCPUs (was 1)")
            && ev.message.contains("384 MiB memory (was 256 MiB)"),
        "{}",
        ev.message
    );
    assert_eq!(ev.user.as_deref(), Some("admin"));

    // The directory keeps its name; its config carries the new one.
    let dir = lab.datastore().join("cfg01");
    let toml = std::fs::read_to_string(dir.join("cfg01.toml")).unwrap();
    assert!(toml.contains("display_name = \"cfg01-big\""), "{toml}");
    assert!(!lab.datastore().join("cfg01-big").exists());

    // The old name is free again: a new VM gets it, in the next free directory.
    let again = lab.create_guest_vm("cfg01", 1).await;
    assert!(lab
        .datastore()
        .join("cfg01_1")
        .join("cfg01_1.toml")
        .exists());
    let (mgr_again, host_again) = both(&lab, &agent, again).await;
    assert_eq!(
        (mgr_again.name.as_str(), host_again.name.as_str()),
        ("cfg01", "cfg01")
    );

    // Refused at once, nothing changed: bad values…
    let before = both(&lab, &agent, vm).await;
    for (p, words) in [
        (
            m::VmReconfigureParams {
                id: vm,
                ..Default::default()
            },
            "nothing to change",
        ),
        (
            m::VmReconfigureParams {
                id: vm,
                vcpus: Some(0),
                ..Default::default()
            },
            "vcpus must be between 1 and 64",
        ),
        (
            m::VmReconfigureParams {
                id: vm,
                memory_mib: Some(8),
                name: Some("cfg01-small".into()),
                ..Default::default()
            },
            "memoryMib must be between",
        ),
        (
            m::VmReconfigureParams {
                id: vm,
                name: Some("a/b".into()),
                ..Default::default()
            },
            "must not contain '/'",
        ),
        (
            m::VmReconfigureParams {
                id: vm,
                cmdline: Some("x\ny".into()),
                ..Default::default()
            },
            "control characters",
        ),
    ] {
        let (code, msg) = refused(reconfigure(&lab, p.clone()).await);
        assert_eq!(code, ErrorCode::InvalidArgument, "{p:?}: {msg}");
        assert!(msg.contains(words), "{p:?}: {msg}");
    }
    // …a name another VM of the datacenter has…
    let (code, msg) = refused(
        reconfigure(
            &lab,
            m::VmReconfigureParams {
                id: vm,
                name: Some("cfg02".into()),
                vcpus: Some(1),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(code, ErrorCode::Conflict, "{msg}");
    assert_eq!(msg, "a VM named cfg02 already exists");
    assert_eq!(both(&lab, &agent, vm).await, before);

    // The new settings are what the guest boots with.
    let offset = boot(&lab.client, vm).await;
    let (text, _) = console_run(
        &lab.client,
        vm,
        offset,
        "grep MemTotal /proc/meminfo; cat /proc/cmdline",
        "strata.test=reconfigured",
    )
    .await;
    let total_kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in {text:?}"));
    assert!(
        total_kib > 300 * 1024,
        "the guest sees {total_kib} KiB, not the 384 MiB it was given"
    );

    // …and a running VM's vCPUs or memory, on the manager and on the host directly.
    let before = both(&lab, &agent, vm).await;
    let (code, msg) = refused(
        reconfigure(
            &lab,
            m::VmReconfigureParams {
                id: vm,
                memory_mib: Some(512),
                ..Default::default()
            },
        )
        .await,
    );
    assert_eq!(code, ErrorCode::InvalidState, "{msg}");
    assert_eq!(
        msg,
        "VM cfg01-big is poweredOn: power it off to change its vCPUs or memory"
    );
    let direct = agent
        .call::<agent_api::VmReconfigure>(m::VmReconfigureParams {
            id: vm,
            vcpus: Some(4),
            ..Default::default()
        })
        .await;
    let (code, msg) = refused(direct);
    assert_eq!(code, ErrorCode::InvalidState, "{msg}");
    assert!(
        msg.contains("is powered on: power it off to change its vCPUs or memory"),
        "{msg}"
    );
    assert_eq!(both(&lab, &agent, vm).await, before);

    // A running VM may still be renamed (the same vCPU count is no change).
    let t = reconfigure(
        &lab,
        m::VmReconfigureParams {
            id: vm,
            name: Some("cfg01-live".into()),
            vcpus: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(t.description, "Rename VM cfg01-big to cfg01-live");
    task_ok(&lab.client, t).await;
    let (mgr, host) = both(&lab, &agent, vm).await;
    assert_eq!(
        (mgr.name.as_str(), host.name.as_str()),
        ("cfg01-live", "cfg01-live")
    );
    assert_eq!(mgr.power_state, PowerState::PoweredOn);
    power_off(&lab.client, vm).await;

    // The host refuses a name it already has on the datastore even when the manager does not
    // know it (here: the manager's own check is skipped by asking the host directly).
    let (code, msg) = refused(
        agent
            .call::<agent_api::VmReconfigure>(m::VmReconfigureParams {
                id: vm,
                name: Some("cfg02".into()),
                ..Default::default()
            })
            .await,
    );
    assert_eq!(code, ErrorCode::Conflict, "{msg}");

    // The CLI: strata vm reconfigure.
    let cli = |args: &[&str]| {
        std::process::Command::new(&strata_tests::bins!().cli)
            .args(args)
            .env("STRATA_URL", format!("wss://{}", lab.server.address))
            .env("STRATA_USERNAME", "admin")
            .env("STRATA_PASSWORD", strata_tests::PASSWORD)
            .env("STRATA_THUMBPRINT", &lab.server.thumbprint)
            .output()
            .unwrap()
    };
    let o = cli(&[
        "vm",
        "reconfigure",
        "cfg02",
        "--name",
        "cfg02-cli",
        "--memory",
        "320",
        "--cmdline",
        "",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Reconfigure VM cfg02: success"));
    let (mgr, host) = both(&lab, &agent, other).await;
    for v in [&mgr, &host] {
        assert_eq!((v.name.as_str(), v.spec.memory_mib), ("cfg02-cli", 320));
    }
    let o = cli(&["vm", "reconfigure", "cfg02-cli", "--cpus", "99"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("vcpus must be between 1 and 64"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A task that fails on the host (a VM the host lost track of) reports it and changes
    // nothing in the inventory: destroy cfg02's files behind the manager's back.
    agent
        .call::<agent_api::VmDestroy>(IdParams { id: other })
        .await
        .unwrap();
    let t = reconfigure(
        &lab,
        m::VmReconfigureParams {
            id: other,
            name: Some("cfg02-gone".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let err = task_error(&lab.client, t).await;
    assert!(err.contains("not found") || err.contains("no VM"), "{err}");
    let still = lab
        .client
        .call::<m::VmGet>(IdParams { id: other })
        .await
        .unwrap();
    assert_eq!(still.name, "cfg02-cli");
}
