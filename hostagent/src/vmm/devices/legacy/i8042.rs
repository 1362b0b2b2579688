//! The i8042 keyboard controller at ports 0x60 (data) and 0x64 (status / command), with a
//! PS/2 keyboard behind it: its CPU reset line (command 0xfe), the controller commands and
//! keyboard commands a guest driver issues while probing, and a bounded output queue the
//! host fills with scan codes ([`I8042::push_scancodes`]).
//!
//! Scan codes are stored and delivered as **set 1**, i.e. what a guest reads from port
//! 0x60 with the controller's translation on (command byte bit 6, the PC default): the
//! keyboard nominally speaks set 2 and the controller translates. Each byte moved into the
//! output buffer sets the status register's output-buffer-full bit and, when the command
//! byte enables it, raises IRQ 1 through the in-kernel irqchip (an irqfd).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use vmm_sys_util::eventfd::EventFd;

use super::EventTrigger;
use crate::vmm::devices::PioDevice;

/// First port.
pub const BASE: u16 = 0x60;
/// Ports covered (0x60 data … 0x64 command/status).
pub const LEN: u16 = 5;
/// The keyboard's IRQ line.
pub const IRQ: u32 = 1;
/// Most bytes waiting for the guest.
pub const QUEUE_MAX: usize = 1024;

/// Status: output buffer full.
pub const STATUS_OBF: u8 = 0x01;
/// Status: system flag (self test passed).
const STATUS_SYS: u8 = 0x04;
/// Status: the last write was a command.
const STATUS_CMD: u8 = 0x08;
/// Command byte: keyboard interrupt enabled.
pub const CB_KBD_INT: u8 = 0x01;
/// Command byte: translate to set 1.
const CB_TRANSLATE: u8 = 0x40;
/// Command byte: system flag.
const CB_SYS: u8 = 0x04;

const ACK: u8 = 0xfa;

/// What the next data-port write means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
enum Expect {
    /// A keyboard command.
    #[default]
    KeyboardCommand,
    /// The controller's new command byte (after 0x60).
    CommandByte,
    /// A byte to place in the output buffer as if the keyboard sent it (after 0xd2).
    KeyboardOutput,
    /// A byte for the auxiliary device (after 0xd4): swallowed, there is no mouse.
    AuxByte,
    /// The output port (after 0xd1).
    OutputPort,
    /// The argument of a keyboard command (LEDs, typematic rate, scan code set).
    KeyboardArgument(u8),
}

/// The controller's state, for snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct I8042State {
    command_byte: u8,
    status_cmd: bool,
    expect: Expect,
    queue: Vec<u8>,
}

/// The i8042 on the port bus.
pub struct I8042 {
    reset: EventTrigger,
    irq: Option<EventFd>,
    command_byte: u8,
    status_cmd: bool,
    expect: Expect,
    queue: VecDeque<u8>,
    /// The byte the guest read last (what port 0x60 reads when nothing waits).
    last: u8,
}

impl I8042 {
    /// An i8042 whose reset line fires `reset` and whose keyboard interrupt goes to `irq`.
    pub fn new(reset: EventTrigger, irq: Option<EventFd>) -> Self {
        Self {
            reset,
            irq,
            command_byte: CB_KBD_INT | CB_SYS | CB_TRANSLATE,
            status_cmd: false,
            expect: Expect::KeyboardCommand,
            queue: VecDeque::new(),
            last: 0,
        }
    }

    /// The state (queued bytes included).
    pub fn state(&self) -> I8042State {
        I8042State {
            command_byte: self.command_byte,
            status_cmd: self.status_cmd,
            expect: self.expect,
            queue: self.queue.iter().copied().collect(),
        }
    }

    /// Takes over a snapshot's state (queued bytes beyond [`QUEUE_MAX`] are dropped); the
    /// guest's pending interrupt, if any, is part of the irqchip's own state.
    pub fn restore(&mut self, s: &I8042State) {
        self.command_byte = s.command_byte;
        self.status_cmd = s.status_cmd;
        self.expect = s.expect;
        self.queue = s.queue.iter().take(QUEUE_MAX).copied().collect();
    }

    /// Bytes still waiting for the guest.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Queues set-1 scan codes from the keyboard. All or nothing: refused (false) when the
    /// queue has no room for every byte.
    pub fn push_scancodes(&mut self, codes: &[u8]) -> bool {
        if self.queue.len() + codes.len() > QUEUE_MAX {
            return false;
        }
        let was_empty = self.queue.is_empty();
        self.queue.extend(codes);
        if was_empty && !codes.is_empty() {
            self.interrupt();
        }
        true
    }

    /// A controller response: goes ahead of queued keys.
    fn respond(&mut self, bytes: &[u8]) {
        let was_empty = self.queue.is_empty();
        for b in bytes.iter().rev() {
            if self.queue.len() >= QUEUE_MAX {
                self.queue.pop_back();
            }
            self.queue.push_front(*b);
        }
        if was_empty {
            self.interrupt();
        }
    }

    /// Raises IRQ 1 for the byte now in the output buffer, when the guest enabled it.
    fn interrupt(&self) {
        if self.command_byte & CB_KBD_INT == 0 {
            return;
        }
        if let Some(irq) = &self.irq {
            if let Err(e) = irq.write(1) {
                tracing::warn!(error = %e, "i8042 interrupt lost");
            }
        }
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_SYS;
        if !self.queue.is_empty() {
            s |= STATUS_OBF;
        }
        if self.status_cmd {
            s |= STATUS_CMD;
        }
        s
    }

    fn read_data(&mut self) -> u8 {
        if let Some(b) = self.queue.pop_front() {
            self.last = b;
            if !self.queue.is_empty() {
                // The next byte moves into the output buffer.
                self.interrupt();
            }
        }
        self.last
    }

    fn command(&mut self, cmd: u8) {
        self.status_cmd = true;
        self.expect = Expect::KeyboardCommand;
        match cmd {
            0x20 => self.respond(&[self.command_byte]),
            0x60 => self.expect = Expect::CommandByte,
            0xa9 => self.respond(&[0x00]), // aux interface test: ok
            0xaa => self.respond(&[0x55]), // self test: ok
            0xab => self.respond(&[0x00]), // keyboard interface test: ok
            0xd0 => self.respond(&[0x01]), // output port: reset line high (not in reset)
            0xd1 => self.expect = Expect::OutputPort,
            0xd2 => self.expect = Expect::KeyboardOutput,
            0xd4 => self.expect = Expect::AuxByte,
            0xfe => {
                if let Err(e) = self.reset.fire() {
                    tracing::warn!(error = %e, "i8042 reset event lost");
                }
            }
            // 0xa7/0xa8 aux off/on, 0xad/0xae keyboard off/on and the rest: accepted.
            _ => {}
        }
    }

    fn data(&mut self, v: u8) {
        self.status_cmd = false;
        match std::mem::take(&mut self.expect) {
            Expect::CommandByte => self.command_byte = v,
            Expect::KeyboardOutput => self.respond(&[v]),
            Expect::AuxByte => {}
            Expect::OutputPort => {
                // Bit 0 low pulls the CPU's reset line.
                if v & 1 == 0 {
                    if let Err(e) = self.reset.fire() {
                        tracing::warn!(error = %e, "i8042 reset event lost");
                    }
                }
            }
            Expect::KeyboardArgument(cmd) => match (cmd, v) {
                (0xf0, 0) => self.respond(&[ACK, 0x41]), // current set: 2 (translated)
                _ => self.respond(&[ACK]),
            },
            Expect::KeyboardCommand => match v {
                0xff => {
                    // Reset: drop queued keys, acknowledge, self test passed.
                    self.queue.clear();
                    self.respond(&[ACK, 0xaa]);
                }
                0xf2 => self.respond(&[ACK, 0xab, 0x41]), // identify: MF2, translated
                0xee => self.respond(&[0xee]),            // echo
                0xed | 0xf0 | 0xf3 => {
                    self.expect = Expect::KeyboardArgument(v);
                    self.respond(&[ACK]);
                }
                _ => self.respond(&[ACK]),
            },
        }
    }
}

impl PioDevice for I8042 {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0);
        let v = match offset {
            0 => self.read_data(),
            4 => self.status(),
            _ => 0,
        };
        if let Some(first) = data.first_mut() {
            *first = v;
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        let Some(&v) = data.first() else {
            return;
        };
        match offset {
            0 => self.data(v),
            4 => self.command(v),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::VmmEvent;

    fn dev() -> (
        I8042,
        EventFd,
        std::sync::mpsc::Receiver<crate::vmm::VmmEvent>,
    ) {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let d = I8042::new(
            EventTrigger::new(tx, || VmmEvent::Reset),
            Some(irq.try_clone().unwrap()),
        );
        (d, irq, rx)
    }

    fn inb(d: &mut I8042, port: u16) -> u8 {
        let mut b = [0u8];
        d.read(port, &mut b);
        b[0]
    }

    #[test]
    fn command_0xfe_on_port_0x64_resets() {
        let (mut d, _irq, rx) = dev();
        d.write(0, &[0x12]);
        assert!(rx.try_recv().is_err());
        d.write(4, &[0xfe]);
        assert!(matches!(rx.try_recv(), Ok(VmmEvent::Reset)));
        // So does pulling bit 0 of the output port low.
        d.write(4, &[0xd1]);
        d.write(0, &[0xfe]);
        assert!(matches!(rx.try_recv(), Ok(VmmEvent::Reset)));
    }

    #[test]
    fn keys_set_the_output_buffer_bit_and_raise_irq1_one_byte_at_a_time() {
        let (mut d, irq, _rx) = dev();
        assert_eq!(inb(&mut d, 4) & STATUS_OBF, 0);
        assert!(d.push_scancodes(&[0x1e, 0x9e]));
        assert_eq!(irq.read().unwrap(), 1, "the first byte raised IRQ 1");
        assert_ne!(inb(&mut d, 4) & STATUS_OBF, 0);
        assert_eq!(inb(&mut d, 0), 0x1e);
        assert_eq!(irq.read().unwrap(), 1, "the next byte raised it again");
        assert_eq!(inb(&mut d, 0), 0x9e);
        assert_eq!(inb(&mut d, 4) & STATUS_OBF, 0);
        assert!(irq.read().is_err(), "no interrupt without a byte");
        // Interrupts off in the command byte: bytes still arrive, silently.
        d.write(4, &[0x60]);
        d.write(0, &[0x44]);
        assert!(d.push_scancodes(&[0x10]));
        assert!(irq.read().is_err());
        assert_eq!(inb(&mut d, 0), 0x10);
        // The queue is bounded: all or nothing.
        assert!(d.push_scancodes(&vec![0x1e; QUEUE_MAX]));
        assert!(!d.push_scancodes(&[0x1e]));
        assert_eq!(d.pending(), QUEUE_MAX);
    }

    #[test]
    fn answers_what_a_driver_asks_while_probing() {
        let (mut d, _irq, _rx) = dev();
        d.write(4, &[0xaa]);
        assert_eq!(inb(&mut d, 0), 0x55);
        d.write(4, &[0x20]);
        assert_eq!(inb(&mut d, 0), CB_KBD_INT | CB_SYS | CB_TRANSLATE);
        d.write(0, &[0xff]);
        assert_eq!((inb(&mut d, 0), inb(&mut d, 0)), (ACK, 0xaa));
        d.write(0, &[0xf2]);
        assert_eq!(
            (inb(&mut d, 0), inb(&mut d, 0), inb(&mut d, 0)),
            (ACK, 0xab, 0x41)
        );
        d.write(0, &[0xed]);
        assert_eq!(inb(&mut d, 0), ACK);
        d.write(0, &[0x07]);
        assert_eq!(inb(&mut d, 0), ACK);
        d.write(4, &[0xd2]);
        d.write(0, &[0x33]);
        assert_eq!(inb(&mut d, 0), 0x33);
        // A response goes ahead of queued keys.
        assert!(d.push_scancodes(&[0x1e]));
        d.write(0, &[0xee]);
        assert_eq!((inb(&mut d, 0), inb(&mut d, 0)), (0xee, 0x1e));
        // State round-trips.
        assert!(d.push_scancodes(&[1, 2, 3]));
        let s = d.state();
        let (mut e, _i, _r) = dev();
        e.restore(&s);
        assert_eq!(e.state(), s);
        assert_eq!(inb(&mut e, 0), 1);
    }
}
