//! Strata's power port: the guest writes port 0xf4 to power off (the same port QEMU's
//! `isa-debug-exit` uses by default), and learns of a host shutdown request ("power
//! button") from IRQ 5 and bit 0 of port 0xf5.

use super::EventTrigger;
use crate::vmm::devices::PioDevice;

/// First port.
pub const BASE: u16 = 0xf4;
/// Ports covered.
pub const LEN: u16 = 2;
/// The IRQ line raised for a shutdown request.
pub const IRQ: u32 = 5;
/// Event bit: the host asks the guest to shut down.
pub const EVENT_SHUTDOWN: u8 = 1;

/// The power port.
pub struct PowerPort {
    power_off: EventTrigger,
    pending: u8,
}

impl PowerPort {
    /// A port whose power-off write fires `power_off`.
    pub fn new(power_off: EventTrigger) -> Self {
        Self {
            power_off,
            pending: 0,
        }
    }

    /// Pending events (for a snapshot).
    pub fn pending(&self) -> u8 {
        self.pending
    }

    /// Sets the pending events (restoring a snapshot).
    pub fn set_pending(&mut self, pending: u8) {
        self.pending = pending;
    }

    /// Records a shutdown request (the caller then raises [`IRQ`]).
    pub fn request_shutdown(&mut self) {
        self.pending |= EVENT_SHUTDOWN;
    }
}

impl PioDevice for PowerPort {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0);
        if offset == 1 {
            if let Some(first) = data.first_mut() {
                *first = std::mem::take(&mut self.pending);
            }
        }
    }

    fn write(&mut self, offset: u16, _data: &[u8]) {
        if offset == 0 {
            if let Err(e) = self.power_off.fire() {
                tracing::warn!(error = %e, "guest power-off lost");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::VmmEvent;

    #[test]
    fn power_off_and_shutdown_request() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let mut p = PowerPort::new(EventTrigger::new(tx, || VmmEvent::PowerOff));
        let mut b = [9u8];
        p.read(1, &mut b);
        assert_eq!(b, [0]);
        p.request_shutdown();
        p.read(1, &mut b);
        assert_eq!(b, [EVENT_SHUTDOWN]);
        p.read(1, &mut b);
        assert_eq!(b, [0], "reading clears the event");
        p.write(1, &[0]);
        assert!(rx.try_recv().is_err());
        p.write(0, &[0]);
        assert!(matches!(rx.try_recv(), Ok(VmmEvent::PowerOff)));
    }
}
