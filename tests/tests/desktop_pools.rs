//! The desktop client's resource pool editor against a real manager and host agent
//! (egui_kittest, headless): create a pool from the host's context menu with values the
//! editor first refuses (reservation above the limit, more than the host has unreserved),
//! change its shares, edit a VM's allocation, see the pool and its VM in the tree and the
//! Resource Allocation tab, and have the server refuse to remove a pool that holds a VM —
//! each change read back with the SDK.

use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use strata_client::app::Tab;
use strata_shared::api::manager as m;
use strata_shared::model::{IdParams, PoolListParams, SharesLevel, TaskState, VmMoveParams};
use strata_tests::desktop::{logged_in, replace_text, step_until, tree_node, App};
use strata_tests::{bins, Lab};

fn ok_enabled(h: &App) -> bool {
    !h.get_by_role_and_label(Role::Button, "OK")
        .accesskit_node()
        .is_disabled()
}

fn context_item(h: &mut App, node: &str, item: &str) {
    h.get_by_role_and_label(Role::Button, node)
        .click_secondary();
    h.run_steps(2);
    h.get_by_label(item).click();
    h.run_steps(3);
}

#[test]
fn desktop_client_creates_and_edits_resource_pools_on_a_real_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lab = rt.block_on(Lab::start(&bins!()));
    let vm = rt.block_on(lab.create_guest_vm("pooled01", 1));
    let host_name = rt.block_on(async {
        lab.client
            .call::<m::HostGet>(IdParams { id: lab.host })
            .await
            .unwrap()
            .name
    });
    let root = rt.block_on(async {
        lab.client
            .call::<m::PoolUsageGet>(IdParams { id: lab.host })
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.id == lab.host)
            .unwrap()
    });
    let cpu_free = root.cpu.unreserved_for_children;
    assert!(cpu_free > 100, "the host has CPU to reserve: {root:?}");

    let mut h = logged_in(&lab);
    step_until(&mut h, "the VM in the tree", Duration::from_secs(30), |h| {
        tree_node(h, "pooled01") && tree_node(h, &host_name)
    });

    // New pool from the host's context menu; the host's unreserved capacity shows.
    context_item(&mut h, &host_name, "New Resource Pool…");
    let free_line = format!("CPU {cpu_free} MHz");
    step_until(
        &mut h,
        "the parent's capacity",
        Duration::from_secs(20),
        |h| h.query_by_label_contains(&free_line).is_some(),
    );
    assert!(!ok_enabled(&h), "no name yet");
    replace_text(&mut h, "Name", "Finance");

    // Refused before sending: more than the host has unreserved…
    replace_text(&mut h, "CPU reservation", &(cpu_free + 1).to_string());
    assert!(h
        .query_by_label_contains(&format!("Only {cpu_free} MHz can be reserved"))
        .is_some());
    assert!(!ok_enabled(&h));
    // …and a reservation above the limit.
    replace_text(&mut h, "CPU reservation", "100");
    h.get_all_by_label("Unlimited").next().unwrap().click();
    h.run_steps(2);
    replace_text(&mut h, "CPU limit", "50");
    assert!(h
        .query_by_label("The reservation (100 MHz) is above the limit (50 MHz)")
        .is_some());
    assert!(!ok_enabled(&h));
    replace_text(&mut h, "CPU limit", "2000");
    assert!(ok_enabled(&h));
    h.get_by_role_and_label(Role::Button, "OK").click();
    step_until(
        &mut h,
        "the pool in the tree",
        Duration::from_secs(20),
        |h| h.state().editor.is_none() && tree_node(h, "Finance"),
    );
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    assert!(
        h.state()
            .model
            .tasks
            .iter()
            .any(|t| t.operation == "pool.create"
                && t.state == TaskState::Success
                && t.description == "Create resource pool Finance"),
        "Recent Tasks shows the creation"
    );
    let read = |rt: &tokio::runtime::Runtime| {
        rt.block_on(lab.client.call::<m::PoolList>(PoolListParams::default()))
            .unwrap()
            .into_iter()
            .find(|p| p.name == "Finance")
            .expect("Finance on the server")
    };
    let finance = read(&rt);
    assert_eq!(finance.owner, lab.host);
    assert_eq!(finance.allocation.cpu.reservation, 100);
    assert_eq!(finance.allocation.cpu.limit, Some(2000));
    assert_eq!(finance.allocation.memory.limit, None);

    // Edit its shares.
    context_item(&mut h, "Finance", "Edit Settings…");
    assert!(h.query_by_label("Edit Resource Pool Finance").is_some());
    h.get_by_role_and_label(Role::ComboBox, "CPU shares")
        .click();
    h.run_steps(2);
    h.get_by_label("High").click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "OK").click();
    step_until(&mut h, "the new shares", Duration::from_secs(20), |h| {
        h.state().editor.is_none()
            && h.state().model.inventory.pools[&finance.id]
                .allocation
                .cpu
                .shares
                .level
                == SharesLevel::High
    });
    assert_eq!(read(&rt).allocation.cpu.shares.level, SharesLevel::High);

    // The VM moves into the pool (through the API): the tree follows the notification.
    rt.block_on(lab.client.call::<m::VmMove>(VmMoveParams {
        id: vm,
        pool: Some(finance.id),
    }))
    .unwrap();
    step_until(
        &mut h,
        "the VM under the pool",
        Duration::from_secs(20),
        |h| h.state().model.inventory.vms[&vm].pool == Some(finance.id),
    );
    h.run_steps(2);
    let x = |h: &App, n: &str| h.get_by_role_and_label(Role::Button, n).rect().min.x;
    assert!(
        x(&h, "pooled01") > x(&h, "Finance"),
        "the VM is drawn inside the pool"
    );

    // A VM's allocation through the same editor.
    context_item(&mut h, "pooled01", "Edit Resource Allocation…");
    replace_text(&mut h, "Memory reservation", "64");
    h.get_by_role_and_label(Role::Button, "OK").click();
    step_until(
        &mut h,
        "the VM's allocation",
        Duration::from_secs(20),
        |h| {
            h.state().editor.is_none()
                && h.state().model.inventory.vms[&vm]
                    .spec
                    .allocation
                    .memory
                    .reservation
                    == 64
        },
    );
    let on_server = rt
        .block_on(lab.client.call::<m::VmGet>(IdParams { id: vm }))
        .unwrap();
    assert_eq!(on_server.spec.allocation.memory.reservation, 64);

    // The Resource Allocation tab of the pool lists the VM with its figures.
    h.get_by_role_and_label(Role::Button, "Finance").click();
    h.run_steps(2);
    h.get_by_role_and_label(Role::Button, "Resource Allocation")
        .click();
    step_until(
        &mut h,
        "the allocation figures",
        Duration::from_secs(20),
        |h| {
            h.state().tab == Tab::ResourceAllocation
                && h.query_all_by_label_contains("reserved by children")
                    .next()
                    .is_some()
        },
    );
    // The VM's row: 1 vCPU and 256 MiB at normal shares.
    assert!(
        h.query_all_by_label("Normal (2560)").next().is_some(),
        "the VM's row in the table"
    );

    // The server refuses to remove a pool that holds a VM: the reason shows in words.
    context_item(&mut h, "Finance", "Remove");
    h.get_by_role_and_label(Role::Button, "Remove").click();
    step_until(&mut h, "the refusal", Duration::from_secs(20), |h| {
        h.query_all_by_label_contains("still holds 1 VM(s)")
            .next()
            .is_some()
    });
    assert!(tree_node(&h, "Finance"), "the pool stays");
    read(&rt);
    drop(h);
    drop(lab);
}
