//! The 16550 UART (COM1 at 0x3f8, IRQ 4) over vm-superio: output goes to a writer (the VM's
//! serial.log), input is queued from the serial socket, interrupts go through an irqfd.

use std::io::Write;

use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::vmm::devices::PioDevice;

/// COM1.
pub const BASE: u16 = 0x3f8;
/// Registers.
pub const LEN: u16 = 8;
/// COM1's IRQ line.
pub const IRQ: u32 = 4;

/// Raises the UART's interrupt by writing its irqfd.
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The UART on the port bus.
pub struct SerialDevice {
    inner: Serial<IrqTrigger, NoEvents, Box<dyn Write + Send>>,
}

impl SerialDevice {
    /// A UART that writes guest output to `out` and signals `irq`.
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> Self {
        Self {
            inner: Serial::new(IrqTrigger(irq), out),
        }
    }

    /// A UART with the registers and queued input of `state`.
    pub fn from_state(
        state: &vm_superio::SerialState,
        irq: EventFd,
        out: Box<dyn Write + Send>,
    ) -> Result<Self, String> {
        Serial::from_state(state, IrqTrigger(irq), NoEvents, out)
            .map(|inner| Self { inner })
            .map_err(|e| format!("bad serial state: {e:?}"))
    }

    /// The registers and queued input, for a snapshot.
    pub fn state(&self) -> vm_superio::SerialState {
        self.inner.state()
    }

    /// Queues input for the guest; returns how many bytes fit (0 when the FIFO is full).
    pub fn enqueue(&mut self, input: &[u8]) -> usize {
        let room = self.inner.fifo_capacity().min(input.len());
        if room == 0 {
            return 0;
        }
        self.inner.enqueue_raw_bytes(&input[..room]).unwrap_or(0)
    }
}

impl PioDevice for SerialDevice {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0);
        if let (Some(first), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.inner.read(off);
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        if let (Some(&v), Ok(off)) = (data.first(), u8::try_from(offset)) {
            if let Err(e) = self.inner.write(off, v) {
                tracing::debug!(error = ?e, "serial write failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_reaches_the_writer_and_input_raises_the_irq() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let sink = Sink::default();
        let mut dev = SerialDevice::new(irq.try_clone().unwrap(), Box::new(sink.clone()));
        for b in b"hi\n" {
            dev.write(0, &[*b]);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi\n");
        let mut lsr = [0u8];
        dev.read(5, &mut lsr);
        assert_eq!(lsr[0] & 0x01, 0, "nothing to read yet");
        assert_ne!(lsr[0] & 0x20, 0, "transmitter empty");
        dev.write(1, &[0x01]); // IER: interrupt on received data
        assert_eq!(dev.enqueue(b"ok"), 2);
        assert!(
            irq.read().unwrap() >= 1,
            "received data raised the interrupt"
        );
        dev.read(5, &mut lsr);
        assert_eq!(lsr[0] & 0x01, 1);
        let mut c = [0u8];
        dev.read(0, &mut c);
        assert_eq!(c, [b'o']);
        dev.read(0, &mut c);
        assert_eq!(c, [b'k']);
        // The FIFO is bounded: input beyond it is refused, not dropped.
        let big = [b'x'; 200];
        let took = dev.enqueue(&big);
        assert!(took > 0 && took < 200);
        assert_eq!(dev.enqueue(&big), 0);
    }
}
