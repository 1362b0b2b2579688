//! Manager configuration: defaults, then a TOML file, then `STRATA_*` environment variables,
//! then flags (clap merges the last two).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use strata_shared::config_file::ConfigError;
use strata_shared::password::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to serve the API on.
    pub listen: SocketAddr,
    /// State directory: certificate and the SQLite database.
    pub data_dir: PathBuf,
    /// Database URL; `sqlite://DATA_DIR/strata.db` when empty.
    pub database_url: String,
    /// Password of the first `admin` user (first start only). Random when empty.
    pub admin_password: Secret,
    /// Seconds a session token stays valid.
    pub session_ttl_secs: u64,
    /// Seconds to wait for running tasks on shutdown.
    pub shutdown_grace_secs: u64,
    /// Seconds between two performance samples of each host's VMs.
    pub stats_interval_secs: u64,
    /// Hours performance samples are kept.
    pub stats_retention_hours: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], strata_shared::client::MANAGER_PORT)),
            data_dir: PathBuf::from("/var/lib/strata"),
            database_url: String::new(),
            admin_password: Secret::default(),
            session_ttl_secs: 12 * 3600,
            shutdown_grace_secs: 20,
            stats_interval_secs: 20,
            stats_retention_hours: 24,
        }
    }
}

impl ServerConfig {
    /// Defaults overlaid with a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        strata_shared::config_file::load(path)
    }

    /// The database URL in use.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("strata.db").display())
        } else {
            self.database_url.clone()
        }
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.session_ttl_secs < 1 {
            return Err(ConfigError::Invalid(
                "session_ttl_secs must be at least 1".into(),
            ));
        }
        if self.stats_interval_secs < 1 {
            return Err(ConfigError::Invalid(
                "stats_interval_secs must be at least 1".into(),
            ));
        }
        let url = self.effective_database_url();
        if !url.starts_with("sqlite:") {
            return Err(ConfigError::Invalid(format!(
                "database_url {url:?} is not supported by this build (sqlite:// only)"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_validation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(&p, "data_dir = \"/x\"\nsession_ttl_secs = 60\n").unwrap();
        let c = ServerConfig::from_file(&p).unwrap();
        assert_eq!(c.effective_database_url(), "sqlite:///x/strata.db");
        assert_eq!(c.session_ttl_secs, 60);
        assert!(c.validate().is_ok());
        let bad = ServerConfig {
            database_url: "mysql://x".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        std::fs::write(&p, "admin_pasword = \"x\"\n").unwrap();
        assert!(ServerConfig::from_file(&p).is_err());
        let dbg = format!(
            "{:?}",
            ServerConfig {
                admin_password: Secret::new("hunter22"),
                ..Default::default()
            }
        );
        assert!(!dbg.contains("hunter22"), "secrets never in Debug output");
    }
}
