//! The VM console (the Console tab of a VM).
//!
//! - [`transport`]: a [`Connector`] opens the RFB byte stream, either through the host
//!   agent's TLS WebSocket gateway with a fresh [`ConsoleTicket`](strata_shared::model::ConsoleTicket)
//!   each time ([`Connector::tickets`]) or over a plain socket;
//! - [`session`]: a tokio task runs the RFB client (vnc-rs) over it, reconnects with back-off,
//!   and talks to the UI over two bounded channels ([`ConsoleUpdate`] out, [`ConsoleInput`] in);
//! - [`framebuffer`]: the screen copy that turns rectangles into partial texture uploads;
//! - [`keys`]: egui keyboard events → X11 keysyms;
//! - [`view`]: the egui widget.
//!
//! The app opens a session when the Console tab of a running VM is shown and drops it (which
//! ends it) when the tab is left: see [`ConsoleTab::sync`].

pub mod framebuffer;
pub mod keys;
pub mod session;
pub mod transport;
pub mod view;

pub use session::{
    ConsoleInput, ConsoleSession, ConsoleStatus, ConsoleUpdate, SessionOptions, SessionStats,
};
pub use transport::{Connector, TicketSource, TransportError};
pub use view::ConsoleView;

use strata_shared::model::PowerState;
use uuid::Uuid;

use super::model::Selection;
use super::{View, ViewCtx};

/// The Console tab: the view, and which VM its session is for.
#[derive(Debug, Default)]
pub struct ConsoleTab {
    /// The widget (and the session inside it).
    pub view: ConsoleView,
    vm: Option<Uuid>,
    /// Why no session could be started, in words.
    start_error: Option<String>,
}

impl ConsoleTab {
    /// The VM whose console is open.
    pub fn vm(&self) -> Option<Uuid> {
        self.vm
    }

    /// Makes the open console match `wanted`: starts a session (with `start`) for a newly
    /// wanted VM, ends the one for a VM no longer wanted. Called once per frame.
    pub fn sync(
        &mut self,
        wanted: Option<Uuid>,
        start: impl FnOnce(Uuid) -> Result<ConsoleSession, String>,
    ) {
        if wanted == self.vm {
            return;
        }
        self.view.close();
        self.vm = wanted;
        self.start_error = None;
        if let Some(vm) = wanted {
            tracing::debug!(%vm, "opening the console");
            match start(vm) {
                Ok(session) => self.view.open(session),
                Err(e) => self.start_error = Some(e),
            }
        }
    }
}

/// Why a VM in this power state has no console to show, or `None` when it has one.
pub fn unavailable_reason(state: PowerState) -> Option<&'static str> {
    match state {
        PowerState::PoweredOn | PowerState::Paused => None,
        PowerState::PoweredOff => Some("This VM is powered off. Power it on to use its console."),
        PowerState::Suspended => {
            Some("This VM is suspended. Power it on to resume it and use its console.")
        }
        PowerState::Unknown => {
            Some("This VM's host is not connected, so its console cannot be reached.")
        }
    }
}

impl View for ConsoleTab {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCtx<'_>) {
        let Some(Selection::Vm(id)) = cx.selection else {
            return;
        };
        let Some(vm) = cx.model.inventory.vms.get(&id) else {
            return;
        };
        if let Some(reason) = unavailable_reason(vm.power_state) {
            ui.add_space(12.0);
            ui.label(reason);
            return;
        }
        if let Some(e) = &self.start_error {
            ui.colored_label(super::theme::ERROR, e);
            return;
        }
        self.view.show(ui);
    }
}
