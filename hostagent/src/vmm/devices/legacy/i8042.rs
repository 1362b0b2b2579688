//! The i8042 keyboard controller at ports 0x60–0x64; so far only its CPU reset line
//! (command 0xfe on port 0x64) matters, which resets the VM.

use vm_superio::I8042Device;

use super::EventTrigger;
use crate::vmm::devices::PioDevice;

/// First port.
pub const BASE: u16 = 0x60;
/// Ports covered (0x60 data … 0x64 command/status).
pub const LEN: u16 = 5;

/// The i8042 on the port bus.
pub struct I8042 {
    inner: I8042Device<EventTrigger>,
}

impl I8042 {
    /// An i8042 whose reset line fires `reset`.
    pub fn new(reset: EventTrigger) -> Self {
        Self {
            inner: I8042Device::new(reset),
        }
    }
}

impl PioDevice for I8042 {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0);
        if let (Some(first), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.inner.read(off);
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        if let (Some(&v), Ok(off)) = (data.first(), u8::try_from(offset)) {
            if let Err(e) = self.inner.write(off, v) {
                tracing::warn!(error = %e, "i8042 reset event lost");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::VmmEvent;

    #[test]
    fn command_0xfe_on_port_0x64_resets() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let mut dev = I8042::new(EventTrigger::new(tx, || VmmEvent::Reset));
        dev.write(0, &[0x12]);
        assert!(rx.try_recv().is_err());
        dev.write(4, &[0xfe]);
        assert!(matches!(rx.try_recv(), Ok(VmmEvent::Reset)));
    }
}
