//! X keysyms (what an RFB KeyEvent carries) to PS/2 set-1 scan codes (what a guest reads
//! from port 0x60 with the i8042's translation on), for a US keyboard.
//!
//! A keysym names a symbol, a scan code a key: '!' is Shift + '1'. The [`Keyboard`]
//! tracks the client's Shift keys; when a symbol needs Shift and the client holds none
//! (a viewer on another layout, or a script sending '!' alone), the key's make code is
//! wrapped in Left Shift make / break so the guest sees the symbol that was meant. When a
//! symbol needs no Shift but the client holds it, the codes go as they are. Modifiers,
//! arrows, the editing block and F1–F12 map one to one (0xe0-prefixed where the key is an
//! extended one), so Ctrl+Alt+Del arrives as the three keys.

use crate::vmm::devices::legacy::keymap::{key_for, BREAK, LSHIFT};

/// Right Shift, make code.
const RSHIFT: u8 = 0x36;
/// The extended-key prefix.
const EXT: u8 = 0xe0;

/// Keysym constants (X11 keysymdef.h) this map knows besides Latin-1.
pub mod sym {
    pub const BACKSPACE: u32 = 0xff08;
    pub const TAB: u32 = 0xff09;
    pub const RETURN: u32 = 0xff0d;
    pub const PAUSE: u32 = 0xff13;
    pub const SCROLL_LOCK: u32 = 0xff14;
    pub const ESCAPE: u32 = 0xff1b;
    pub const HOME: u32 = 0xff50;
    pub const LEFT: u32 = 0xff51;
    pub const UP: u32 = 0xff52;
    pub const RIGHT: u32 = 0xff53;
    pub const DOWN: u32 = 0xff54;
    pub const PAGE_UP: u32 = 0xff55;
    pub const PAGE_DOWN: u32 = 0xff56;
    pub const END: u32 = 0xff57;
    pub const PRINT: u32 = 0xff61;
    pub const INSERT: u32 = 0xff63;
    pub const MENU: u32 = 0xff67;
    pub const NUM_LOCK: u32 = 0xff7f;
    pub const KP_ENTER: u32 = 0xff8d;
    pub const KP_MULTIPLY: u32 = 0xffaa;
    pub const KP_ADD: u32 = 0xffab;
    pub const KP_SUBTRACT: u32 = 0xffad;
    pub const KP_DECIMAL: u32 = 0xffae;
    pub const KP_DIVIDE: u32 = 0xffaf;
    pub const KP_0: u32 = 0xffb0;
    pub const F1: u32 = 0xffbe;
    pub const F12: u32 = 0xffc9;
    pub const SHIFT_L: u32 = 0xffe1;
    pub const SHIFT_R: u32 = 0xffe2;
    pub const CONTROL_L: u32 = 0xffe3;
    pub const CONTROL_R: u32 = 0xffe4;
    pub const CAPS_LOCK: u32 = 0xffe5;
    pub const META_L: u32 = 0xffe7;
    pub const META_R: u32 = 0xffe8;
    pub const ALT_L: u32 = 0xffe9;
    pub const ALT_R: u32 = 0xffea;
    pub const SUPER_L: u32 = 0xffeb;
    pub const SUPER_R: u32 = 0xffec;
    pub const DELETE: u32 = 0xffff;
    pub const ISO_LEVEL3_SHIFT: u32 = 0xfe03;
    pub const ISO_LEFT_TAB: u32 = 0xfe20;
}

/// One key: its set-1 make code, whether it is an extended (0xe0) key, and whether the
/// symbol needs Shift (None: either way, e.g. a modifier or an arrow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Make code (break = make | 0x80).
    pub code: u8,
    /// Sent with the 0xe0 prefix.
    pub extended: bool,
    /// Some(true): the symbol is the shifted one; Some(false): the plain one.
    pub shift: Option<bool>,
}

const fn plain(code: u8) -> Key {
    Key {
        code,
        extended: false,
        shift: None,
    }
}

const fn ext(code: u8) -> Key {
    Key {
        code,
        extended: true,
        shift: None,
    }
}

/// The key of a keysym, None for keysyms a US keyboard does not have.
pub fn key_for_keysym(keysym: u32) -> Option<Key> {
    use sym::*;
    if (0x20..=0x7e).contains(&keysym) {
        let (code, shift) = key_for(char::from(keysym as u8))?;
        return Some(Key {
            code,
            extended: false,
            shift: Some(shift),
        });
    }
    // Keypad digits 0–9.
    const KP_DIGITS: [u8; 10] = [0x52, 0x4f, 0x50, 0x51, 0x4b, 0x4c, 0x4d, 0x47, 0x48, 0x49];
    Some(match keysym {
        BACKSPACE => plain(0x0e),
        TAB => plain(0x0f),
        ISO_LEFT_TAB => Key {
            code: 0x0f,
            extended: false,
            shift: Some(true),
        },
        RETURN => plain(0x1c),
        ESCAPE => plain(0x01),
        SCROLL_LOCK => plain(0x46),
        NUM_LOCK => plain(0x45),
        CAPS_LOCK => plain(0x3a),
        HOME => ext(0x47),
        LEFT => ext(0x4b),
        UP => ext(0x48),
        RIGHT => ext(0x4d),
        DOWN => ext(0x50),
        PAGE_UP => ext(0x49),
        PAGE_DOWN => ext(0x51),
        END => ext(0x4f),
        INSERT => ext(0x52),
        DELETE => ext(0x53),
        PRINT => ext(0x37),
        MENU => ext(0x5d),
        KP_ENTER => ext(0x1c),
        KP_DIVIDE => ext(0x35),
        KP_MULTIPLY => plain(0x37),
        KP_ADD => plain(0x4e),
        KP_SUBTRACT => plain(0x4a),
        KP_DECIMAL => plain(0x53),
        k if (KP_0..KP_0 + 10).contains(&k) => plain(KP_DIGITS[(k - KP_0) as usize]),
        // F1–F10 are 0x3b–0x44; F11 and F12 are 0x57, 0x58.
        k if (F1..F1 + 10).contains(&k) => plain(0x3b + (k - F1) as u8),
        k if k == F1 + 10 => plain(0x57),
        F12 => plain(0x58),
        SHIFT_L => plain(LSHIFT),
        SHIFT_R => plain(RSHIFT),
        CONTROL_L => plain(0x1d),
        CONTROL_R => ext(0x1d),
        ALT_L | META_L => plain(0x38),
        ALT_R | META_R | ISO_LEVEL3_SHIFT => ext(0x38),
        SUPER_L => ext(0x5b),
        SUPER_R => ext(0x5c),
        _ => return None,
    })
}

/// The client's keyboard as the guest sees it: which Shift keys are down.
#[derive(Debug, Default, Clone)]
pub struct Keyboard {
    left_shift: bool,
    right_shift: bool,
}

impl Keyboard {
    /// The scan codes of one KeyEvent (None: a keysym without a key, ignored).
    pub fn event(&mut self, down: bool, keysym: u32) -> Option<Vec<u8>> {
        if keysym == sym::PAUSE {
            // Pause has a make sequence only.
            return down.then(|| vec![0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5]);
        }
        let key = key_for_keysym(keysym)?;
        match keysym {
            sym::SHIFT_L => self.left_shift = down,
            sym::SHIFT_R => self.right_shift = down,
            _ => {}
        }
        let mut out = Vec::with_capacity(6);
        let code = if down { key.code } else { key.code | BREAK };
        let wrap = down && key.shift == Some(true) && !self.left_shift && !self.right_shift;
        if wrap {
            out.push(LSHIFT);
        }
        if key.extended {
            out.push(EXT);
        }
        out.push(code);
        if wrap {
            out.push(LSHIFT | BREAK);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::sym::*;
    use super::*;

    fn press(kb: &mut Keyboard, keysym: u32) -> Vec<u8> {
        let mut v = kb.event(true, keysym).unwrap();
        v.extend(kb.event(false, keysym).unwrap());
        v
    }

    #[test]
    fn letters_digits_and_punctuation_of_a_us_keyboard() {
        let mut kb = Keyboard::default();
        assert_eq!(press(&mut kb, 'a' as u32), vec![0x1e, 0x9e]);
        assert_eq!(press(&mut kb, 'z' as u32), vec![0x2c, 0xac]);
        assert_eq!(press(&mut kb, '1' as u32), vec![0x02, 0x82]);
        assert_eq!(press(&mut kb, '0' as u32), vec![0x0b, 0x8b]);
        assert_eq!(press(&mut kb, ' ' as u32), vec![0x39, 0xb9]);
        // Every printable ASCII symbol has a key.
        for c in 0x20..=0x7eu32 {
            assert!(key_for_keysym(c).is_some(), "{:?}", char::from_u32(c));
        }
        for (c, code) in [
            ('-', 0x0c),
            ('=', 0x0d),
            ('[', 0x1a),
            (']', 0x1b),
            (';', 0x27),
            ('\'', 0x28),
            ('`', 0x29),
            ('\\', 0x2b),
            (',', 0x33),
            ('.', 0x34),
            ('/', 0x35),
        ] {
            assert_eq!(key_for_keysym(c as u32).map(|k| k.code), Some(code), "{c}");
        }
        // Latin-1 beyond ASCII and unknown keysyms have no key.
        assert_eq!(kb.event(true, 0xe9), None);
        assert_eq!(kb.event(true, 0x1234_5678), None);
    }

    #[test]
    fn shifted_symbols_arrive_shifted_without_the_client_shift() {
        let mut kb = Keyboard::default();
        // '!' alone: Shift make, '1' make, Shift break … '1' break.
        assert_eq!(press(&mut kb, '!' as u32), vec![0x2a, 0x02, 0xaa, 0x82]);
        assert_eq!(press(&mut kb, 'A' as u32), vec![0x2a, 0x1e, 0xaa, 0x9e]);
        for (c, code) in [
            ('@', 0x03),
            ('~', 0x29),
            ('|', 0x2b),
            ('?', 0x35),
            ('"', 0x28),
        ] {
            assert_eq!(
                press(&mut kb, c as u32),
                vec![0x2a, code, 0xaa, code | 0x80],
                "{c}"
            );
        }
        // With the client's Shift held, no extra Shift.
        assert_eq!(kb.event(true, SHIFT_L), Some(vec![0x2a]));
        assert_eq!(press(&mut kb, '!' as u32), vec![0x02, 0x82]);
        assert_eq!(kb.event(false, SHIFT_L), Some(vec![0xaa]));
        assert_eq!(kb.event(true, SHIFT_R), Some(vec![0x36]));
        assert_eq!(press(&mut kb, 'A' as u32), vec![0x1e, 0x9e]);
        // A plain symbol while Shift is held goes as it is.
        assert_eq!(press(&mut kb, '1' as u32), vec![0x02, 0x82]);
        assert_eq!(kb.event(false, SHIFT_R), Some(vec![0xb6]));
        assert_eq!(press(&mut kb, '1' as u32), vec![0x02, 0x82]);
        assert_eq!(press(&mut kb, ISO_LEFT_TAB), vec![0x2a, 0x0f, 0xaa, 0x8f]);
    }

    #[test]
    fn special_keys_modifiers_and_ctrl_alt_del() {
        let mut kb = Keyboard::default();
        for (k, codes) in [
            (RETURN, vec![0x1c, 0x9c]),
            (BACKSPACE, vec![0x0e, 0x8e]),
            (TAB, vec![0x0f, 0x8f]),
            (ESCAPE, vec![0x01, 0x81]),
            (UP, vec![0xe0, 0x48, 0xe0, 0xc8]),
            (DOWN, vec![0xe0, 0x50, 0xe0, 0xd0]),
            (LEFT, vec![0xe0, 0x4b, 0xe0, 0xcb]),
            (RIGHT, vec![0xe0, 0x4d, 0xe0, 0xcd]),
            (HOME, vec![0xe0, 0x47, 0xe0, 0xc7]),
            (END, vec![0xe0, 0x4f, 0xe0, 0xcf]),
            (PAGE_UP, vec![0xe0, 0x49, 0xe0, 0xc9]),
            (PAGE_DOWN, vec![0xe0, 0x51, 0xe0, 0xd1]),
            (INSERT, vec![0xe0, 0x52, 0xe0, 0xd2]),
            (DELETE, vec![0xe0, 0x53, 0xe0, 0xd3]),
            (F1, vec![0x3b, 0xbb]),
            (F1 + 9, vec![0x44, 0xc4]),
            (F1 + 10, vec![0x57, 0xd7]),
            (F12, vec![0x58, 0xd8]),
            (CONTROL_L, vec![0x1d, 0x9d]),
            (CONTROL_R, vec![0xe0, 0x1d, 0xe0, 0x9d]),
            (ALT_L, vec![0x38, 0xb8]),
            (ALT_R, vec![0xe0, 0x38, 0xe0, 0xb8]),
            (SUPER_L, vec![0xe0, 0x5b, 0xe0, 0xdb]),
            (SUPER_R, vec![0xe0, 0x5c, 0xe0, 0xdc]),
            (KP_ENTER, vec![0xe0, 0x1c, 0xe0, 0x9c]),
            (KP_0 + 7, vec![0x47, 0xc7]),
        ] {
            assert_eq!(press(&mut kb, k), codes, "keysym {k:#x}");
        }
        let mut cad = Vec::new();
        for k in [CONTROL_L, ALT_L, DELETE] {
            cad.extend(kb.event(true, k).unwrap());
        }
        for k in [DELETE, ALT_L, CONTROL_L] {
            cad.extend(kb.event(false, k).unwrap());
        }
        assert_eq!(cad, vec![0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d]);
        assert_eq!(kb.event(true, PAUSE).unwrap().len(), 6);
        assert_eq!(kb.event(false, PAUSE), None);
    }
}
