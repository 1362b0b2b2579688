//! The desktop client's Console tab (egui, headless through egui_kittest) against a real
//! manager, host agent and Debian guest: the tab gets a ticket from the manager, opens the
//! VM's screen through the host agent's TLS WebSocket gateway, shows it, and what is typed
//! on the focused screen runs in the guest.

use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use strata_client::app::console::view::SCREEN_LABEL;
use strata_client::app::console::ConsoleStatus;
use strata_client::app::model::Selection;
use strata_shared::model::{Machine, VmSpec};
use strata_tests::desktop::{logged_in, open_console_tab, step_until, App};
use strata_tests::{bins, boot, guest_spec, wait_console, Lab};

#[test]
fn the_console_tab_shows_a_running_guest_and_types_into_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lab = rt.block_on(Lab::start(&bins!()));
    let spec = VmSpec {
        machine: Machine::Q35,
        ..guest_spec()
    };
    let vm = rt.block_on(lab.create_vm("deskcon", spec));
    let off = rt.block_on(boot(&lab.client, vm));

    let mut h = logged_in(&lab);
    step_until(
        &mut h,
        "the VM in the inventory",
        Duration::from_secs(30),
        |h| h.state().model.inventory.vms.contains_key(&vm),
    );

    h.state_mut().selection = Some(Selection::Vm(vm));
    h.run_steps(2);
    open_console_tab(&mut h);
    // The guest's VGA text screen, drawn: not all black.
    step_until(&mut h, "a picture", Duration::from_secs(30), |h| {
        h.state().console.view.framebuffer().is_some_and(|fb| {
            let [w, hgt] = fb.size();
            (0..hgt)
                .step_by(4)
                .flat_map(|y| (0..w).step_by(4).map(move |x| (x, y)))
                .filter_map(|(x, y)| fb.pixel(x, y))
                .filter(|p| p.r() > 0x60)
                .count()
                > 100
        })
    });
    assert_eq!(h.state().console.view.texture_size(), Some([720, 400]));

    // Typed on the focused screen, run by the shell on the guest's screen.
    h.get_by_label(SCREEN_LABEL).click();
    h.run_steps(2);
    h.event(egui::Event::Text(
        "echo UI-$((5*5))-TYPED > /dev/ttyS0".into(),
    ));
    h.key_press(egui::Key::Enter);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        h.step();
        let seen = rt.block_on(wait_console(
            &lab.client,
            vm,
            off,
            "UI-25-TYPED",
            Duration::from_millis(200),
        ));
        if seen.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "typed text did not run: {seen:?}"
        );
    }
    // The open console is an Event.
    let events = rt.block_on(async {
        lab.client
            .call::<strata_shared::api::manager::EventList>(strata_shared::model::EventListParams {
                object: Some(vm),
                after_id: None,
                limit: Some(100),
            })
            .await
            .unwrap()
    });
    assert!(
        events
            .iter()
            .any(|e| e.kind == "vm.console.opened" && e.message.contains("websocket")),
        "{events:?}"
    );
    h.get_by_label("Summary").click();
    h.run_steps(3);
    assert!(!h.state().console.view.is_open());
    drop(h);
    rt.block_on(strata_tests::power_off(&lab.client, vm));
}

/// A native VM's reset re-executes strata-vmx, which drops the RFB connection: the tab
/// reconnects by itself with a fresh ticket and shows the new boot.
#[test]
fn the_console_tab_reconnects_after_a_native_vm_resets() {
    strata_tests::require_kvm();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let lab = rt.block_on(Lab::start(&bins!()));
    let vm = rt.block_on(lab.create_native_vm("deskn", 1, 64));
    rt.block_on(async {
        strata_tests::power_on(&lab.client, vm).await;
        wait_console(
            &lab.client,
            vm,
            0,
            strata_hostagent::vmm::TESTGUEST_READY_MARKER,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    });
    let mut h = logged_in(&lab);
    step_until(
        &mut h,
        "the VM in the inventory",
        Duration::from_secs(30),
        |h| h.state().model.inventory.vms.contains_key(&vm),
    );
    h.state_mut().selection = Some(Selection::Vm(vm));
    h.run_steps(2);
    h.get_by_label("Console").click();
    let connected = |h: &App| {
        matches!(
            h.state().console.view.status(),
            Some(ConsoleStatus::Connected {
                width: 640,
                height: 480
            })
        )
    };
    step_until(
        &mut h,
        "a connected console",
        Duration::from_secs(60),
        connected,
    );
    let opened = |lab: &Lab| {
        rt.block_on(async {
            lab.client
                .call::<strata_shared::api::manager::EventList>(
                    strata_shared::model::EventListParams {
                        object: Some(vm),
                        after_id: None,
                        limit: Some(200),
                    },
                )
                .await
                .unwrap()
                .iter()
                .filter(|e| e.kind == "vm.console.opened")
                .count()
        })
    };
    let before = opened(&lab);
    rt.block_on(async {
        let t = lab
            .client
            .call::<strata_shared::api::manager::VmReset>(strata_shared::model::IdParams { id: vm })
            .await
            .unwrap();
        strata_tests::task_ok(&lab.client, t).await;
    });
    // Dropped, then back by itself (a new ticket: a new "opened" event).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        h.step();
        if connected(&h) && opened(&lab) > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reconnect: {:?}",
            h.state().console.view.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(h);
}
