//! VNC authentication (RFB security type 2): the server sends a random 16-byte challenge;
//! the client encrypts it with DES, keyed by the password (at most 8 bytes, zero-padded,
//! each byte's bits mirrored — the historical quirk every VNC implementation shares), and
//! sends the 16 bytes back.

use des::cipher::{BlockEncrypt, KeyInit};
use des::Des;

fn key(password: &str) -> [u8; 8] {
    let mut k = [0u8; 8];
    for (d, s) in k.iter_mut().zip(password.bytes()) {
        *d = s.reverse_bits();
    }
    k
}

/// The answer a client with `password` gives to `challenge`.
pub fn response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let cipher = Des::new(&key(password).into());
    let mut out = *challenge;
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(block.into());
    }
    out
}

/// True when `answer` is what `password` gives for `challenge` (compared in constant time).
pub fn verify(password: &str, challenge: &[u8; 16], answer: &[u8; 16]) -> bool {
    let expected = response(password, challenge);
    expected
        .iter()
        .zip(answer)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_answers_of_an_independent_vnc_client() {
        // Computed with vncdotool 1.4.2 (`des_encrypt(_vnc_des(pw), challenge)`).
        let hex = |s: &str| -> [u8; 16] {
            let v: Vec<u8> = (0..16)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            v.try_into().unwrap()
        };
        let counting: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            response("Ab3xYz9q", &counting),
            hex("d8f11eb189fcff62f9642cff939f6eff")
        );
        let zero = [0u8; 16];
        let r = response("password", &zero);
        assert_eq!(r, hex("ff97502e9422f089ff97502e9422f089"));
        assert!(verify("password", &zero, &r));
        assert!(!verify("passwore", &zero, &r));
        // Only 8 characters count.
        assert!(verify("password-and-more", &zero, &r));
    }
}
