//! Restarts and crashes: VMs outlive their host agent, the agent re-attaches, the manager
//! keeps everything across a restart, and a host whose certificate changes is not trusted.

use std::time::Duration;

use strata_shared::api::{agent as agent_api, manager as m};
use strata_shared::model::*;
use strata_shared::{Client, Trust};
use strata_tests::{bins, power_on, wait_console, Lab, PASSWORD, READY_MARKER};
use uuid::Uuid;

async fn wait_host_state(c: &Client, host: Uuid, want: ConnectionState) -> HostInfo {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let h = c.call::<m::HostGet>(IdParams { id: host }).await.unwrap();
        if h.connection_state == want {
            return h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "host stayed {:?} ({:?})",
            h.connection_state,
            h.state_reason
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_power(c: &Client, vm: Uuid, want: PowerState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
        if v.power_state == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "VM stayed {}",
            v.power_state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn alive(pid: u32) -> bool {
    strata_hostagent::engine::process::alive(pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_survives_a_host_agent_crash_and_the_agent_reattaches() {
    let mut lab = Lab::start(&bins!()).await;
    let vm = lab.create_guest_vm("survivor", 1).await;
    power_on(&lab.client, vm).await;
    let (_, offset) = wait_console(&lab.client, vm, 0, READY_MARKER, Duration::from_secs(120))
        .await
        .unwrap();
    let pid: u32 = std::fs::read_to_string(lab.datastore().join("survivor/vmm.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    lab.agent.kill();
    wait_host_state(&lab.client, lab.host, ConnectionState::Disconnected).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        alive(pid),
        "the VM keeps running while its host agent is down"
    );

    lab.agent.restart();
    wait_host_state(&lab.client, lab.host, ConnectionState::Connected).await;
    let v = lab
        .client
        .call::<m::VmGet>(IdParams { id: vm })
        .await
        .unwrap();
    assert_eq!(v.power_state, PowerState::PoweredOn);
    // The agent itself reports it running with the same process.
    let direct = Client::connect(
        &lab.agent.address,
        Trust::Thumbprint(lab.agent.thumbprint.clone()),
    )
    .await
    .unwrap();
    direct.login("root", PASSWORD).await.unwrap();
    let on_host = direct
        .call::<agent_api::VmGet>(IdParams { id: vm })
        .await
        .unwrap();
    assert_eq!(
        (on_host.power_state, on_host.pid),
        (PowerState::PoweredOn, Some(pid))
    );
    // And it is still usable: the console answers.
    lab.client
        .call::<m::VmConsoleSend>(m::ConsoleSendParams {
            id: vm,
            data: "echo after-$((20+3))\n".into(),
        })
        .await
        .unwrap();
    let (_, offset) = wait_console(&lab.client, vm, offset, "after-23", Duration::from_secs(30))
        .await
        .unwrap();

    // A guest that powers itself off is noticed and recorded.
    lab.client
        .call::<m::VmConsoleSend>(m::ConsoleSendParams {
            id: vm,
            data: "poweroff -f\n".into(),
        })
        .await
        .unwrap();
    wait_power(&lab.client, vm, PowerState::PoweredOff).await;
    assert!(!alive(pid));
    let _ = offset;
    let events = lab
        .client
        .call::<m::EventList>(EventListParams {
            object: None,
            after_id: None,
            limit: None,
        })
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.kind == "host.disconnected"));
    assert!(events
        .iter()
        .any(|e| e.kind == "vm.poweredOff" && e.message.contains("guest powered off")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_restart_keeps_inventory_tasks_and_events() {
    let mut lab = Lab::start(&bins!()).await;
    let vm = lab.create_guest_vm("keeper", 1).await;
    power_on(&lab.client, vm).await;
    let tasks_before = lab
        .client
        .call::<m::TaskList>(TaskListParams::default())
        .await
        .unwrap();
    let events_before = lab
        .client
        .call::<m::EventList>(EventListParams::default())
        .await
        .unwrap();

    let status = lab.server.stop().expect("server was running");
    assert!(status.success(), "SIGTERM is a clean shutdown: {status:?}");
    assert!(lab.server.log().contains("manager stopped"));
    lab.server.restart();
    let c = lab.server.client("admin").await;
    let h = wait_host_state(&c, lab.host, ConnectionState::Connected).await;
    assert_eq!(h.address, lab.agent.address);
    let v = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(
        (v.name.as_str(), v.power_state),
        ("keeper", PowerState::PoweredOn)
    );
    let tasks_after = c
        .call::<m::TaskList>(TaskListParams::default())
        .await
        .unwrap();
    for t in &tasks_before {
        assert!(
            tasks_after
                .iter()
                .any(|a| a.id == t.id && a.state == t.state),
            "task {} kept",
            t.description
        );
    }
    let events_after = c
        .call::<m::EventList>(EventListParams::default())
        .await
        .unwrap();
    for e in &events_before {
        assert!(events_after.contains(e), "event {} kept", e.kind);
    }
    let t = c
        .call::<m::VmPowerOff>(m::PowerOffParams {
            id: vm,
            hard: true,
            timeout_secs: None,
        })
        .await
        .unwrap();
    strata_tests::task_ok(&c, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_a_changed_certificate_is_not_trusted() {
    let mut lab = Lab::start(&bins!()).await;
    lab.agent.stop();
    std::fs::remove_dir_all(lab.agent.data_dir.join("tls")).unwrap();
    let old = lab.agent.thumbprint.clone();
    lab.agent.restart();
    assert_ne!(lab.agent.thumbprint, old, "a new certificate was generated");
    let h = wait_host_state(&lab.client, lab.host, ConnectionState::NotTrusted).await;
    let reason = h.state_reason.unwrap();
    assert!(
        reason.contains(&lab.agent.thumbprint) && reason.contains(&old),
        "{reason}"
    );
    let events = lab
        .client
        .call::<m::EventList>(EventListParams::default())
        .await
        .unwrap();
    assert!(events
        .iter()
        .any(|e| e.kind == "host.certificateChanged" && e.severity == Severity::Error));
    let e = lab
        .client
        .call::<m::VmCreate>(m::VmCreateParams {
            name: "x".into(),
            host: lab.host,
            datastore: None,
            spec: VmSpec {
                vcpus: 1,
                memory_mib: 64,
                engine: Engine::Qemu,
                machine: Machine::Microvm,
                boot: BootSpec {
                    kernel: "/k".into(),
                    initrd: None,
                    cmdline: String::new(),
                },
                allocation: Default::default(),
                disks: Vec::new(),
                template: false,
                nics: Vec::new(),
            },
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(strata_shared::ErrorCode::Unavailable));
}
