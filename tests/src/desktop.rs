//! Driving the desktop client headless (egui_kittest) against a real manager: a harness at
//! 1280×800, stepping until something shows, logging in.

use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
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
            "timed out waiting for {what}; errors: {:?}; connection: {:?}; console: {:?}",
            h.state().errors,
            h.state().conn,
            h.state().console.view.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when the inventory tree shows a node named `name` (tree rows are selectable, so
/// buttons; table cells are labels).
pub fn tree_node(h: &App, name: &str) -> bool {
    h.query_by_role_and_label(Role::Button, name).is_some()
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
