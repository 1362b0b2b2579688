//! Command-line flags (and their `STRATA_*` environment variables) of `strata-server`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use strata_shared::password::Secret;

use crate::config::{ConfigError, DatabaseUrl, ServerConfig};

/// Strata manager: inventory, tasks, events and host orchestration.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// TOML config file.
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve on (default 0.0.0.0:8443).
    #[arg(long, env = "STRATA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// State directory (default /var/lib/strata).
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH (default sqlite://DATA_DIR/strata.db) or
    /// postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    #[arg(long, env = "STRATA_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,
    /// Password of the first admin user (first start only); random and printed once when unset.
    #[arg(long, env = "STRATA_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<Secret>,
    /// Session lifetime, seconds.
    #[arg(long, env = "STRATA_SESSION_TTL_SECS")]
    pub session_ttl_secs: Option<u64>,
    /// Seconds between performance samples (default 20).
    #[arg(long, env = "STRATA_STATS_INTERVAL_SECS")]
    pub stats_interval_secs: Option<u64>,
    /// CPU use, percent, that raises a warning alarm on a VM or host (default 75).
    #[arg(long, env = "STRATA_ALARM_CPU_WARNING_PCT")]
    pub alarm_cpu_warning_pct: Option<u32>,
    /// CPU use, percent, that raises a critical alarm (default 90).
    #[arg(long, env = "STRATA_ALARM_CPU_CRITICAL_PCT")]
    pub alarm_cpu_critical_pct: Option<u32>,
    /// Host memory use, percent, that raises a warning alarm (default 85).
    #[arg(long, env = "STRATA_ALARM_MEMORY_WARNING_PCT")]
    pub alarm_memory_warning_pct: Option<u32>,
    /// Host memory use, percent, that raises a critical alarm (default 95).
    #[arg(long, env = "STRATA_ALARM_MEMORY_CRITICAL_PCT")]
    pub alarm_memory_critical_pct: Option<u32>,
    /// Consecutive samples a usage level must last before its alarm changes (default 3).
    #[arg(long, env = "STRATA_ALARM_SUSTAIN_SAMPLES")]
    pub alarm_sustain_samples: Option<u32>,
}

impl Args {
    /// Layers defaults, the TOML file, then environment and flags (clap merges those two).
    pub fn config(&self) -> Result<ServerConfig, ConfigError> {
        let args = self;
        let mut c = match &args.config {
            Some(p) => ServerConfig::from_file(p)?,
            None => ServerConfig::default(),
        };
        if let Some(v) = args.listen {
            c.listen = v;
        }
        if let Some(v) = &args.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &args.database_url {
            c.database_url = v.clone();
        }
        if let Some(v) = &args.admin_password {
            c.admin_password = v.clone();
        }
        if let Some(v) = args.session_ttl_secs {
            c.session_ttl_secs = v;
        }
        if let Some(v) = args.stats_interval_secs {
            c.stats_interval_secs = v;
        }
        if let Some(v) = args.alarm_cpu_warning_pct {
            c.alarm_cpu_warning_pct = v;
        }
        if let Some(v) = args.alarm_cpu_critical_pct {
            c.alarm_cpu_critical_pct = v;
        }
        if let Some(v) = args.alarm_memory_warning_pct {
            c.alarm_memory_warning_pct = v;
        }
        if let Some(v) = args.alarm_memory_critical_pct {
            c.alarm_memory_critical_pct = v;
        }
        if let Some(v) = args.alarm_sustain_samples {
            c.alarm_sustain_samples = v;
        }
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\nsession_ttl_secs = 60\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let c = Args::try_parse_from(["strata-server", "--config", f])
            .unwrap()
            .config()
            .unwrap();
        assert_eq!((c.listen.port(), c.session_ttl_secs), (7000, 60));
        let c =
            Args::try_parse_from(["strata-server", "--config", f, "--listen", "127.0.0.1:7001"])
                .unwrap()
                .config()
                .unwrap();
        assert_eq!((c.listen.port(), c.session_ttl_secs), (7001, 60));
        assert_eq!(
            Args::try_parse_from(["strata-server"])
                .unwrap()
                .config()
                .unwrap()
                .listen
                .port(),
            8443
        );
        let bad = Args::try_parse_from(["strata-server", "--database-url", "mysql://x"])
            .unwrap()
            .config();
        assert!(bad.is_err());
        let args = Args::try_parse_from([
            "strata-server",
            "--database-url",
            "postgres://strata:hunter44@db/strata",
        ])
        .unwrap();
        assert!(!format!("{args:?}").contains("hunter44"));
        let c = args.config().unwrap();
        assert_eq!(
            c.effective_database_url().expose(),
            "postgres://strata:hunter44@db/strata"
        );
    }

    #[test]
    fn alarm_flags_override_the_file_and_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.toml");
        std::fs::write(
            &file,
            "alarm_cpu_warning_pct = 50\nalarm_cpu_critical_pct = 70\nalarm_memory_warning_pct = 60\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let c = Args::try_parse_from([
            "strata-server",
            "--config",
            f,
            "--alarm-cpu-critical-pct",
            "80",
            "--alarm-memory-critical-pct",
            "65",
            "--alarm-sustain-samples",
            "2",
        ])
        .unwrap()
        .config()
        .unwrap();
        assert_eq!(
            (
                c.alarm_cpu_warning_pct,
                c.alarm_cpu_critical_pct,
                c.alarm_memory_warning_pct,
                c.alarm_memory_critical_pct,
                c.alarm_sustain_samples
            ),
            (50, 80, 60, 65, 2)
        );
        let e = Args::try_parse_from(["strata-server", "--alarm-cpu-warning-pct", "95"])
            .unwrap()
            .config()
            .unwrap_err();
        assert!(e.to_string().contains("alarm_cpu_warning_pct"), "{e}");
    }
}
