//! The desktop client's management dialogs against a real manager and host agents
//! (egui_kittest, headless): create a VM with one disk through the New VM wizard and see it
//! appear in the tree with its creation and disk tasks completed in Recent Tasks; rename it
//! through the Rename dialog; remove it after the confirmation that names it; add a second
//! host agent after fetching and confirming its certificate thumbprint. Each result is read
//! back with the SDK.

use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use strata_client::app::{Settings, StrataApp};
use strata_shared::api::manager as m;
use strata_shared::model::{Empty, IdParams};
use strata_shared::{ClientError, ErrorCode};
use strata_tests::desktop::{
    click_tree_node_secondary, enabled, fill_new_vm_wizard, harness, log_in, replace_text,
    step_until, task_succeeded, tree_node,
};
use strata_tests::{bins, Daemon, Lab, PASSWORD};

#[test]
fn desktop_client_creates_renames_and_removes_a_vm_and_adds_a_host() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bins = bins!();
    let lab = rt.block_on(Lab::start(&bins));

    let mut settings = Settings::default();
    settings
        .trusted
        .insert(lab.server.address.clone(), lab.server.thumbprint.clone());
    let mut app = StrataApp::new(settings);
    app.prefill(Some(lab.server.address.clone()), Some("admin".into()));
    let mut h = harness(app);
    log_in(&mut h);
    step_until(&mut h, "the inventory", Duration::from_secs(30), |h| {
        tree_node(h, "Datacenter") && !h.state().model.inventory.hosts.is_empty()
    });

    // The New VM wizard from the datacenter's context menu: placed on the only host.
    click_tree_node_secondary(&mut h, "Datacenter");
    h.get_by_label("New Virtual Machine…").click();
    h.run_steps(3);
    assert!(!enabled(&h, "Create"), "no name yet");
    fill_new_vm_wizard(&mut h, "wiz01", 64);
    h.get_by_role_and_label(Role::Button, "Create").click();

    // The VM appears in the tree; its creation and its disk each complete as a task.
    step_until(
        &mut h,
        "the new VM in the tree",
        Duration::from_secs(60),
        |h| h.state().dialog.is_none() && tree_node(h, "wiz01"),
    );
    step_until(
        &mut h,
        "the creation and disk tasks to complete",
        Duration::from_secs(120),
        |h| task_succeeded(h, "vm.create") && task_succeeded(h, "vm.diskCreate"),
    );
    let created = h
        .state()
        .model
        .tasks
        .iter()
        .find(|t| t.operation == "vm.create")
        .cloned()
        .unwrap();
    assert!(
        created.description.starts_with("Create VM wiz01"),
        "{created:?}"
    );
    h.run_steps(2);
    assert!(
        h.query_all_by_label("Completed").count() >= 2,
        "Recent Tasks shows them completed"
    );
    assert!(
        h.query_all_by_label(&created.description).next().is_some(),
        "Recent Tasks lists the creation"
    );
    let vm_id = h
        .state()
        .model
        .inventory
        .vms
        .values()
        .find(|v| v.name == "wiz01")
        .map(|v| v.id)
        .unwrap();
    let on_server = rt
        .block_on(lab.client.call::<m::VmGet>(IdParams { id: vm_id }))
        .unwrap();
    assert_eq!(on_server.spec.memory_mib, 256);
    assert_eq!(on_server.spec.disks.len(), 1, "{:?}", on_server.spec);
    let disks = rt
        .block_on(lab.client.call::<m::VmDiskList>(IdParams { id: vm_id }))
        .unwrap();
    assert_eq!(disks[0].capacity_bytes, 64 << 20);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);

    // Rename through the dialog.
    click_tree_node_secondary(&mut h, "wiz01");
    h.get_by_label("Rename…").click();
    h.run_steps(3);
    replace_text(&mut h, "New name", "wiz01-renamed");
    h.get_by_role_and_label(Role::Button, "OK").click();
    step_until(
        &mut h,
        "the new name in the tree",
        Duration::from_secs(60),
        |h| h.state().dialog.is_none() && tree_node(h, "wiz01-renamed") && !tree_node(h, "wiz01"),
    );
    step_until(&mut h, "the rename task", Duration::from_secs(30), |h| {
        task_succeeded(h, "vm.reconfigure")
    });
    let on_server = rt
        .block_on(lab.client.call::<m::VmGet>(IdParams { id: vm_id }))
        .unwrap();
    assert_eq!(on_server.name, "wiz01-renamed");

    // Remove, after a confirmation that names the VM.
    click_tree_node_secondary(&mut h, "wiz01-renamed");
    h.get_by_label("Remove VM…").click();
    h.run_steps(3);
    assert!(h
        .query_by_label_contains(
            "Remove VM wiz01-renamed and delete all its files from the datastore"
        )
        .is_some());
    h.get_by_role_and_label(Role::Button, "Remove VM").click();
    step_until(&mut h, "the VM to go", Duration::from_secs(60), |h| {
        !tree_node(h, "wiz01-renamed") && task_succeeded(h, "vm.destroy")
    });
    match rt.block_on(lab.client.call::<m::VmGet>(IdParams { id: vm_id })) {
        Err(ClientError::Rpc(e)) => assert_eq!(e.code, ErrorCode::NotFound),
        other => panic!("the VM is gone from the server: {other:?}"),
    }

    // Add a second host agent: its thumbprint is fetched, shown and confirmed first.
    let second = Daemon::agent(&bins, &lab.dir.path().join("agent2"), 0);
    click_tree_node_secondary(&mut h, "Datacenter");
    h.get_by_label("Add Host…").click();
    h.run_steps(3);
    replace_text(&mut h, "Address", &second.address);
    h.get_by_label("Password").click();
    h.run_steps(1);
    h.get_by_label("Password").type_text(PASSWORD);
    h.run_steps(2);
    assert!(
        !enabled(&h, "Add Host"),
        "the certificate is not checked yet"
    );
    h.get_by_label("Get Certificate").click();
    step_until(
        &mut h,
        "the host's thumbprint",
        Duration::from_secs(20),
        |h| h.query_by_label(&second.thumbprint).is_some(),
    );
    // The window grew by the certificate: let it settle before clicking in it.
    h.run_steps(3);
    assert!(!enabled(&h, "Add Host"), "not confirmed yet");
    h.get_by_label("I checked this thumbprint on the host and trust it")
        .click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Add Host").click();
    step_until(
        &mut h,
        "the second host in the inventory",
        Duration::from_secs(60),
        |h| {
            h.state().dialog.is_none()
                && h.state().model.inventory.hosts.len() == 2
                && task_succeeded(h, "host.add")
        },
    );
    let hosts = rt
        .block_on(lab.client.call::<m::HostList>(Empty {}))
        .unwrap();
    let added = hosts
        .iter()
        .find(|x| x.address == second.address)
        .expect("the host on the server");
    assert_eq!(
        added.thumbprint, second.thumbprint,
        "the confirmed thumbprint is pinned"
    );
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    drop(h);
    drop(second);
    drop(lab);
}
