//! Manager configuration: defaults, then a TOML file, then `STRATA_*` environment variables,
//! then flags (clap merges the last two).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use strata_shared::config_file::ConfigError;
use strata_shared::password::Secret;

use crate::db::{redact_url, Backend};

/// A database URL (`sqlite://…`, `postgres://…`); its password never shows in `Debug` or
/// `Display` output.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when unset.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to serve the API on.
    pub listen: SocketAddr,
    /// State directory: certificate and the SQLite database.
    pub data_dir: PathBuf,
    /// Database URL: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`
    /// (`postgresql://` too); `sqlite://DATA_DIR/strata.db` when empty.
    pub database_url: DatabaseUrl,
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
    /// CPU use (percent of a VM's vCPUs, or of a host's CPUs) that raises a warning alarm.
    pub alarm_cpu_warning_pct: u32,
    /// CPU use (percent) that raises a critical alarm.
    pub alarm_cpu_critical_pct: u32,
    /// Memory use (percent of a host's memory resident in its VMs) that raises a warning alarm.
    pub alarm_memory_warning_pct: u32,
    /// Memory use (percent) that raises a critical alarm.
    pub alarm_memory_critical_pct: u32,
    /// Consecutive stats samples at a level before a usage alarm takes it (and below the
    /// warning level before it clears).
    pub alarm_sustain_samples: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], strata_shared::client::MANAGER_PORT)),
            data_dir: PathBuf::from("/var/lib/strata"),
            database_url: DatabaseUrl::default(),
            admin_password: Secret::default(),
            session_ttl_secs: 12 * 3600,
            shutdown_grace_secs: 20,
            stats_interval_secs: 20,
            stats_retention_hours: 24,
            alarm_cpu_warning_pct: 75,
            alarm_cpu_critical_pct: 90,
            alarm_memory_warning_pct: 85,
            alarm_memory_critical_pct: 95,
            alarm_sustain_samples: 3,
        }
    }
}

impl ServerConfig {
    /// Defaults overlaid with a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        strata_shared::config_file::load(path)
    }

    /// The database URL in use.
    pub fn effective_database_url(&self) -> DatabaseUrl {
        if self.database_url.is_empty() {
            DatabaseUrl::new(format!(
                "sqlite://{}",
                self.data_dir.join("strata.db").display()
            ))
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
        for (what, warning, critical) in [
            (
                "cpu",
                self.alarm_cpu_warning_pct,
                self.alarm_cpu_critical_pct,
            ),
            (
                "memory",
                self.alarm_memory_warning_pct,
                self.alarm_memory_critical_pct,
            ),
        ] {
            for (name, v) in [("warning", warning), ("critical", critical)] {
                if !(1..=100).contains(&v) {
                    return Err(ConfigError::Invalid(format!(
                        "alarm_{what}_{name}_pct must be a percentage from 1 to 100, not {v}"
                    )));
                }
            }
            if warning > critical {
                return Err(ConfigError::Invalid(format!(
                    "alarm_{what}_warning_pct ({warning}) must not be above alarm_{what}_critical_pct ({critical})"
                )));
            }
        }
        if self.alarm_sustain_samples < 1 {
            return Err(ConfigError::Invalid(
                "alarm_sustain_samples must be at least 1".into(),
            ));
        }
        let url = self.effective_database_url();
        if Backend::of_url(url.expose()).is_none() {
            return Err(ConfigError::Invalid(format!(
                "database_url {url} is not supported: use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
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
        assert_eq!(c.effective_database_url().expose(), "sqlite:///x/strata.db");
        assert_eq!(c.session_ttl_secs, 60);
        assert!(c.validate().is_ok());
        let bad = ServerConfig {
            database_url: DatabaseUrl::new("mysql://u:hunter33@x/db"),
            ..Default::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("is not supported: use sqlite://"), "{e}");
        assert!(!e.contains("hunter33"), "{e}");
        for ok in [
            "sqlite:///var/lib/strata/strata.db",
            "postgres://strata:pw@db:5432/strata",
            "postgresql://strata@db/strata",
        ] {
            let c = ServerConfig {
                database_url: DatabaseUrl::new(ok),
                ..Default::default()
            };
            assert!(c.validate().is_ok(), "{ok}");
        }
        std::fs::write(
            &p,
            "database_url = \"postgres://strata:hunter33@db:5432/strata\"\n",
        )
        .unwrap();
        let c = ServerConfig::from_file(&p).unwrap();
        assert_eq!(
            c.effective_database_url().expose(),
            "postgres://strata:hunter33@db:5432/strata"
        );
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("postgres://strata:***@db:5432/strata"),
            "{dbg}"
        );
        assert!(!dbg.contains("hunter33"), "{dbg}");
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

    #[test]
    fn alarm_thresholds_are_percentages_in_order() {
        let d = ServerConfig::default();
        assert_eq!(
            (
                d.alarm_cpu_warning_pct,
                d.alarm_cpu_critical_pct,
                d.alarm_memory_warning_pct,
                d.alarm_memory_critical_pct,
                d.alarm_sustain_samples
            ),
            (75, 90, 85, 95, 3)
        );
        assert!(d.validate().is_ok());
        let ok_equal = ServerConfig {
            alarm_cpu_warning_pct: 100,
            alarm_cpu_critical_pct: 100,
            alarm_sustain_samples: 1,
            ..Default::default()
        };
        assert!(ok_equal.validate().is_ok());
        let cases: [(ServerConfig, &str); 5] = [
            (
                ServerConfig {
                    alarm_cpu_warning_pct: 0,
                    ..Default::default()
                },
                "alarm_cpu_warning_pct must be a percentage from 1 to 100, not 0",
            ),
            (
                ServerConfig {
                    alarm_memory_critical_pct: 101,
                    ..Default::default()
                },
                "alarm_memory_critical_pct must be a percentage from 1 to 100, not 101",
            ),
            (
                ServerConfig {
                    alarm_cpu_warning_pct: 91,
                    ..Default::default()
                },
                "alarm_cpu_warning_pct (91) must not be above alarm_cpu_critical_pct (90)",
            ),
            (
                ServerConfig {
                    alarm_memory_warning_pct: 96,
                    ..Default::default()
                },
                "alarm_memory_warning_pct (96) must not be above alarm_memory_critical_pct (95)",
            ),
            (
                ServerConfig {
                    alarm_sustain_samples: 0,
                    ..Default::default()
                },
                "alarm_sustain_samples must be at least 1",
            ),
        ];
        for (c, want) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should say {want:?}");
        }
        // The file sets them like any other key.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        std::fs::write(
            &p,
            "alarm_cpu_warning_pct = 30\nalarm_cpu_critical_pct = 60\nalarm_sustain_samples = 2\n",
        )
        .unwrap();
        let c = ServerConfig::from_file(&p).unwrap();
        assert_eq!(
            (
                c.alarm_cpu_warning_pct,
                c.alarm_cpu_critical_pct,
                c.alarm_sustain_samples,
                c.alarm_memory_warning_pct
            ),
            (30, 60, 2, 85)
        );
        std::fs::write(&p, "alarm_cpu_warning_pct = 95\n").unwrap();
        let e = ServerConfig::from_file(&p)
            .and_then(|c| c.validate().map(|_| c))
            .unwrap_err();
        assert!(e.to_string().contains("must not be above"), "{e}");
    }
}
