//! Host agent configuration: defaults, then a TOML file, then `STRATA_*` environment
//! variables, then command-line flags (clap merges the last two).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use strata_shared::config_file::ConfigError;
use strata_shared::password::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Address to serve the API on.
    pub listen: SocketAddr,
    /// Address of the plain VNC console endpoint (VNC authentication with a console
    /// ticket's one-time password; unencrypted, so loopback by default — the TLS WebSocket
    /// on `listen` is the way in from other machines). Port 0 picks a free one.
    pub console_listen: SocketAddr,
    /// Seconds a console ticket stays valid (1..=300; 30 by default).
    pub console_ticket_secs: u32,
    /// State directory: certificate, credentials, host id, default datastore.
    pub data_dir: PathBuf,
    /// Datastores by name → directory. Empty means one, `datastore1`, in the data dir.
    pub datastores: BTreeMap<String, PathBuf>,
    /// Root password for first start (ignored once credentials exist). Random when empty.
    pub root_password: Secret,
    /// QEMU binary.
    pub qemu_binary: PathBuf,
    /// strata-vmx binary (default: `strata-vmx` next to the agent binary).
    pub vmx_binary: Option<PathBuf>,
    /// Default seconds a guest gets to shut down before a hard stop.
    pub shutdown_timeout_secs: u32,
    /// Seconds a session token stays valid.
    pub session_ttl_secs: u64,
    /// Datastore lease time, seconds: renewed every fifth of it; another host may take a
    /// VM whose lease stood still for this plus half of it.
    pub lease_secs: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], strata_shared::client::AGENT_PORT)),
            console_listen: SocketAddr::from(([127, 0, 0, 1], 5900)),
            console_ticket_secs: strata_shared::model::TICKET_LIFETIME_SECS,
            data_dir: PathBuf::from("/var/lib/strata-hostagent"),
            datastores: BTreeMap::new(),
            root_password: Secret::default(),
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            vmx_binary: None,
            shutdown_timeout_secs: 60,
            session_ttl_secs: 24 * 3600,
            lease_secs: 10,
        }
    }
}

impl AgentConfig {
    /// Defaults overlaid with a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        strata_shared::config_file::load(path)
    }

    /// The datastores to use, with the default filled in.
    pub fn effective_datastores(&self) -> BTreeMap<String, PathBuf> {
        if self.datastores.is_empty() {
            let mut m = BTreeMap::new();
            m.insert("datastore1".to_string(), self.data_dir.join("datastore1"));
            m
        } else {
            self.datastores.clone()
        }
    }

    /// Checks values that could not be expressed in the types.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for name in self.datastores.keys() {
            strata_shared::model::validate_name("datastore", name).map_err(ConfigError::Invalid)?;
        }
        if self.shutdown_timeout_secs == 0 || self.shutdown_timeout_secs > 3600 {
            return Err(ConfigError::Invalid(
                "shutdown_timeout_secs must be between 1 and 3600".into(),
            ));
        }
        if !(1..=300).contains(&self.console_ticket_secs) {
            return Err(ConfigError::Invalid(
                "console_ticket_secs must be between 1 and 300".into(),
            ));
        }
        if !(1..=600).contains(&self.lease_secs) {
            return Err(ConfigError::Invalid(
                "lease_secs must be between 1 and 600".into(),
            ));
        }
        if self.session_ttl_secs < 10 {
            return Err(ConfigError::Invalid(
                "session_ttl_secs must be at least 10".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(
            &p,
            "listen = \"127.0.0.1:1234\"\n[datastores]\nfast = \"/srv/fast\"\n",
        )
        .unwrap();
        let c = AgentConfig::from_file(&p).unwrap();
        assert_eq!(c.listen.port(), 1234);
        assert_eq!(c.shutdown_timeout_secs, 60);
        assert_eq!(c.effective_datastores().len(), 1);
        std::fs::write(&p, "lisen = \"127.0.0.1:1234\"\n").unwrap();
        let e = AgentConfig::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn default_datastore_lives_in_data_dir() {
        let c = AgentConfig {
            data_dir: "/d".into(),
            ..Default::default()
        };
        assert_eq!(
            c.effective_datastores()["datastore1"],
            PathBuf::from("/d/datastore1")
        );
        assert!(AgentConfig {
            shutdown_timeout_secs: 0,
            ..Default::default()
        }
        .validate()
        .is_err());
        for bad in [0, 301] {
            let e = AgentConfig {
                console_ticket_secs: bad,
                ..Default::default()
            }
            .validate()
            .unwrap_err()
            .to_string();
            assert!(e.contains("console_ticket_secs"), "{e}");
        }
        assert_eq!(AgentConfig::default().console_ticket_secs, 30);
        assert!(AgentConfig::default().console_listen.ip().is_loopback());
    }
}
