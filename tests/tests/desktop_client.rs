//! The desktop client (egui, headless through egui_kittest) against a real manager and host
//! agent: trust the certificate, log in, see the host and a VM in the tree, power the VM on
//! through its context menu, watch its state change and the task complete in Recent Tasks;
//! a changed certificate is refused.

use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use strata_client::app::{Settings, StrataApp};
use strata_shared::model::PowerState;
use strata_tests::desktop::{
    completed_count, harness, log_in, step_until, tree_node, wait_powered_on,
};
use strata_tests::{bins, Lab};

#[test]
fn desktop_client_logs_in_and_powers_a_vm_on_from_the_tree() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lab = rt.block_on(Lab::start(&bins!()));
    let vm = rt.block_on(lab.create_guest_vm("desk01", 1));
    let host_name = rt.block_on(async {
        lab.client
            .call::<strata_shared::api::manager::HostGet>(strata_shared::model::IdParams {
                id: lab.host,
            })
            .await
            .unwrap()
            .name
    });

    let mut app = StrataApp::new(Settings::default());
    app.prefill(Some(lab.server.address.clone()), Some("admin".into()));
    let mut h = harness(app);
    log_in(&mut h);

    // First contact: the thumbprint is shown and must be trusted.
    step_until(&mut h, "the trust prompt", Duration::from_secs(20), |h| {
        h.query_by_label("Trust and connect").is_some()
    });
    assert!(
        h.query_by_label(&lab.server.thumbprint).is_some(),
        "the server's thumbprint is shown"
    );
    h.get_by_label("Trust and connect").click();

    step_until(&mut h, "the VM in the tree", Duration::from_secs(30), |h| {
        tree_node(h, "desk01")
    });
    assert!(tree_node(&h, &host_name), "host in the tree");
    assert_eq!(
        h.state().settings.trusted.get(&lab.server.address),
        Some(&lab.server.thumbprint),
        "the certificate is remembered"
    );
    assert_eq!(
        h.state().model.inventory.vms[&vm].power_state,
        PowerState::PoweredOff
    );

    // Power on through the VM's context menu.
    let completed_before = completed_count(&h);
    h.get_by_role_and_label(Role::Button, "desk01")
        .click_secondary();
    h.step();
    h.step();
    h.get_by_label("Power on").click();
    wait_powered_on(&mut h, vm, completed_before);
    // The selected VM's Summary shows the new state in words.
    assert!(
        h.query_all_by_label("Powered on").next().is_some(),
        "summary shows the power state"
    );
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);

    // A remembered thumbprint that no longer matches is refused.
    let mut settings = h.state().settings.clone();
    settings
        .trusted
        .insert(lab.server.address.clone(), "AB:".repeat(31) + "AB");
    let mut app = StrataApp::new(settings);
    app.prefill(Some(lab.server.address.clone()), Some("admin".into()));
    let mut h2 = harness(app);
    log_in(&mut h2);
    step_until(&mut h2, "the refusal", Duration::from_secs(20), |h| {
        h.query_by_label_contains("has changed").is_some()
    });
    assert!(!h2.state().is_connected());
    drop(h2);
    drop(h);
    drop(lab);
}
