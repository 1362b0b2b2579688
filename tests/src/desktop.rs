//! Driving the desktop client headless (egui_kittest) against a real manager: a harness at
//! 1280×800, stepping until something shows, logging in.

use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use strata_client::app::{Settings, StrataApp};

use crate::{Lab, PASSWORD};

/// The client under test.
pub type App = Harness<'static, StrataApp>;

/// A harness around `app` at 1280×800.
pub fn harness(app: StrataApp) -> App {
    Harness::builder()
        .with_size([1280.0, 800.0])
        .build_ui_state(|ui, app: &mut StrataApp| app.ui(ui), app)
}

/// Steps the UI (which never blocks; the network runs on its own threads) until `done`;
/// panics naming `what` after `limit`.
pub fn step_until(h: &mut App, what: &str, limit: Duration, done: impl Fn(&App) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        h.step();
        if done(h) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; errors: {:?}; connection: {:?}; dialog: {:?}; \
             console: {:?}",
            h.state().errors,
            h.state().conn,
            h.state().dialog,
            h.state().console.view.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where the inventory tree's rows start, at most (the left panel; a tab or a table may
/// show the same name further right).
const TREE_RIGHT: f32 = 270.0;

/// True when the inventory tree shows a node named `name` (tree rows are selectable, so
/// buttons; table cells are labels).
pub fn tree_node(h: &App, name: &str) -> bool {
    h.query_all_by_role_and_label(Role::Button, name)
        .any(|n| n.rect().min.x < TREE_RIGHT)
}

/// Selects the tree node `name`.
pub fn click_tree_node(h: &mut App, name: &str) {
    h.query_all_by_role_and_label(Role::Button, name)
        .find(|n| n.rect().min.x < TREE_RIGHT)
        .unwrap_or_else(|| panic!("{name} in the tree"))
        .click();
    h.run_steps(2);
}

/// Opens the context menu of the tree node `name`.
pub fn click_tree_node_secondary(h: &mut App, name: &str) {
    h.query_all_by_role_and_label(Role::Button, name)
        .find(|n| n.rect().min.x < TREE_RIGHT)
        .unwrap_or_else(|| panic!("{name} in the tree"))
        .click_secondary();
    h.run_steps(2);
}

/// Replaces the text of a field the way a user does: click, select all, type.
pub fn replace_text(h: &mut App, label: &str, text: &str) {
    h.get_by_role_and_label(Role::TextInput, label).click();
    h.run_steps(2);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, label)
        .type_text(text);
    h.run_steps(3);
}

/// True when the button `label` can be pressed.
pub fn enabled(h: &App, label: &str) -> bool {
    !h.get_by_role_and_label(Role::Button, label)
        .accesskit_node()
        .is_disabled()
}

/// The newest task of `operation` in the client's Recent Tasks has finished well.
pub fn task_succeeded(h: &App, operation: &str) -> bool {
    h.state()
        .model
        .tasks
        .iter()
        .find(|t| t.operation == operation)
        .is_some_and(|t| t.state == strata_shared::model::TaskState::Success)
}

/// Types the password into the connect dialog and presses Connect.
pub fn log_in(h: &mut App) {
    h.get_by_label("Password").click();
    h.step();
    h.get_by_label("Password").type_text(PASSWORD);
    h.step();
    h.get_by_label("Connect").click();
    h.step();
}

/// A client that trusts the lab's manager, logged in as admin (the inventory arrives on
/// the next steps).
pub fn logged_in(lab: &Lab) -> App {
    let mut settings = Settings::default();
    settings
        .trusted
        .insert(lab.server.address.clone(), lab.server.thumbprint.clone());
    let mut app = StrataApp::new(settings);
    app.prefill(Some(lab.server.address.clone()), Some("admin".into()));
    let mut h = harness(app);
    log_in(&mut h);
    h
}

/// Fills the open New VM wizard: `name`, the QEMU engine, 256 MiB, one disk of `disk_mib`,
/// the test guest's kernel and initrd; Create is then enabled (it is not pressed).
pub fn fill_new_vm_wizard(h: &mut App, name: &str, disk_mib: u64) {
    replace_text(h, "Name", name);
    h.get_by_role_and_label(Role::ComboBox, "Engine").click();
    h.run_steps(2);
    h.get_by_label("QEMU").click();
    h.run_steps(2);
    replace_text(h, "Memory (MiB)", "256");
    h.get_by_label("Add disk").click();
    h.run_steps(2);
    replace_text(h, "Disk 1 size", &disk_mib.to_string());
    let g = crate::guest();
    replace_text(h, "Kernel", &g.kernel.display().to_string());
    replace_text(h, "Initrd", &g.initrd.display().to_string());
    assert!(enabled(h, "Create"), "errors: {:?}", h.state().dialog);
}

/// How many tasks Recent Tasks shows as completed.
pub fn completed_count(h: &App) -> usize {
    h.query_all_by_label("Completed").count()
}

/// Waits until VM `vm` is powered on and its power-on task shows completed in Recent Tasks
/// (one more completed than `completed_before`).
pub fn wait_powered_on(h: &mut App, vm: uuid::Uuid, completed_before: usize) {
    use strata_shared::model::{PowerState, TaskState};
    step_until(h, "the VM to power on", Duration::from_secs(120), |h| {
        h.state().model.inventory.vms[&vm].power_state == PowerState::PoweredOn
    });
    step_until(
        h,
        "the power-on task to complete in Recent Tasks",
        Duration::from_secs(60),
        |h| {
            h.state()
                .model
                .tasks
                .iter()
                .any(|t| t.operation == "vm.powerOn" && t.state == TaskState::Success)
                && completed_count(h) == completed_before + 1
        },
    );
}

/// Shows the selected VM's Console tab and waits until its session is connected.
pub fn open_console_tab(h: &mut App) {
    use strata_client::app::console::ConsoleStatus;
    use strata_client::app::Tab;
    h.get_by_label("Console").click();
    h.run_steps(2);
    assert_eq!(h.state().tab, Tab::Console);
    step_until(h, "a connected console", Duration::from_secs(60), |h| {
        matches!(
            h.state().console.view.status(),
            Some(ConsoleStatus::Connected { .. })
        )
    });
}
