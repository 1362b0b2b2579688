//! Password hashing (argon2id) and random secrets.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

/// Hashing failed (only with broken parameters).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password into a PHC string (argon2id, random salt).
pub fn hash(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Checks a password against a PHC string; false for a malformed hash.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A random secret of `bytes` bytes as lower-case hex (tokens, keys, generated passwords).
pub fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// SHA-256 of a token as hex: how tokens are stored, so a stolen database holds no tokens.
pub fn token_digest(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// True when `token`'s digest equals `digest`, compared in constant time.
pub fn digest_matches(token: &str, digest: &str) -> bool {
    let a = token_digest(token);
    a.len() == digest.len()
        && a.bytes()
            .zip(digest.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let h = hash("s3cret-pass").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("s3cret-pass", &h));
        assert!(!verify("s3cret-Pass", &h));
        assert!(!verify("s3cret-pass", "not-a-hash"));
        assert_ne!(h, hash("s3cret-pass").unwrap(), "salt must differ");
    }

    #[test]
    fn secrets_are_random_hex() {
        let a = random_secret(16);
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_secret(16));
        assert_eq!(token_digest("x").len(), 64);
        assert!(digest_matches("x", &token_digest("x")));
        assert!(!digest_matches("y", &token_digest("x")));
        assert!(!digest_matches("x", "short"));
    }
}

/// A secret string (password, key) whose `Debug` never shows the value.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}
