//! Legacy PC devices: the 16550 UART, the i8042 keyboard controller (with its keymap),
//! Strata's power port and the linear framebuffer.

pub mod framebuffer;
pub mod i8042;
pub mod keymap;
pub mod power;
pub mod serial;

use std::sync::mpsc::SyncSender;

use crate::vmm::VmmEvent;

/// A vm-superio trigger that tells the VMM loop about a guest-initiated event.
#[derive(Debug, Clone)]
pub struct EventTrigger {
    events: SyncSender<VmmEvent>,
    event: fn() -> VmmEvent,
}

impl EventTrigger {
    /// A trigger that sends `event()` to `events`.
    pub fn new(events: SyncSender<VmmEvent>, event: fn() -> VmmEvent) -> Self {
        Self { events, event }
    }

    /// Sends the event.
    pub fn fire(&self) -> Result<(), String> {
        self.events
            .send((self.event)())
            .map_err(|_| "the VMM loop is gone".to_string())
    }
}

impl vm_superio::Trigger for EventTrigger {
    type E = String;

    fn trigger(&self) -> Result<(), String> {
        self.fire()
    }
}
