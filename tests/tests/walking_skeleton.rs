//! The walking skeleton end to end: real manager and host agent processes on loopback, a
//! real Linux guest on the qemu engine, driven through the SDK.

use std::time::Duration;

use strata_shared::api::manager as m;
use strata_shared::model::*;
use strata_tests::{bins, power_on, task_ok, wait_console, Lab, READY_MARKER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_lifecycle_end_to_end() {
    let lab = Lab::start(&bins!()).await;
    let c = &lab.client;

    let hosts = c.call::<m::HostList>(Empty {}).await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].connection_state, ConnectionState::Connected);
    let facts = hosts[0].facts.clone().expect("host facts");
    assert!(facts.cpu_count >= 1 && facts.memory_mib > 0);
    let inv = c.call::<m::InventoryGet>(Empty {}).await.unwrap();
    assert_eq!(
        inv.datastores.len(),
        1,
        "the agent's datastore is in the inventory"
    );

    // Subscribe to see pushed notifications while the VM goes through its life.
    c.call::<m::InventorySubscribe>(Empty {}).await.unwrap();
    let mut notes = c.notifications();

    let vm = lab.create_guest_vm("web01", 1).await;
    let dir = lab.datastore().join("web01");
    assert!(
        dir.join("web01.toml").is_file(),
        "the VM is a directory with NAME.toml"
    );

    power_on(c, vm).await;
    let info = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap();
    assert_eq!(info.power_state, PowerState::PoweredOn);
    let (boot_text, offset) = wait_console(c, vm, 0, READY_MARKER, Duration::from_secs(120))
        .await
        .unwrap();
    assert!(
        boot_text.contains("Linux version"),
        "the kernel's own output is in the console log"
    );
    assert!(
        dir.join("serial.log").is_file(),
        "console goes to NAME/serial.log"
    );

    // Run a command through the serial console and read its output.
    c.call::<m::VmConsoleSend>(m::ConsoleSendParams {
        id: vm,
        data: "echo hello-$((6*7))\n".into(),
    })
    .await
    .unwrap();
    let (out, _) = wait_console(c, vm, offset, "hello-42", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(out.contains("hello-42"));

    // Reset: the guest boots again and prints the marker again.
    let before = c
        .call::<m::VmConsoleRead>(m::ConsoleReadParams {
            id: vm,
            offset: -1,
            max_bytes: None,
        })
        .await
        .unwrap()
        .size;
    let t = c.call::<m::VmReset>(IdParams { id: vm }).await.unwrap();
    task_ok(c, t).await;
    let (_, offset) = wait_console(c, vm, before, READY_MARKER, Duration::from_secs(120))
        .await
        .unwrap();
    c.call::<m::VmConsoleSend>(m::ConsoleSendParams {
        id: vm,
        data: "echo again-$((7*7))\n".into(),
    })
    .await
    .unwrap();
    wait_console(c, vm, offset, "again-49", Duration::from_secs(30))
        .await
        .unwrap();

    // Guest shutdown (ACPI power button) with a timeout, then hard stop if needed.
    let t = c
        .call::<m::VmPowerOff>(m::PowerOffParams {
            id: vm,
            hard: false,
            timeout_secs: Some(30),
        })
        .await
        .unwrap();
    let done = task_ok(c, t).await;
    let off: VmInfo = serde_json::from_value(done.result.unwrap()).unwrap();
    assert_eq!(off.power_state, PowerState::PoweredOff);
    assert!(
        !dir.join("vmm.pid").exists() || {
            let pid: u32 = std::fs::read_to_string(dir.join("vmm.pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        },
        "the VM process is gone"
    );

    // Powering off twice is refused with InvalidState, as a failed task.
    let t = c
        .call::<m::VmPowerOff>(m::PowerOffParams {
            id: vm,
            hard: true,
            timeout_secs: None,
        })
        .await
        .unwrap();
    let done = c.wait_task(t.id, Duration::from_secs(60)).await.unwrap();
    assert_eq!(done.state, TaskState::Error);
    assert_eq!(
        done.error.unwrap().code,
        strata_shared::ErrorCode::InvalidState
    );

    // Every state change is an event.
    let events = c
        .call::<m::EventList>(EventListParams {
            object: Some(vm),
            after_id: None,
            limit: None,
        })
        .await
        .unwrap();
    let kinds: Vec<&str> = events.iter().rev().map(|e| e.kind.as_str()).collect();
    for k in ["vm.created", "vm.poweredOn", "vm.poweredOff"] {
        assert!(kinds.contains(&k), "missing event {k} in {kinds:?}");
    }
    assert!(events
        .iter()
        .any(|e| e.kind == "vm.poweredOn" && e.user.as_deref() == Some("admin")));
    let off_event = events.iter().find(|e| e.kind == "vm.poweredOff").unwrap();
    assert!(
        off_event.message.contains("guest shut down"),
        "the guest shut down on the ACPI power button, not by a hard stop: {}",
        off_event.message
    );

    // Tasks are recorded and were pushed as notifications.
    let tasks = c
        .call::<m::TaskList>(TaskListParams::default())
        .await
        .unwrap();
    assert!(tasks
        .iter()
        .any(|t| t.operation == "vm.powerOn" && t.state == TaskState::Success));
    let mut saw_done = false;
    let mut saw_vm_delta = false;
    while let Ok(n) = notes.try_recv() {
        saw_done |= n.method == "task.done";
        saw_vm_delta |= n.method == "inventory.changed" && n.params["object"]["kind"] == "vm";
    }
    assert!(
        saw_done && saw_vm_delta,
        "task.done and inventory.changed were pushed"
    );

    // Destroy removes the files and the inventory entry.
    let t = c.call::<m::VmDestroy>(IdParams { id: vm }).await.unwrap();
    task_ok(c, t).await;
    assert!(!dir.exists(), "VM directory removed");
    let err = c.call::<m::VmGet>(IdParams { id: vm }).await.unwrap_err();
    assert_eq!(err.code(), Some(strata_shared::ErrorCode::NotFound));
}
