//! Who may use this host agent: its root account and the managers registered with it.
//! Credentials are argon2 hashes in `credentials.toml`; sessions live in memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use strata_shared::model::Role;
use strata_shared::password;
use uuid::Uuid;

/// Credential store errors.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// File I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is corrupt.
    #[error("{path} is not a valid credentials file: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] password::HashError),
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct CredentialFile {
    root_hash: String,
    #[serde(default)]
    managers: Vec<ManagerEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManagerEntry {
    manager_id: Uuid,
    username: String,
    /// SHA-256 of the key: it is 256 random bits, so a slow hash adds nothing.
    key_digest: String,
}

/// A logged-in session on the agent.
#[derive(Debug, Clone)]
pub struct AgentSession {
    /// User name.
    pub username: String,
    /// Role (root and managers are admins).
    pub role: Role,
    /// Expiry, Unix ms.
    pub expires_ms: i64,
}

/// The prefix of the user names managers log in with.
pub const MANAGER_PREFIX: &str = "strata-manager-";

/// True when `username` is a manager's credential (which may act for its own users).
pub fn is_manager(username: &str) -> bool {
    username.starts_with(MANAGER_PREFIX)
}

/// Credentials and sessions.
pub struct Auth {
    path: PathBuf,
    creds: Mutex<CredentialFile>,
    sessions: Mutex<HashMap<String, AgentSession>>,
    ttl_ms: i64,
}

/// Outcome of opening the store on first start.
pub enum FirstStart {
    /// Credentials existed already.
    Existing,
    /// Created with the configured root password.
    Configured,
    /// Created with this generated root password (print it once).
    Generated(String),
}

impl Auth {
    /// Opens `data_dir/credentials.toml`, creating it with `root_password` (or a random one).
    pub fn open(
        data_dir: &Path,
        root_password: &str,
        ttl_secs: u64,
    ) -> Result<(Self, FirstStart), AuthError> {
        let path = data_dir.join("credentials.toml");
        let (creds, first) = if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|source| AuthError::Io {
                path: path.clone(),
                source,
            })?;
            let c: CredentialFile = toml::from_str(&text).map_err(|e| AuthError::Parse {
                path: path.clone(),
                message: e.message().into(),
            })?;
            (c, FirstStart::Existing)
        } else {
            let (pw, first) = if root_password.is_empty() {
                let p = password::random_secret(9);
                (p.clone(), FirstStart::Generated(p))
            } else {
                (root_password.to_string(), FirstStart::Configured)
            };
            (
                CredentialFile {
                    root_hash: password::hash(&pw)?,
                    managers: vec![],
                },
                first,
            )
        };
        let auth = Self {
            path,
            creds: Mutex::new(creds),
            sessions: Mutex::new(HashMap::new()),
            ttl_ms: (ttl_secs as i64).saturating_mul(1000),
        };
        if !matches!(first, FirstStart::Existing) {
            auth.save()?;
        }
        Ok((auth, first))
    }

    fn save(&self) -> Result<(), AuthError> {
        let text = {
            let c = self.creds.lock().map_err(|_| poisoned(&self.path))?;
            toml::to_string(&*c).map_err(|e| AuthError::Parse {
                path: self.path.clone(),
                message: e.to_string(),
            })?
        };
        crate::atomic_file::write_private(&self.path, text.as_bytes()).map_err(|source| {
            AuthError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// Checks a user name and password; returns the role when they match.
    pub fn check(&self, username: &str, secret: &str) -> Option<Role> {
        let creds = self.creds.lock().ok()?.clone();
        if username == "root" {
            return password::verify(secret, &creds.root_hash).then_some(Role::Admin);
        }
        let m = creds.managers.iter().find(|m| m.username == username)?;
        password::digest_matches(secret, &m.key_digest).then_some(Role::Admin)
    }

    /// Starts a session; returns its token.
    pub fn start_session(&self, username: &str, role: Role) -> (String, AgentSession) {
        let token = password::random_secret(32);
        let s = AgentSession {
            username: username.to_string(),
            role,
            expires_ms: strata_shared::now_ms().saturating_add(self.ttl_ms),
        };
        if let Ok(mut sessions) = self.sessions.lock() {
            let now = strata_shared::now_ms();
            sessions.retain(|_, v| v.expires_ms > now);
            sessions.insert(password::token_digest(&token), s.clone());
        }
        (token, s)
    }

    /// Looks a live session up by token.
    pub fn resume(&self, token: &str) -> Option<AgentSession> {
        let sessions = self.sessions.lock().ok()?;
        let s = sessions.get(&password::token_digest(token))?;
        (s.expires_ms > strata_shared::now_ms()).then(|| s.clone())
    }

    /// Ends sessions of a user (e.g. logout).
    pub fn end_sessions_of(&self, username: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.retain(|_, v| v.username != username);
        }
    }

    /// Issues (or re-issues) the credential of a manager; the old key stops working.
    pub fn register_manager(&self, manager_id: Uuid) -> Result<(String, String), AuthError> {
        let username = format!("{MANAGER_PREFIX}{}", &manager_id.simple().to_string()[..12]);
        let key = password::random_secret(32);
        let entry = ManagerEntry {
            manager_id,
            username: username.clone(),
            key_digest: password::token_digest(&key),
        };
        {
            let mut c = self.creds.lock().map_err(|_| poisoned(&self.path))?;
            c.managers.retain(|m| m.manager_id != manager_id);
            c.managers.push(entry);
        }
        self.save()?;
        self.end_sessions_of(&username);
        Ok((username, key))
    }
}

fn poisoned(path: &Path) -> AuthError {
    AuthError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other("credential store lock poisoned"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_managers_authenticate_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, first) = Auth::open(dir.path(), "rootpw123", 60).unwrap();
        assert!(matches!(first, FirstStart::Configured));
        assert_eq!(a.check("root", "rootpw123"), Some(Role::Admin));
        assert_eq!(a.check("root", "nope"), None);
        let id = Uuid::new_v4();
        let (user, key) = a.register_manager(id).unwrap();
        assert_eq!(a.check(&user, &key), Some(Role::Admin));
        let (_user2, key2) = a.register_manager(id).unwrap();
        assert_eq!(
            a.check(&user, &key),
            None,
            "re-registration revokes the old key"
        );
        drop(a);
        let (b, first) = Auth::open(dir.path(), "ignored", 60).unwrap();
        assert!(matches!(first, FirstStart::Existing));
        assert_eq!(b.check("root", "rootpw123"), Some(Role::Admin));
        assert_eq!(b.check(&user, &key2), Some(Role::Admin));
        let text = std::fs::read_to_string(dir.path().join("credentials.toml")).unwrap();
        assert!(
            !text.contains("rootpw123") && !text.contains(&key2),
            "no plaintext secrets on disk"
        );
    }

    #[test]
    fn generated_password_works_and_sessions_resume() {
        let dir = tempfile::tempdir().unwrap();
        let (a, first) = Auth::open(dir.path(), "", 60).unwrap();
        let FirstStart::Generated(pw) = first else {
            panic!("expected a generated password")
        };
        assert_eq!(a.check("root", &pw), Some(Role::Admin));
        let (token, _) = a.start_session("root", Role::Admin);
        assert_eq!(a.resume(&token).unwrap().username, "root");
        assert!(a.resume("bogus").is_none());
        a.end_sessions_of("root");
        assert!(a.resume(&token).is_none());
    }
}
