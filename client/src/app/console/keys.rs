//! egui keyboard events → X11 keysyms (what RFB key events carry).
//!
//! Printable characters come from egui's `Text` events, which already heed the local
//! keyboard layout and Shift; a character that needs Shift on a US layout is wrapped in a
//! Shift press when Shift is not held on the remote side, because QEMU turns keysyms into
//! scancodes with its own keymap and would otherwise type `1` for `!`. Keys without text
//! (Enter, arrows, F-keys, modifiers…) come from `Key` events with their press and
//! release. While Ctrl is held egui sends no text, so letters are taken from `Key` events
//! then, and egui's clipboard events (Ctrl+C/X/V) become those key presses again.

use std::collections::BTreeSet;

use egui::{Event, Key, Modifiers};

/// `XK_Shift_L`.
pub const SHIFT_L: u32 = 0xffe1;
/// `XK_Shift_R`.
pub const SHIFT_R: u32 = 0xffe2;
/// `XK_Control_L`.
pub const CONTROL_L: u32 = 0xffe3;
/// `XK_Alt_L`.
pub const ALT_L: u32 = 0xffe9;
/// `XK_Delete`.
pub const DELETE: u32 = 0xffff;
/// `XK_Return`.
pub const RETURN: u32 = 0xff0d;

/// One key going down or up on the remote keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAction {
    /// X11 keysym.
    pub keysym: u32,
    /// Pressed (true) or released.
    pub down: bool,
}

impl KeyAction {
    /// Key down.
    pub fn down(keysym: u32) -> Self {
        KeyAction { keysym, down: true }
    }
    /// Key up.
    pub fn up(keysym: u32) -> Self {
        KeyAction {
            keysym,
            down: false,
        }
    }
}

/// The keysym of a key that types no text (or `None` for a printable key).
pub fn special_keysym(key: Key) -> Option<u32> {
    Some(match key {
        Key::Escape => 0xff1b,
        Key::Tab => 0xff09,
        Key::Backspace => 0xff08,
        Key::Enter => RETURN,
        Key::Insert => 0xff63,
        Key::Delete => DELETE,
        Key::Home => 0xff50,
        Key::End => 0xff57,
        Key::PageUp => 0xff55,
        Key::PageDown => 0xff56,
        Key::ArrowLeft => 0xff51,
        Key::ArrowUp => 0xff52,
        Key::ArrowRight => 0xff53,
        Key::ArrowDown => 0xff54,
        Key::ShiftLeft => SHIFT_L,
        Key::ShiftRight => SHIFT_R,
        Key::ControlLeft => CONTROL_L,
        Key::ControlRight => 0xffe4,
        Key::AltLeft => ALT_L,
        Key::AltRight => 0xffea,
        Key::SuperLeft => 0xffeb,
        Key::SuperRight => 0xffec,
        Key::CapsLock => 0xffe5,
        Key::NumLock => 0xff7f,
        Key::ScrollLock => 0xff14,
        Key::PrintScreen => 0xff61,
        Key::Pause => 0xff13,
        Key::Menu => 0xff67,
        Key::Help => 0xff6a,
        Key::Clear => 0xff0b,
        Key::F1 => 0xffbe,
        Key::F2 => 0xffbf,
        Key::F3 => 0xffc0,
        Key::F4 => 0xffc1,
        Key::F5 => 0xffc2,
        Key::F6 => 0xffc3,
        Key::F7 => 0xffc4,
        Key::F8 => 0xffc5,
        Key::F9 => 0xffc6,
        Key::F10 => 0xffc7,
        Key::F11 => 0xffc8,
        Key::F12 => 0xffc9,
        Key::F13 => 0xffca,
        Key::F14 => 0xffcb,
        Key::F15 => 0xffcc,
        Key::F16 => 0xffcd,
        Key::F17 => 0xffce,
        Key::F18 => 0xffcf,
        Key::F19 => 0xffd0,
        Key::F20 => 0xffd1,
        Key::F21 => 0xffd2,
        Key::F22 => 0xffd3,
        Key::F23 => 0xffd4,
        Key::F24 => 0xffd5,
        _ => return None,
    })
}

/// The unshifted character a printable key types on a US layout (for keys pressed with
/// Ctrl, when egui sends no text).
pub fn key_char(key: Key) -> Option<char> {
    Some(match key {
        Key::Space => ' ',
        Key::Colon => ':',
        Key::Comma => ',',
        Key::Backslash => '\\',
        Key::Slash => '/',
        Key::Pipe => '|',
        Key::Questionmark => '?',
        Key::Exclamationmark => '!',
        Key::OpenBracket => '[',
        Key::CloseBracket => ']',
        Key::OpenCurlyBracket => '{',
        Key::CloseCurlyBracket => '}',
        Key::Backtick => '`',
        Key::Minus => '-',
        Key::Period => '.',
        Key::Plus => '+',
        Key::Equals => '=',
        Key::Semicolon => ';',
        Key::Quote => '\'',
        Key::IntlBackslash => '\\',
        Key::Num0 => '0',
        Key::Num1 => '1',
        Key::Num2 => '2',
        Key::Num3 => '3',
        Key::Num4 => '4',
        Key::Num5 => '5',
        Key::Num6 => '6',
        Key::Num7 => '7',
        Key::Num8 => '8',
        Key::Num9 => '9',
        other => {
            // Letters: egui names them "A".."Z".
            let name = other.name();
            let mut chars = name.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii_alphabetic() => c.to_ascii_lowercase(),
                _ => return None,
            }
        }
    })
}

/// The keysym of a character: Latin-1 maps to itself, the rest of Unicode to
/// `0x0100_0000 + code point` (X11's rule); newline and tab to Return and Tab.
pub fn char_keysym(c: char) -> u32 {
    match c {
        '\n' | '\r' => RETURN,
        '\t' => 0xff09,
        c if (' '..='~').contains(&c) || ('\u{a0}'..='\u{ff}').contains(&c) => u32::from(c),
        c => 0x0100_0000 + u32::from(c),
    }
}

/// True when a US keyboard types `c` with Shift.
pub fn needs_shift(c: char) -> bool {
    c.is_ascii_uppercase() || "~!@#$%^&*()_+{}|:\"<>?".contains(c)
}

/// The press and release of Ctrl+Alt+Del.
pub fn ctrl_alt_del() -> Vec<KeyAction> {
    vec![
        KeyAction::down(CONTROL_L),
        KeyAction::down(ALT_L),
        KeyAction::down(DELETE),
        KeyAction::up(DELETE),
        KeyAction::up(ALT_L),
        KeyAction::up(CONTROL_L),
    ]
}

/// Turns egui events into key actions and remembers which keys are down on the remote side,
/// so they can be released when the view loses focus (no stuck Ctrl in the guest).
#[derive(Debug, Default)]
pub struct Keyboard {
    held: BTreeSet<u32>,
}

fn commanding(m: &Modifiers) -> bool {
    m.ctrl || m.command || m.mac_cmd
}

impl Keyboard {
    /// Keys currently held down on the remote side.
    pub fn held(&self) -> impl Iterator<Item = u32> + '_ {
        self.held.iter().copied()
    }

    fn shift_held(&self) -> bool {
        self.held.contains(&SHIFT_L) || self.held.contains(&SHIFT_R)
    }

    fn press(&mut self, keysym: u32, down: bool, out: &mut Vec<KeyAction>) {
        if down {
            self.held.insert(keysym);
        } else if !self.held.remove(&keysym) {
            // A release for a press the remote never saw (e.g. focus came mid-press).
            return;
        }
        out.push(KeyAction { keysym, down });
    }

    fn tap(&mut self, keysym: u32, out: &mut Vec<KeyAction>) {
        out.push(KeyAction::down(keysym));
        out.push(KeyAction::up(keysym));
    }

    fn type_char(&mut self, c: char, out: &mut Vec<KeyAction>) {
        let shift = needs_shift(c) && !self.shift_held();
        if shift {
            out.push(KeyAction::down(SHIFT_L));
        }
        self.tap(char_keysym(c), out);
        if shift {
            out.push(KeyAction::up(SHIFT_L));
        }
    }

    /// Appends the key actions for one egui event (events that are not keyboard input add
    /// nothing).
    pub fn translate(&mut self, event: &Event, out: &mut Vec<KeyAction>) {
        match event {
            Event::Key {
                key,
                pressed,
                modifiers,
                ..
            } => {
                if let Some(sym) = special_keysym(*key) {
                    self.press(sym, *pressed, out);
                } else if let Some(c) = key_char(*key) {
                    // With Ctrl egui sends no text: the key itself is the input. Without, the
                    // Text event types it, except for a release of a key pressed with Ctrl.
                    let sym = char_keysym(c);
                    if commanding(modifiers) || (!*pressed && self.held.contains(&sym)) {
                        self.press(sym, *pressed, out);
                    }
                }
            }
            Event::Text(text) => {
                for c in text.chars() {
                    self.type_char(c, out);
                }
            }
            // egui turns Ctrl+C/X/V into clipboard events; the guest gets the keys (Ctrl is
            // already down there).
            Event::Copy => self.tap(u32::from('c'), out),
            Event::Cut => self.tap(u32::from('x'), out),
            Event::Paste(_) => self.tap(u32::from('v'), out),
            _ => {}
        }
    }

    /// Releases every key held on the remote side (focus lost, view closed).
    pub fn release_all(&mut self, out: &mut Vec<KeyAction>) {
        for sym in std::mem::take(&mut self.held).into_iter().rev() {
            out.push(KeyAction::up(sym));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key: Key, pressed: bool, modifiers: Modifiers) -> Event {
        Event::Key {
            key,
            physical_key: None,
            pressed,
            repeat: false,
            modifiers,
        }
    }

    fn run(kb: &mut Keyboard, events: &[Event]) -> Vec<(u32, bool)> {
        let mut out = Vec::new();
        for e in events {
            kb.translate(e, &mut out);
        }
        out.into_iter().map(|a| (a.keysym, a.down)).collect()
    }

    #[test]
    fn shifted_symbols_are_typed_with_shift() {
        let mut kb = Keyboard::default();
        // Shift not held remotely (e.g. text typed by a test or an input method): wrapped.
        assert_eq!(
            run(&mut kb, &[Event::Text("!A".into())]),
            vec![
                (SHIFT_L, true),
                (0x21, true),
                (0x21, false),
                (SHIFT_L, false),
                (SHIFT_L, true),
                (0x41, true),
                (0x41, false),
                (SHIFT_L, false),
            ]
        );
        // Unshifted characters are typed alone.
        assert_eq!(
            run(&mut kb, &[Event::Text("a1 ".into())]),
            vec![
                (0x61, true),
                (0x61, false),
                (0x31, true),
                (0x31, false),
                (0x20, true),
                (0x20, false)
            ]
        );
        // Shift held by the user: no extra Shift around the symbol; the letter's own Key
        // event types nothing (the Text event does).
        let shift = Modifiers::SHIFT;
        assert_eq!(
            run(
                &mut kb,
                &[
                    key(Key::ShiftLeft, true, shift),
                    key(Key::Num1, true, shift),
                    Event::Text("!".into()),
                    key(Key::Num1, false, shift),
                    key(Key::ShiftLeft, false, Modifiers::NONE),
                ]
            ),
            vec![
                (SHIFT_L, true),
                (0x21, true),
                (0x21, false),
                (SHIFT_L, false)
            ]
        );
    }

    #[test]
    fn special_keys_and_modifiers_press_and_release() {
        let mut kb = Keyboard::default();
        let none = Modifiers::NONE;
        assert_eq!(
            run(
                &mut kb,
                &[
                    key(Key::Enter, true, none),
                    key(Key::Enter, false, none),
                    key(Key::ArrowUp, true, none),
                    key(Key::F12, true, none),
                    key(Key::Escape, true, none),
                    key(Key::Backspace, true, none),
                    key(Key::Tab, true, none),
                ]
            ),
            vec![
                (RETURN, true),
                (RETURN, false),
                (0xff52, true),
                (0xffc9, true),
                (0xff1b, true),
                (0xff08, true),
                (0xff09, true)
            ]
        );
        // Focus lost: everything still held goes up.
        let mut out = Vec::new();
        kb.release_all(&mut out);
        let mut released: Vec<u32> = out.iter().map(|a| a.keysym).collect();
        released.sort_unstable();
        assert_eq!(released, vec![0xff08, 0xff09, 0xff1b, 0xff52, 0xffc9]);
        assert!(out.iter().all(|a| !a.down));
        assert_eq!(kb.held().count(), 0);
        // A release without a press is not sent.
        assert!(run(&mut kb, &[key(Key::Delete, false, none)]).is_empty());
    }

    #[test]
    fn ctrl_combinations_come_from_key_events() {
        let mut kb = Keyboard::default();
        let ctrl = Modifiers::CTRL;
        assert_eq!(
            run(
                &mut kb,
                &[
                    key(Key::ControlLeft, true, ctrl),
                    key(Key::D, true, ctrl),
                    key(Key::D, false, ctrl),
                    Event::Copy,
                    key(Key::ControlLeft, false, Modifiers::NONE),
                ]
            ),
            vec![
                (CONTROL_L, true),
                (0x64, true),
                (0x64, false),
                (0x63, true),
                (0x63, false),
                (CONTROL_L, false)
            ]
        );
        // Without Ctrl a letter's Key event types nothing: its Text event does.
        assert!(run(&mut kb, &[key(Key::D, true, Modifiers::NONE)]).is_empty());
    }

    #[test]
    fn keysyms_follow_the_x11_rules() {
        assert_eq!(char_keysym('a'), 0x61);
        assert_eq!(char_keysym('~'), 0x7e);
        assert_eq!(char_keysym('é'), 0xe9);
        assert_eq!(char_keysym('€'), 0x0100_20ac);
        assert_eq!(char_keysym('\n'), RETURN);
        assert_eq!(key_char(Key::Q), Some('q'));
        assert_eq!(key_char(Key::Num7), Some('7'));
        assert_eq!(key_char(Key::F1), None);
        assert_eq!(special_keysym(Key::F1), Some(0xffbe));
        assert_eq!(special_keysym(Key::A), None);
        assert!(needs_shift('?') && needs_shift('Z') && !needs_shift('/') && !needs_shift('z'));
        let cad = ctrl_alt_del();
        assert_eq!(cad.first(), Some(&KeyAction::down(CONTROL_L)));
        assert_eq!(cad.last(), Some(&KeyAction::up(CONTROL_L)));
        assert_eq!(cad.iter().filter(|a| a.down).count(), 3);
    }
}
