//! Text to PS/2 scan codes (set 1, US layout): each character becomes the make and break
//! codes of its key, wrapped in left-shift make/break where the character needs shift.

/// Left shift, make code.
pub const LSHIFT: u8 = 0x2a;
/// A break code is the make code with this bit.
pub const BREAK: u8 = 0x80;

/// The key (set-1 make code) and whether shift is held, for one character of a US
/// keyboard; None for characters no key types.
pub fn key_for(c: char) -> Option<(u8, bool)> {
    const ROW_NUM: &[u8] = b"1234567890-=";
    const ROW_NUM_SHIFT: &[u8] = b"!@#$%^&*()_+";
    const ROW_Q: &[u8] = b"qwertyuiop[]";
    const ROW_Q_SHIFT: &[u8] = b"QWERTYUIOP{}";
    const ROW_A: &[u8] = b"asdfghjkl;'`";
    const ROW_A_SHIFT: &[u8] = b"ASDFGHJKL:\"~";
    const ROW_Z: &[u8] = b"zxcvbnm,./";
    const ROW_Z_SHIFT: &[u8] = b"ZXCVBNM<>?";
    let b = u8::try_from(c).ok()?;
    let find = |row: &[u8], first: u8| row.iter().position(|x| *x == b).map(|i| first + i as u8);
    let plain = find(ROW_NUM, 0x02)
        .or_else(|| find(ROW_Q, 0x10))
        .or_else(|| find(ROW_A, 0x1e))
        .or_else(|| find(ROW_Z, 0x2c));
    if let Some(code) = plain {
        return Some((code, false));
    }
    let shifted = find(ROW_NUM_SHIFT, 0x02)
        .or_else(|| find(ROW_Q_SHIFT, 0x10))
        .or_else(|| find(ROW_A_SHIFT, 0x1e))
        .or_else(|| find(ROW_Z_SHIFT, 0x2c));
    if let Some(code) = shifted {
        return Some((code, true));
    }
    match b {
        b'\\' => Some((0x2b, false)),
        b'|' => Some((0x2b, true)),
        b' ' => Some((0x39, false)),
        b'\n' | b'\r' => Some((0x1c, false)),
        b'\t' => Some((0x0f, false)),
        0x08 => Some((0x0e, false)), // backspace
        0x1b => Some((0x01, false)), // escape
        _ => None,
    }
}

/// The character a US keyboard types with key `code` (set-1 make code) and shift held or
/// not: the inverse of [`key_for`] (Enter gives `\n`, Backspace 0x08, Escape 0x1b).
pub fn char_for(code: u8, shift: bool) -> Option<char> {
    (0u8..0x80)
        .map(char::from)
        .find(|c| key_for(*c) == Some((code, shift)) && *c != '\r')
}

/// The scan codes that type `text`; Err names the first character no key types.
pub fn scancodes_for(text: &str) -> Result<Vec<u8>, char> {
    let mut out = Vec::with_capacity(text.len() * 2);
    for c in text.chars() {
        let (code, shift) = key_for(c).ok_or(c)?;
        if shift {
            out.push(LSHIFT);
        }
        out.push(code);
        out.push(code | BREAK);
        if shift {
            out.push(LSHIFT | BREAK);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_space_enter_and_shift() {
        assert_eq!(scancodes_for("a").unwrap(), vec![0x1e, 0x9e]);
        assert_eq!(
            scancodes_for("A1 \n").unwrap(),
            vec![0x2a, 0x1e, 0x9e, 0xaa, 0x02, 0x82, 0x39, 0xb9, 0x1c, 0x9c]
        );
        assert_eq!(key_for('z'), Some((0x2c, false)));
        assert_eq!(key_for('0'), Some((0x0b, false)));
        assert_eq!(key_for('?'), Some((0x35, true)));
        assert_eq!(key_for('|'), Some((0x2b, true)));
        assert_eq!(scancodes_for("é"), Err('é'));
        // The inverse: every character a key types comes back from its key.
        for c in (0x20u8..0x7f).map(char::from).chain(['\n', '\t']) {
            let (code, shift) = key_for(c).unwrap();
            assert_eq!(char_for(code, shift), Some(c), "{c:?}");
        }
        assert_eq!(char_for(0x3b, false), None, "F1 types nothing");
    }
}
