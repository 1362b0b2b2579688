//! The desktop client (egui, headless through egui_kittest) connected straight to a real host
//! agent, no manager: trust its certificate, log in as root, see the host and its VM, power
//! the VM on through the context menu (a local task completes in Recent Tasks), open its
//! console through the agent's gateway, and see a change made by someone else arrive from
//! the agent's notifications; create a VM with a disk through the New VM wizard, rename and
//! remove it; manager-only actions are not offered.

use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use strata_client::app::net::direct::DATACENTER_NAME;
use strata_client::app::{Settings, StrataApp, Tab};
use strata_shared::api::agent as a;
use strata_shared::model::{IdParams, PowerState};
use strata_shared::{ClientError, ErrorCode};
use strata_tests::desktop::{
    click_tree_node_secondary, completed_count, fill_new_vm_wizard, harness, log_in,
    open_console_tab, replace_text, step_until, task_succeeded, tree_node, wait_powered_on,
};
use strata_tests::{bins, guest_spec, require_qemu, scratch_root, Daemon, Lab};

#[test]
fn desktop_client_manages_a_host_agent_directly() {
    require_qemu();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("strata-direct")
        .tempdir_in(scratch_root())
        .unwrap();
    let agent = Daemon::agent(&bins!(), &dir.path().join("agent"), 0);
    let root = rt.block_on(agent.client("root"));
    let (vm, host_name) = rt.block_on(async {
        let vm = root
            .call::<a::VmCreate>(a::AgentVmCreateParams {
                id: None,
                name: "direct01".into(),
                datastore: None,
                spec: guest_spec(),
            })
            .await
            .unwrap();
        let facts = root
            .call::<a::HostInfoMethod>(strata_shared::model::Empty {})
            .await
            .unwrap();
        (vm.id, facts.hostname)
    });

    let mut app = StrataApp::new(Settings::default());
    app.prefill(Some(agent.address.clone()), Some("root".into()));
    let mut h = harness(app);
    log_in(&mut h);
    step_until(&mut h, "the trust prompt", Duration::from_secs(20), |h| {
        h.query_by_label(&agent.thumbprint).is_some()
    });
    h.get_by_label("Trust and connect").click();
    step_until(&mut h, "the VM in the tree", Duration::from_secs(30), |h| {
        tree_node(h, "direct01")
    });
    assert!(tree_node(&h, &host_name), "the host is in the tree");
    assert!(h.state().model.inventory.direct);
    assert!(
        h.query_by_label("Host agent, connected directly").is_some(),
        "the top bar says where the client is connected"
    );
    assert!(
        h.query_by_label("Managed by a Strata manager").is_none(),
        "no manager has used this host"
    );
    assert_eq!(
        h.state().model.inventory.vms[&vm].power_state,
        PowerState::PoweredOff
    );

    // Power on through the context menu; no manager-only items are offered.
    let completed_before = completed_count(&h);
    h.get_by_role_and_label(Role::Button, "direct01")
        .click_secondary();
    h.run_steps(2);
    assert!(h.query_by_label("Move to Resource Pool…").is_none());
    assert!(h.query_by_label("Edit Resource Allocation…").is_none());
    h.get_by_label("Power on").click();
    wait_powered_on(&mut h, vm, completed_before);
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);

    // Performance is sampled live from the agent's counters while the tab is shown.
    h.get_by_label("Performance").click();
    h.run_steps(2);
    assert_eq!(h.state().tab, Tab::Performance);
    step_until(
        &mut h,
        "a live performance sample",
        Duration::from_secs(30),
        |h| {
            matches!(h.state().model.stats.get(vm), Some(Ok(s))
                if s.last().is_some_and(|x| x.memory_mib > 0.0))
                && h.query_by_label_contains("live samples since").is_some()
        },
    );

    // The console opens with a ticket from the agent itself.
    open_console_tab(&mut h);

    // Someone else powers the VM off on the agent: the tree follows, and an event says so.
    rt.block_on(async {
        root.call::<a::VmPowerOff>(a::PowerOffParams {
            id: vm,
            hard: true,
            timeout_secs: None,
        })
        .await
        .unwrap();
    });
    step_until(
        &mut h,
        "the outside power-off to arrive",
        Duration::from_secs(30),
        |h| h.state().model.inventory.vms[&vm].power_state == PowerState::PoweredOff,
    );
    assert!(
        h.state()
            .model
            .events
            .iter()
            .any(|e| e.message.starts_with("direct01 is powered off")),
        "the change is an event"
    );

    // The datacenter of a direct connection offers no host or cluster management; its New
    // VM wizard creates the VM with a disk on the agent.
    click_tree_node_secondary(&mut h, DATACENTER_NAME);
    assert!(h.query_by_label("Add Host…").is_none());
    assert!(h.query_by_label("New Cluster…").is_none());
    h.get_by_label("New Virtual Machine…").click();
    h.run_steps(3);
    fill_new_vm_wizard(&mut h, "wiz02", 32);
    h.get_by_role_and_label(Role::Button, "Create").click();
    step_until(
        &mut h,
        "the new VM and its disk",
        Duration::from_secs(60),
        |h| {
            h.state().dialog.is_none()
                && tree_node(h, "wiz02")
                && task_succeeded(h, "vm.create")
                && task_succeeded(h, "vm.diskCreate")
        },
    );
    let new_vm = h
        .state()
        .model
        .inventory
        .vms
        .values()
        .find(|v| v.name == "wiz02")
        .map(|v| v.id)
        .unwrap();
    let disks = rt
        .block_on(root.call::<a::VmDiskList>(IdParams { id: new_vm }))
        .unwrap();
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0].capacity_bytes, 32 << 20);

    // Rename it, then remove it after the confirmation.
    click_tree_node_secondary(&mut h, "wiz02");
    h.get_by_label("Rename…").click();
    h.run_steps(3);
    replace_text(&mut h, "New name", "wiz02-renamed");
    h.get_by_role_and_label(Role::Button, "OK").click();
    step_until(
        &mut h,
        "the new name in the tree",
        Duration::from_secs(30),
        |h| h.state().dialog.is_none() && tree_node(h, "wiz02-renamed"),
    );
    let renamed = rt
        .block_on(root.call::<a::VmGet>(IdParams { id: new_vm }))
        .unwrap();
    assert_eq!(renamed.name, "wiz02-renamed");
    click_tree_node_secondary(&mut h, "wiz02-renamed");
    h.get_by_label("Remove VM…").click();
    h.run_steps(3);
    h.get_by_role_and_label(Role::Button, "Remove VM").click();
    step_until(&mut h, "the VM to go", Duration::from_secs(30), |h| {
        !tree_node(h, "wiz02-renamed") && task_succeeded(h, "vm.destroy")
    });
    match rt.block_on(root.call::<a::VmGet>(IdParams { id: new_vm })) {
        Err(ClientError::Rpc(e)) => assert_eq!(e.code, ErrorCode::NotFound),
        other => panic!("the VM is gone from the agent: {other:?}"),
    }
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    drop(h);
    drop(root);
    drop(agent);
}

#[test]
fn a_direct_connection_to_a_host_a_manager_uses_warns_about_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The manager adds the host: it logs in with its own credential and calls the agent.
    let lab = rt.block_on(Lab::start(&bins!()));
    let mut settings = Settings::default();
    settings
        .trusted
        .insert(lab.agent.address.clone(), lab.agent.thumbprint.clone());
    let mut app = StrataApp::new(settings);
    app.prefill(Some(lab.agent.address.clone()), Some("root".into()));
    let mut h = harness(app);
    log_in(&mut h);
    step_until(
        &mut h,
        "the direct connection",
        Duration::from_secs(30),
        |h| h.state().model.inventory.direct && !h.state().model.inventory.hosts.is_empty(),
    );
    h.run_steps(2);
    assert!(
        h.query_by_label("Managed by a Strata manager").is_some(),
        "the top bar warns that changes here bypass the manager"
    );
    drop(h);
    drop(lab);
}
