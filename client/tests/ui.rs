//! The desktop client's UI, headless (egui_kittest), without a server: the connect dialog
//! reports failures in words; an inventory fed to the data model shows in the tree, the tree
//! filters, and a VM's context menu offers only the operations its power state allows.

use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use strata_client::app::model::{InventoryModel, Selection};
use strata_client::app::{ConnState, Settings, StrataApp};
use strata_shared::model::{
    AlarmChange, AlarmChangeState, AlarmInfo, AlarmKind, AlarmSeverity, BootSpec, ConnectionState,
    DatacenterInfo, Engine, HostInfo, Inventory, InventoryChange, InventoryObject, Machine,
    ObjectKind, ObjectRef, PowerState, VmInfo, VmSpec,
};
use uuid::Uuid;

fn harness(app: StrataApp) -> Harness<'static, StrataApp> {
    Harness::builder()
        .with_size([1280.0, 800.0])
        .build_ui_state(|ui, app: &mut StrataApp| app.ui(ui), app)
}

fn vm(name: &str, host: Uuid, power: PowerState) -> VmInfo {
    VmInfo {
        id: Uuid::new_v4(),
        name: name.into(),
        host: Some(host),
        pool: None,
        datastore: "datastore1".into(),
        spec: VmSpec {
            vcpus: 2,
            memory_mib: 512,
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
        power_state: power,
        running_engine: None,
        pid: None,
        created_ms: 0,
    }
}

/// An app that believes it is connected and holds a small inventory.
fn connected_app() -> (StrataApp, VmInfo, VmInfo) {
    let dc = Uuid::new_v4();
    let host = HostInfo {
        id: Uuid::new_v4(),
        name: "esx-like-01".into(),
        address: "127.0.0.1:9443".into(),
        datacenter: dc,
        cluster: None,
        thumbprint: String::new(),
        connection_state: ConnectionState::Connected,
        state_reason: None,
        facts: None,
    };
    let web = vm("web01", host.id, PowerState::PoweredOff);
    let db = vm("db01", host.id, PowerState::PoweredOn);
    let mut app = StrataApp::new(Settings::default());
    app.model.inventory = InventoryModel::from_snapshot(Inventory {
        datacenters: vec![DatacenterInfo {
            id: dc,
            name: "Datacenter".into(),
        }],
        hosts: vec![host],
        vms: vec![web.clone(), db.clone()],
        ..Default::default()
    });
    app.selection = Some(Selection::Datacenter(dc));
    app.conn = ConnState::Connected {
        address: "127.0.0.1:8443".into(),
        username: "admin".into(),
    };
    (app, web, db)
}

#[test]
fn an_unreachable_server_is_reported_in_words() {
    // A port nothing listens on: bind, learn it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut app = StrataApp::new(Settings::default());
    app.prefill(Some(format!("127.0.0.1:{port}")), Some("admin".into()));
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    let deadline = Instant::now() + Duration::from_secs(15);
    while h.query_by_label_contains("cannot connect").is_none() {
        assert!(Instant::now() < deadline, "no error shown");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(h.state().conn, ConnState::Disconnected);
}

#[test]
fn a_bad_address_is_refused_before_connecting() {
    let mut app = StrataApp::new(Settings::default());
    app.prefill(Some("ws://plain:80".into()), None);
    let mut h = harness(app);
    h.get_by_label("Connect").click();
    h.run_steps(3);
    assert!(h
        .query_by_label_contains("is not a server address")
        .is_some());
}

#[test]
fn the_tree_shows_the_inventory_filters_and_offers_valid_operations() {
    let (app, web, db) = connected_app();
    let mut h = harness(app);
    h.run_steps(3);
    for name in ["Datacenter", "esx-like-01", "web01", "db01"] {
        assert!(
            h.query_by_role_and_label(Role::Button, name).is_some(),
            "{name} in the tree"
        );
    }

    // A powered-off VM can be powered on, not reset.
    h.get_by_role_and_label(Role::Button, "web01")
        .click_secondary();
    h.run_steps(3);
    let power_on = h.get_by_label("Power on");
    assert!(!power_on.accesskit_node().is_disabled());
    assert!(h.get_by_label("Reset").accesskit_node().is_disabled());
    h.key_press(egui::Key::Escape);
    h.run_steps(3);

    // Deltas change the tree in place.
    let mut on = web.clone();
    on.power_state = PowerState::PoweredOn;
    h.state_mut()
        .model
        .inventory
        .apply(InventoryChange::Upsert {
            object: Box::new(InventoryObject::Vm(on)),
        });
    h.state_mut()
        .model
        .inventory
        .apply(InventoryChange::Remove {
            kind: strata_shared::model::ObjectKind::Vm,
            id: db.id,
        });
    h.run_steps(3);
    assert!(h.query_by_role_and_label(Role::Button, "db01").is_none());

    // Selecting shows the VM's summary; the filter hides what does not match.
    h.get_by_role_and_label(Role::Button, "web01").click();
    h.run_steps(3);
    assert!(h.query_all_by_label("Powered on").next().is_some());
    h.get_by_label("Filter").click();
    h.run_steps(1);
    h.get_by_label("Filter").type_text("nothing-like-this");
    h.run_steps(3);
    assert!(h.query_by_label("Nothing matches the filter.").is_some());
}

#[test]
fn the_vm_table_sorts_by_column() {
    let (app, _, _) = connected_app();
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Virtual Machines")
        .click();
    h.run_steps(3);
    // Both VMs are listed; clicking the Name header twice reverses the order.
    let names = |h: &Harness<'static, StrataApp>| -> Vec<String> {
        h.query_all_by_role(Role::Label)
            .filter_map(|n| {
                let n = n.accesskit_node();
                n.label().or_else(|| n.value())
            })
            .filter(|l| l == "web01" || l == "db01")
            .collect()
    };
    assert_eq!(names(&h), ["db01", "web01"]);
    h.get_by_label_contains("Name").click();
    h.run_steps(3);
    assert_eq!(names(&h), ["web01", "db01"]);
}

#[test]
fn the_vm_table_sorts_templates_as_templates_not_by_power_state() {
    let (mut app, web, _) = connected_app();
    let mut tpl = vm(
        "tpl01",
        web.host.unwrap_or_default(),
        PowerState::PoweredOff,
    );
    tpl.spec.template = true;
    app.model.inventory.apply(InventoryChange::Upsert {
        object: Box::new(InventoryObject::Vm(tpl)),
    });
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Virtual Machines")
        .click();
    h.run_steps(3);
    h.get_by_label_contains("State").click();
    h.run_steps(3);
    let names: Vec<String> = h
        .query_all_by_role(Role::Label)
        .filter_map(|n| {
            let n = n.accesskit_node();
            n.label().or_else(|| n.value())
        })
        .filter(|l| ["web01", "db01", "tpl01"].contains(&l.as_str()))
        .collect();
    // "Powered off" < "Powered on" < "Template": the template is not among the powered-off.
    assert_eq!(names, ["web01", "db01", "tpl01"]);
}

#[test]
fn alarms_mark_their_objects_and_are_listed_with_an_acknowledge_button() {
    let (mut app, web, _) = connected_app();
    let host = web.host.unwrap_or_default();
    let alarm =
        |kind: AlarmKind, target: ObjectRef, severity: AlarmSeverity, message: &str| AlarmInfo {
            id: Uuid::new_v4(),
            kind,
            target,
            severity,
            message: message.into(),
            triggered_ms: 1_700_000_000_000,
            acknowledged_by: None,
            acknowledged_ms: None,
        };
    let down = alarm(
        AlarmKind::HostConnection,
        ObjectRef {
            kind: ObjectKind::Host,
            id: host,
            name: "esx-like-01".into(),
        },
        AlarmSeverity::Critical,
        "Host esx-like-01 is not responding: connection refused",
    );
    let busy = alarm(
        AlarmKind::VmCpuUsage,
        ObjectRef {
            kind: ObjectKind::Vm,
            id: web.id,
            name: "web01".into(),
        },
        AlarmSeverity::Warning,
        "VM web01 uses 80% of its CPU",
    );
    app.model.alarms.reset(vec![down.clone(), busy]);
    app.selection = Some(Selection::Host(host));
    let mut h = harness(app);
    h.run_steps(3);
    // The tree (and the heading) mark the objects; the top bar counts them.
    assert!(h.query_all_by_label("Critical alarm").count() >= 2);
    assert!(h.query_by_label("Warning alarm").is_some());
    assert!(h.query_by_label("2 alarms").is_some());
    // The host's Summary lists its alarm with an Acknowledge button.
    assert!(h
        .query_by_label_contains("is not responding: connection refused")
        .is_some());
    h.get_by_label("Acknowledge").click();
    h.run_steps(2);
    // The bottom panel lists every alarm.
    h.get_by_label("2 alarms").click();
    h.run_steps(3);
    assert!(h.query_by_label("VM web01 uses 80% of its CPU").is_some());
    assert!(h.query_by_label("Triggered (UTC)").is_some());
    // Cleared: the marks go.
    h.state_mut().model.alarms.apply(AlarmChange {
        alarm: down,
        state: AlarmChangeState::Cleared,
    });
    h.run_steps(3);
    assert!(h.query_by_label("Critical alarm").is_none());
    assert!(h.query_by_label("1 alarm").is_some());
}

#[test]
fn trust_prompt_buttons_respond() {
    let mut app = StrataApp::new(Settings::default());
    app.conn = ConnState::AwaitingTrust {
        url: "x:1".into(),
        thumbprint: "AA:BB".into(),
    };
    let mut h = harness(app);
    h.run_steps(2);
    let n = h.get_by_label("Trust and connect");
    assert!(
        n.rect().max.x <= 1280.0,
        "the prompt fits the window: {:?}",
        n.rect()
    );
    n.click();
    h.run_steps(2);
    assert_eq!(h.state().conn, ConnState::Disconnected);
}

/// Replaces the text of a text field the way a user does: click, select all, type.
fn replace_text(h: &mut Harness<'static, StrataApp>, role: Role, label: &str, text: &str) {
    h.get_by_role_and_label(role, label).click();
    h.run_steps(2);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.run_steps(1);
    if text.is_empty() {
        h.key_press(egui::Key::Backspace);
    } else {
        h.get_by_role_and_label(role, label).type_text(text);
    }
    h.run_steps(3);
}

fn ok_enabled(h: &Harness<'static, StrataApp>) -> bool {
    !h.get_by_role_and_label(Role::Button, "OK")
        .accesskit_node()
        .is_disabled()
}

#[test]
fn the_pool_editor_refuses_values_that_cannot_work_and_reports_the_outcome() {
    use strata_shared::model::{PoolUsage, ResourceUsage, TaskState};
    let (mut app, _, _) = connected_app();
    let host = *app.model.inventory.hosts.keys().next().unwrap();
    let usage = |cpu_free, mem_free| PoolUsage {
        id: host,
        name: "root".into(),
        cpu: ResourceUsage {
            reservation: 8000,
            reserved_by_children: 8000 - cpu_free,
            unreserved_for_children: cpu_free,
        },
        memory: ResourceUsage {
            reservation: 16384,
            reserved_by_children: 16384 - mem_free,
            unreserved_for_children: mem_free,
        },
    };
    let generation = app.model.inventory.generation;
    app.model
        .usage
        .asked(host, generation, std::time::Instant::now());
    app.model.usage.store(host, Ok(vec![usage(3000, 4096)]));
    let mut h = harness(app);
    h.run_steps(2);

    h.get_by_role_and_label(Role::Button, "esx-like-01")
        .click_secondary();
    h.run_steps(2);
    h.get_by_label("New Resource Pool…").click();
    h.run_steps(3);
    assert!(
        h.query_by_label("New Resource Pool").is_some(),
        "editor open"
    );
    assert!(h
        .query_by_label_contains("Unreserved in host esx-like-01")
        .is_some());
    assert!(h.query_by_label("CPU 3000 MHz · memory 4096 MiB").is_some());
    assert!(h.query_by_label("Enter a name").is_some());
    assert!(!ok_enabled(&h), "no name, no OK");

    replace_text(&mut h, Role::TextInput, "Name", "Finance");
    assert!(ok_enabled(&h));

    // More than the parent has unreserved.
    replace_text(&mut h, Role::TextInput, "CPU reservation", "5000");
    assert!(h
        .query_by_label_contains("Only 3000 MHz can be reserved")
        .is_some());
    assert!(!ok_enabled(&h));

    // Negative.
    replace_text(&mut h, Role::TextInput, "Memory reservation", "-5");
    assert!(h
        .query_by_label("The reservation cannot be negative")
        .is_some());
    replace_text(&mut h, Role::TextInput, "Memory reservation", "1024");

    // Reservation above the limit.
    replace_text(&mut h, Role::TextInput, "CPU reservation", "1000");
    h.get_all_by_label("Unlimited").next().unwrap().click();
    h.run_steps(2);
    replace_text(&mut h, Role::TextInput, "CPU limit", "500");
    assert!(h
        .query_by_label("The reservation (1000 MHz) is above the limit (500 MHz)")
        .is_some());
    assert!(!ok_enabled(&h));
    replace_text(&mut h, Role::TextInput, "CPU limit", "2000");
    assert!(ok_enabled(&h));
    assert!(h.query_by_label_contains("above the limit").is_none());

    // The live figures move with the parent: less free now than asked for.
    h.state_mut()
        .model
        .usage
        .store(host, Ok(vec![usage(800, 4096)]));
    h.run_steps(2);
    assert!(h
        .query_by_label_contains("Only 800 MHz can be reserved")
        .is_some());
    h.state_mut()
        .model
        .usage
        .store(host, Ok(vec![usage(3000, 4096)]));
    h.run_steps(2);

    // Shares: custom needs a number in range.
    h.get_by_role_and_label(Role::ComboBox, "CPU shares")
        .click();
    h.run_steps(2);
    h.get_by_label("Custom").click();
    h.run_steps(2);
    replace_text(&mut h, Role::TextInput, "CPU shares", "0");
    assert!(h
        .query_by_label_contains("Custom shares must be a whole number")
        .is_some());
    replace_text(&mut h, Role::TextInput, "CPU shares", "1500");
    assert!(ok_enabled(&h));

    // OK sends it; without a server the refusal comes back in words and in Recent Tasks.
    h.get_by_role_and_label(Role::Button, "OK").click();
    let deadline = Instant::now() + Duration::from_secs(15);
    while h.query_by_label("Not connected to a server").is_none() {
        assert!(Instant::now() < deadline, "no refusal shown");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        h.state().editor.is_some(),
        "the editor stays open to correct"
    );
    // The window grew by the message: let it settle before clicking in it.
    h.run_steps(3);
    let task = h
        .state()
        .model
        .tasks
        .iter()
        .find(|t| t.operation == "pool.create")
        .cloned()
        .expect("a Recent Tasks entry");
    assert_eq!(task.state, TaskState::Error);
    assert_eq!(task.description, "Create resource pool Finance");
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run_steps(2);
    assert!(h.state().editor.is_none());
}

#[test]
fn the_console_tab_opens_a_session_only_for_a_running_vm_while_shown() {
    use strata_client::app::console::ConsoleStatus;
    use strata_client::app::Tab;
    let (app, web, db) = connected_app();
    let mut h = harness(app);
    h.run_steps(2);

    // A powered-off VM: the tab says so and no session starts.
    h.state_mut().selection = Some(Selection::Vm(web.id));
    h.run_steps(2);
    h.get_by_label("Console").click();
    h.run_steps(3);
    assert_eq!(h.state().tab, Tab::Console);
    assert!(h
        .query_by_label_contains("This VM is powered off")
        .is_some());
    assert!(!h.state().console.view.is_open());

    // A running VM: the tab starts a session, which asks the network side for a ticket.
    // This app is not really logged in to a manager, so the ticket is refused in words and a
    // new attempt is scheduled.
    h.state_mut().selection = Some(Selection::Vm(db.id));
    h.run_steps(2);
    assert_eq!(h.state().console.vm(), Some(db.id));
    assert!(h.state().console.view.is_open());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(
        h.state().console.view.status(),
        Some(ConsoleStatus::Disconnected { .. })
    ) {
        assert!(Instant::now() < deadline, "no ticket refusal shown");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.run_steps(2);
    assert!(h
        .query_by_label_contains("no console ticket: not connected to a server")
        .is_some());
    assert!(h.query_by_label_contains("reconnecting in").is_some());
    assert!(h.query_by_label("Ctrl+Alt+Del").is_some());
    assert!(h.query_by_label("Reconnect").is_some());

    // Leaving the tab ends the session.
    h.get_by_label("Summary").click();
    h.run_steps(3);
    assert_eq!(h.state().console.vm(), None);
    assert!(!h.state().console.view.is_open());
}

/// An app connected to a datacenter with a standalone host that reports its hardware and
/// datastores (datastore1 accessible, archive lost): web01 (off, on tap-web), db01 (on, no
/// NIC), a template on archive.
fn rich_app() -> (StrataApp, Uuid, VmInfo, VmInfo) {
    use strata_shared::model::{
        DatastoreFacts, DatastoreInfo, DatastoreProblem, HostFacts, NicSpec,
    };
    let (mut app, mut web, db) = connected_app();
    let dc = *app
        .model
        .inventory
        .datacenters
        .keys()
        .next()
        .expect("a datacenter");
    let mut host = app
        .model
        .inventory
        .hosts
        .values()
        .next()
        .expect("a host")
        .clone();
    let ds = |name: &str, accessible: bool| DatastoreFacts {
        id: Uuid::new_v4(),
        name: name.into(),
        path: format!("/srv/{name}"),
        capacity_bytes: 100 << 30,
        free_bytes: 60 << 30,
        accessible,
        problem: (!accessible).then(|| "storage unmounted".into()),
    };
    let facts_ds = vec![ds("datastore1", true), ds("archive", false)];
    host.facts = Some(HostFacts {
        id: host.id,
        hostname: host.name.clone(),
        cpu_count: 4,
        cpu_mhz: 2500,
        memory_mib: 16384,
        hardware_virtualization: false,
        engines: vec![Engine::Qemu],
        default_engine: Engine::Qemu,
        qemu_version: Some("7.2".into()),
        agent_version: "0.1.0".into(),
        datastores: facts_ds.clone(),
        managed_by: None,
    });
    web.spec.nics = vec![NicSpec {
        tap: "tap-web".into(),
        mac: None,
    }];
    let mut tmpl = vm("base-template", host.id, PowerState::PoweredOff);
    tmpl.spec.template = true;
    tmpl.datastore = "archive".into();
    let datastores = facts_ds
        .iter()
        .map(|d| DatastoreInfo {
            id: d.id,
            name: d.name.clone(),
            datacenter: dc,
            capacity_bytes: d.capacity_bytes,
            free_bytes: d.free_bytes,
            hosts: vec![host.id],
            inaccessible_on: if d.accessible {
                Vec::new()
            } else {
                vec![DatastoreProblem {
                    host: host.id,
                    problem: "storage unmounted".into(),
                }]
            },
        })
        .collect();
    app.model.inventory = InventoryModel::from_snapshot(Inventory {
        datacenters: app.model.inventory.datacenters.values().cloned().collect(),
        hosts: vec![host],
        vms: vec![web.clone(), db.clone(), tmpl],
        datastores,
        ..Default::default()
    });
    (app, dc, web, db)
}

fn enabled(h: &Harness<'static, StrataApp>, role: Role, label: &str) -> bool {
    !h.get_by_role_and_label(role, label)
        .accesskit_node()
        .is_disabled()
}

/// Nothing went to the server: no task, no error, no request waiting for an answer.
fn nothing_sent(h: &Harness<'static, StrataApp>) {
    assert!(h.state().model.tasks.is_empty(), "no task");
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
}

#[test]
fn the_new_vm_wizard_refuses_values_that_cannot_work_and_sends_nothing() {
    let (app, _, _, _) = rich_app();
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Datacenter")
        .click_secondary();
    h.run_steps(2);
    h.get_by_label("New Virtual Machine…").click();
    h.run_steps(3);
    assert!(
        h.query_by_label("New Virtual Machine").is_some(),
        "wizard open"
    );
    // Placed on the only host, on its accessible datastore, boot files from a VM there.
    let combo = |h: &Harness<'static, StrataApp>, label: &str| {
        h.get_by_role_and_label(Role::ComboBox, label)
            .accesskit_node()
            .value()
            .map(|v| v.to_string())
    };
    assert_eq!(combo(&h, "Placement").as_deref(), Some("Host esx-like-01"));
    assert_eq!(
        combo(&h, "Datastore").as_deref(),
        Some("datastore1 (60.0 GiB free)")
    );
    assert_eq!(
        h.get_by_role_and_label(Role::TextInput, "Kernel")
            .accesskit_node()
            .value()
            .as_deref(),
        Some("/k")
    );
    assert!(h.query_by_label("Enter a name").is_some());
    assert!(!enabled(&h, Role::Button, "Create"));

    replace_text(&mut h, Role::TextInput, "Name", "web01");
    assert!(h
        .query_by_label("A VM named web01 already exists")
        .is_some());
    replace_text(&mut h, Role::TextInput, "Name", "web/02");
    assert!(h.query_by_label_contains("must not contain '/'").is_some());
    replace_text(&mut h, Role::TextInput, "Name", "web02");
    assert!(enabled(&h, Role::Button, "Create"), "a valid form");

    replace_text(&mut h, Role::TextInput, "vCPUs", "17");
    assert!(h
        .query_by_label("Host esx-like-01 allows at most 16 vCPUs per VM (4 CPUs × 4)")
        .is_some());
    replace_text(&mut h, Role::TextInput, "vCPUs", "2");
    replace_text(&mut h, Role::TextInput, "Memory (MiB)", "8");
    assert!(h
        .query_by_label("The memory must be 16 to 1048576 MiB")
        .is_some());
    replace_text(&mut h, Role::TextInput, "Memory (MiB)", "32768");
    assert!(h
        .query_by_label("Host esx-like-01 has only 16384 MiB of memory")
        .is_some());
    replace_text(&mut h, Role::TextInput, "Memory (MiB)", "512");

    h.get_by_label("Add disk").click();
    h.run_steps(2);
    replace_text(&mut h, Role::TextInput, "Disk 1 size", "0");
    assert!(h
        .query_by_label_contains("The disk's size must be 1 to")
        .is_some());
    replace_text(&mut h, Role::TextInput, "Disk 1 size", "2048");

    h.get_by_role_and_label(Role::ComboBox, "Datastore").click();
    h.run_steps(2);
    h.get_by_label("archive (inaccessible)").click();
    h.run_steps(2);
    assert!(h
        .query_by_label("Datastore archive is inaccessible on esx-like-01: storage unmounted")
        .is_some());
    h.get_by_role_and_label(Role::ComboBox, "Datastore").click();
    h.run_steps(2);
    h.get_by_label("datastore1 (60.0 GiB free)").click();
    h.run_steps(2);

    h.get_by_role_and_label(Role::ComboBox, "Engine").click();
    h.run_steps(2);
    h.get_by_label("Native (strata-vmx)").click();
    h.run_steps(2);
    assert!(h
        .query_by_label_contains("cannot run the native engine")
        .is_some());
    h.get_by_role_and_label(Role::ComboBox, "Engine").click();
    h.run_steps(2);
    h.get_by_label("QEMU").click();
    h.run_steps(2);

    replace_text(&mut h, Role::TextInput, "NIC tap", "tap 0");
    assert!(h
        .query_by_label_contains("Tap \"tap 0\" must not contain")
        .is_some());
    replace_text(&mut h, Role::TextInput, "NIC tap", "tap0");
    replace_text(&mut h, Role::TextInput, "Kernel", "");
    assert!(h
        .query_by_label("Enter the path of a kernel image on the host")
        .is_some());
    assert!(!enabled(&h, Role::Button, "Create"));
    nothing_sent(&h);
    replace_text(&mut h, Role::TextInput, "Kernel", "/boot/vmlinuz");
    assert!(enabled(&h, Role::Button, "Create"));
    assert!(h.query_by_label_contains("must").is_none(), "no error left");

    // Sent: without a server the refusal shows in the wizard, which stays open.
    h.get_by_role_and_label(Role::Button, "Create").click();
    let deadline = Instant::now() + Duration::from_secs(15);
    while h.query_by_label("Not connected to a server").is_none() {
        assert!(Instant::now() < deadline, "no refusal shown");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(h.state().dialog.is_some());
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run_steps(2);
    assert!(h.state().dialog.is_none());
}

#[test]
fn adding_a_host_needs_its_thumbprint_fetched_and_confirmed_first() {
    use strata_client::app::dialogs::Dialog;
    let (app, _, _, _) = rich_app();
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Datacenter")
        .click_secondary();
    h.run_steps(2);
    h.get_by_label("Add Host…").click();
    h.run_steps(3);
    assert!(!enabled(&h, Role::Button, "Add Host"));
    assert!(
        !enabled(&h, Role::Button, "Get Certificate"),
        "no address yet"
    );
    replace_text(&mut h, Role::TextInput, "Address", "127.0.0.1:9443");
    assert!(h
        .query_by_label("Host esx-like-01 (127.0.0.1:9443) is already in the inventory")
        .is_some());
    // A port nothing listens on: the certificate cannot be fetched, in words.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    replace_text(
        &mut h,
        Role::TextInput,
        "Address",
        &format!("127.0.0.1:{port}"),
    );
    h.get_by_label("Password").click();
    h.run_steps(1);
    h.get_by_label("Password").type_text("secret");
    h.run_steps(3);
    assert!(h
        .query_by_label("Get the host's certificate and check its thumbprint")
        .is_some());
    h.get_by_label("Get Certificate").click();
    let deadline = Instant::now() + Duration::from_secs(15);
    while h
        .query_by_label_contains("Cannot get the certificate")
        .is_none()
    {
        assert!(Instant::now() < deadline, "no failure shown");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!enabled(&h, Role::Button, "Add Host"));
    nothing_sent(&h);

    // A thumbprint arrives (as the network side reports it): shown, and still to be confirmed.
    let thumbprint = "AB:".repeat(31) + "CD";
    if let Some(Dialog::AddHost(d)) = h.state_mut().dialog.as_mut() {
        d.fetching = Some(u64::MAX);
        d.thumbprint_fetched(u64::MAX, Ok(thumbprint.clone()));
    }
    h.run_steps(3);
    assert!(h.query_by_label(&thumbprint).is_some(), "thumbprint shown");
    assert!(!enabled(&h, Role::Button, "Add Host"), "not confirmed yet");
    h.get_by_label("I checked this thumbprint on the host and trust it")
        .click();
    h.run_steps(2);
    assert!(enabled(&h, Role::Button, "Add Host"));
    // Another address: the thumbprint no longer counts.
    replace_text(&mut h, Role::TextInput, "Address", "127.0.0.2");
    assert!(h.query_by_label(&thumbprint).is_none());
    assert!(!enabled(&h, Role::Button, "Add Host"));
    nothing_sent(&h);
}

#[test]
fn rename_settings_move_and_remove_refuse_what_cannot_work() {
    let (app, _, web, db) = rich_app();
    let mut h = harness(app);
    h.run_steps(2);

    // Rename: a name in use is refused.
    h.get_by_role_and_label(Role::Button, "web01")
        .click_secondary();
    h.run_steps(2);
    h.get_by_label("Rename…").click();
    h.run_steps(3);
    assert!(h.query_by_label("Rename VM web01").is_some());
    assert!(!ok_enabled(&h), "nothing changed yet");
    replace_text(&mut h, Role::TextInput, "New name", "db01");
    assert!(h.query_by_label("A VM named db01 already exists").is_some());
    assert!(!ok_enabled(&h));
    replace_text(&mut h, Role::TextInput, "New name", "web-renamed");
    assert!(ok_enabled(&h));
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run_steps(2);

    // Edit settings of a running VM: vCPUs and memory are locked, and it says why.
    h.get_by_role_and_label(Role::Button, "db01")
        .click_secondary();
    h.run_steps(2);
    h.get_by_label("Edit Settings…").click();
    h.run_steps(3);
    assert!(!enabled(&h, Role::TextInput, "vCPUs"));
    assert!(!enabled(&h, Role::TextInput, "Memory (MiB)"));
    assert!(h
        .query_by_label("Power the VM off to change its vCPUs or memory: it is powered on.")
        .is_some());
    replace_text(&mut h, Role::TextInput, "Command line", "quiet");
    assert!(ok_enabled(&h), "the command line may change");
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run_steps(2);
    // …and of a powered-off one: bad values are refused.
    h.get_by_role_and_label(Role::Button, "web01")
        .click_secondary();
    h.run_steps(2);
    h.get_by_label("Edit Settings…").click();
    h.run_steps(3);
    replace_text(&mut h, Role::TextInput, "vCPUs", "0");
    assert!(h
        .query_by_label("The number of vCPUs must be 1 to 64")
        .is_some());
    assert!(!ok_enabled(&h));
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run_steps(2);

    // Move: the host's tree has only its root, where the VM already is.
    h.get_by_role_and_label(Role::Button, "web01")
        .click_secondary();
    h.run_steps(2);
    h.get_by_label("Move to Resource Pool…").click();
    h.run_steps(3);
    h.get_by_label_contains("(current)").click();
    h.run_steps(2);
    assert!(h.query_by_label("The VM is already there").is_some());
    assert!(!enabled(&h, Role::Button, "Move"));
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run_steps(2);

    // Remove: only a powered-off VM, after a confirmation naming it.
    h.get_by_role_and_label(Role::Button, "db01")
        .click_secondary();
    h.run_steps(2);
    assert!(h.get_by_label("Remove VM…").accesskit_node().is_disabled());
    h.key_press(egui::Key::Escape);
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "web01")
        .click_secondary();
    h.run_steps(2);
    h.get_by_label("Remove VM…").click();
    h.run_steps(3);
    assert!(h
        .query_by_label_contains("Remove VM web01 and delete all its files")
        .is_some());
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run_steps(2);
    assert!(h
        .query_by_label_contains("Remove VM web01 and delete")
        .is_none());
    nothing_sent(&h);
    assert!(h.state().model.inventory.vms.contains_key(&web.id));
    assert!(h.state().model.inventory.vms.contains_key(&db.id));
}

#[test]
fn the_actions_menu_offers_what_the_context_menu_does() {
    use strata_client::app::dialogs::Dialog;
    use strata_client::app::panels::new_vm::Placement;
    let (mut app, _, _, _) = rich_app();
    let host = *app.model.inventory.hosts.keys().next().unwrap();
    app.selection = Some(Selection::Host(host));
    let mut h = harness(app);
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Actions").click();
    h.run_steps(2);
    for item in [
        "Show virtual machines",
        "New Resource Pool…",
        "Remove Host…",
    ] {
        assert!(h.query_by_label(item).is_some(), "{item}");
    }
    h.get_by_label("New Virtual Machine…").click();
    h.run_steps(3);
    match &h.state().dialog {
        Some(Dialog::NewVm(d)) => assert_eq!(d.placement, Some(Placement::Host(host))),
        other => panic!("the wizard on the host: {other:?}"),
    }
}

#[test]
fn the_inventory_views_show_vms_templates_datastores_and_networks() {
    use strata_client::app::panels::tree::InventoryView;
    let (app, _, _, _) = rich_app();
    let mut h = harness(app);
    h.run_steps(2);
    // Tree rows in screen order, from the top.
    let rows = |h: &Harness<'static, StrataApp>, names: &[&str]| -> Vec<String> {
        let mut found: Vec<(f32, String)> = names
            .iter()
            .filter_map(|n| {
                // The left panel's rows (a tab may have the same name).
                h.query_all_by_role_and_label(Role::Button, n)
                    .find(|node| node.rect().min.x < 270.0)
                    .map(|node| (node.rect().min.y, n.to_string()))
            })
            .collect();
        found.sort_by(|a, b| a.0.total_cmp(&b.0));
        found.into_iter().map(|(_, n)| n).collect()
    };

    h.get_by_role_and_label(Role::Button, "VMs & Templates")
        .click();
    h.run_steps(3);
    assert_eq!(h.state().inventory_view(), InventoryView::VmsAndTemplates);
    assert_eq!(
        rows(
            &h,
            &[
                "Datacenter",
                "Virtual Machines",
                "db01",
                "web01",
                "Templates",
                "base-template"
            ]
        ),
        [
            "Datacenter",
            "Virtual Machines",
            "db01",
            "web01",
            "Templates",
            "base-template"
        ]
    );

    h.get_by_role_and_label(Role::Button, "Datastores").click();
    h.run_steps(3);
    assert_eq!(
        rows(
            &h,
            &[
                "Datacenter",
                "archive",
                "base-template",
                "datastore1",
                "db01",
                "web01"
            ]
        ),
        [
            "Datacenter",
            "archive",
            "base-template",
            "datastore1",
            "db01",
            "web01"
        ]
    );
    assert!(
        h.query_by_label("Inaccessible").is_some(),
        "the lost datastore says so"
    );
    // A datastore is an object: its summary says where it is reachable.
    h.get_by_role_and_label(Role::Button, "archive").click();
    h.run_steps(3);
    assert!(h
        .query_by_label("Inaccessible: storage unmounted")
        .is_some());

    h.get_by_role_and_label(Role::Button, "Networks").click();
    h.run_steps(3);
    assert_eq!(
        rows(
            &h,
            &[
                "Datacenter",
                "tap-web",
                "web01",
                "No network",
                "base-template",
                "db01"
            ]
        ),
        [
            "Datacenter",
            "tap-web",
            "web01",
            "No network",
            "base-template",
            "db01"
        ]
    );
    // The one filter box serves every view.
    h.get_by_label("Filter").click();
    h.run_steps(1);
    h.get_by_label("Filter").type_text("tap-web");
    h.run_steps(3);
    assert!(h.query_by_role_and_label(Role::Button, "web01").is_some());
    assert!(h.query_by_role_and_label(Role::Button, "db01").is_none());
    h.get_by_role_and_label(Role::Button, "VMs & Templates")
        .click();
    h.run_steps(3);
    assert!(h.query_by_label("Nothing matches the filter.").is_some());
}
