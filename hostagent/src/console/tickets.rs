//! Console tickets: single-use, short-lived, bound to one user and one VM.
//!
//! A ticket has two secrets: a 256-bit token for the WebSocket URL and an 8-character
//! password for VNC authentication on the plain TCP endpoint. Either one opens the console
//! once; taking a ticket by one consumes it for both. Only SHA-256 digests of the tokens are
//! kept, so a lookup does not compare secrets byte by byte.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Tickets outstanding at once, host-wide; more are refused until some are used or expire.
pub const MAX_OUTSTANDING: usize = 1024;
/// Characters of a VNC password (VNC authentication uses at most 8).
pub const PASSWORD_LEN: usize = 8;
/// How long a used or expired token is remembered, so a second try is told why.
const REMEMBER: Duration = Duration::from_secs(600);

/// Why a ticket was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No ticket given.
    #[error("no console ticket was given")]
    Missing,
    /// Not a ticket this host issued.
    #[error("the console ticket is not valid")]
    Unknown,
    /// Issued, but used already.
    #[error("the console ticket was already used")]
    Reused,
    /// Issued, but too long ago.
    #[error("the console ticket has expired")]
    Expired,
    /// The VNC password matched no ticket.
    #[error("VNC authentication failed: the password matches no console ticket")]
    BadPassword,
    /// Too many outstanding tickets.
    #[error("too many console tickets are outstanding; try again shortly")]
    TooMany,
}

/// What an accepted ticket grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The VM.
    pub vm: Uuid,
    /// The user it was issued to.
    pub user: String,
}

/// A freshly issued ticket's secrets (returned once, to the caller who asked).
#[derive(Clone)]
pub struct Issued {
    /// For the WebSocket URL.
    pub token: String,
    /// For VNC authentication.
    pub password: String,
}

struct Ticket {
    grant: Grant,
    password: String,
    expires: Instant,
}

#[derive(Default)]
struct Inner {
    live: HashMap<[u8; 32], Ticket>,
    /// Digests of used or expired tokens, with when to forget them.
    spent: HashMap<[u8; 32], (Refusal, Instant)>,
}

/// The host's outstanding tickets.
pub struct TicketStore {
    lifetime: Duration,
    inner: Mutex<Inner>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TicketStore {
    /// An empty store whose tickets live `lifetime`.
    pub fn new(lifetime: Duration) -> Self {
        Self {
            lifetime,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves expired tickets to the spent list and forgets old spent ones.
    fn sweep(inner: &mut Inner, now: Instant) {
        let expired: Vec<[u8; 32]> = inner
            .live
            .iter()
            .filter(|(_, t)| t.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            inner.live.remove(&k);
            inner.spent.insert(k, (Refusal::Expired, now + REMEMBER));
        }
        inner.spent.retain(|_, (_, until)| *until > now);
    }

    /// Issues a ticket for `user` on `vm`.
    pub fn issue(&self, vm: Uuid, user: &str) -> Result<Issued, Refusal> {
        let mut rng = rand::rngs::OsRng;
        let token_bytes: [u8; 32] = rng.gen();
        let token = hex_token(&token_bytes);
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let password: String = (0..PASSWORD_LEN)
            .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
            .collect();
        let now = Instant::now();
        let mut inner = self.lock();
        Self::sweep(&mut inner, now);
        if inner.live.len() >= MAX_OUTSTANDING {
            return Err(Refusal::TooMany);
        }
        inner.live.insert(
            digest(&token),
            Ticket {
                grant: Grant {
                    vm,
                    user: user.to_string(),
                },
                password: password.clone(),
                expires: now + self.lifetime,
            },
        );
        Ok(Issued { token, password })
    }

    /// Takes (consumes) the ticket with this token.
    pub fn take_token(&self, token: Option<&str>) -> Result<Grant, Refusal> {
        let token = token.filter(|t| !t.is_empty()).ok_or(Refusal::Missing)?;
        let key = digest(token);
        let now = Instant::now();
        let mut inner = self.lock();
        Self::sweep(&mut inner, now);
        if let Some(t) = inner.live.remove(&key) {
            inner.spent.insert(key, (Refusal::Reused, now + REMEMBER));
            return Ok(t.grant);
        }
        Err(inner
            .spent
            .get(&key)
            .map(|(why, _)| why.clone())
            .unwrap_or(Refusal::Unknown))
    }

    /// Takes (consumes) the ticket whose VNC password answers `challenge` with `response`
    /// (see [`super::vnc_auth`]).
    pub fn take_vnc(&self, challenge: &[u8; 16], response: &[u8; 16]) -> Result<Grant, Refusal> {
        let now = Instant::now();
        let mut inner = self.lock();
        Self::sweep(&mut inner, now);
        let key = inner
            .live
            .iter()
            .find(|(_, t)| super::vnc_auth::verify(&t.password, challenge, response))
            .map(|(k, _)| *k)
            .ok_or(Refusal::BadPassword)?;
        let t = inner.live.remove(&key).ok_or(Refusal::BadPassword)?;
        inner.spent.insert(key, (Refusal::Reused, now + REMEMBER));
        Ok(t.grant)
    }

    /// Tickets outstanding now.
    pub fn outstanding(&self) -> usize {
        let mut inner = self.lock();
        Self::sweep(&mut inner, Instant::now());
        inner.live.len()
    }
}

fn hex_token(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::super::vnc_auth;
    use super::*;

    #[test]
    fn a_ticket_opens_once_for_its_user_and_vm() {
        let store = TicketStore::new(Duration::from_secs(30));
        let vm = Uuid::new_v4();
        let t = store.issue(vm, "alice").unwrap();
        assert_eq!(t.token.len(), 64);
        assert_eq!(t.password.len(), PASSWORD_LEN);
        let g = store.take_token(Some(&t.token)).unwrap();
        assert_eq!(
            g,
            Grant {
                vm,
                user: "alice".into()
            }
        );
        assert_eq!(store.take_token(Some(&t.token)), Err(Refusal::Reused));
        // Used by token: the password is gone too.
        let challenge = [7u8; 16];
        let response = vnc_auth::response(&t.password, &challenge);
        assert_eq!(
            store.take_vnc(&challenge, &response),
            Err(Refusal::BadPassword)
        );
    }

    #[test]
    fn missing_unknown_and_expired_tickets_are_refused_with_the_reason() {
        let store = TicketStore::new(Duration::from_millis(30));
        assert_eq!(store.take_token(None), Err(Refusal::Missing));
        assert_eq!(store.take_token(Some("")), Err(Refusal::Missing));
        assert_eq!(store.take_token(Some("deadbeef")), Err(Refusal::Unknown));
        let t = store.issue(Uuid::new_v4(), "bob").unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(store.take_token(Some(&t.token)), Err(Refusal::Expired));
        assert_eq!(store.outstanding(), 0);
    }

    #[test]
    fn the_vnc_password_opens_its_own_ticket_once() {
        let store = TicketStore::new(Duration::from_secs(30));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let ta = store.issue(a, "alice").unwrap();
        let tb = store.issue(b, "bob").unwrap();
        let challenge = [0x5au8; 16];
        let rb = vnc_auth::response(&tb.password, &challenge);
        assert_eq!(store.take_vnc(&challenge, &rb).unwrap().vm, b);
        assert_eq!(store.take_vnc(&challenge, &rb), Err(Refusal::BadPassword));
        assert_eq!(store.take_token(Some(&tb.token)), Err(Refusal::Reused));
        let wrong = vnc_auth::response("nottheone", &challenge);
        assert_eq!(
            store.take_vnc(&challenge, &wrong),
            Err(Refusal::BadPassword)
        );
        assert_eq!(store.take_token(Some(&ta.token)).unwrap().user, "alice");
    }

    #[test]
    fn outstanding_tickets_are_bounded() {
        let store = TicketStore::new(Duration::from_secs(30));
        for _ in 0..MAX_OUTSTANDING {
            store.issue(Uuid::nil(), "u").unwrap();
        }
        assert!(matches!(
            store.issue(Uuid::nil(), "u"),
            Err(Refusal::TooMany)
        ));
    }
}
