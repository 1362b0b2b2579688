//! Command-line flags (and their `STRATA_*` environment variables) of `strata-hostagent`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use strata_shared::password::Secret;

use crate::config::{AgentConfig, ConfigError};

/// Strata host agent: runs VMs on this KVM host.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// TOML config file.
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve on (default 0.0.0.0:9443).
    #[arg(long, env = "STRATA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address of the plain VNC console endpoint (default 127.0.0.1:5900; port 0 picks one).
    #[arg(long, env = "STRATA_CONSOLE_LISTEN")]
    pub console_listen: Option<SocketAddr>,
    /// Seconds a console ticket stays valid (default 30).
    #[arg(long, env = "STRATA_CONSOLE_TICKET_SECS")]
    pub console_ticket_secs: Option<u32>,
    /// State directory (default /var/lib/strata-hostagent).
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Root password for first start; random and printed once when unset.
    #[arg(long, env = "STRATA_ROOT_PASSWORD", hide_env_values = true)]
    pub root_password: Option<Secret>,
    /// A datastore as NAME=DIR (repeatable).
    #[arg(long = "datastore", value_parser = parse_datastore)]
    pub datastores: Vec<(String, PathBuf)>,
    /// QEMU binary.
    #[arg(long, env = "STRATA_QEMU")]
    pub qemu_binary: Option<PathBuf>,
    /// strata-vmx binary (the native engine's VMM).
    #[arg(long, env = "STRATA_VMX")]
    pub vmx_binary: Option<PathBuf>,
    /// Datastore lease time, seconds.
    #[arg(long, env = "STRATA_LEASE_SECS")]
    pub lease_secs: Option<u64>,
    /// Session lifetime, seconds.
    #[arg(long, env = "STRATA_SESSION_TTL_SECS")]
    pub session_ttl_secs: Option<u64>,
    /// A tool to run instead of the agent.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Builds the test guest (Debian cloud kernel + busybox initramfs) and prints its paths.
    BuildGuest {
        /// Cache directory (default: target/strata-guest of the workspace).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Internal: renews one VM's datastore lease while its process lives (started by the agent).
    #[command(hide = true)]
    LeaseKeeper {
        /// Lease file.
        #[arg(long)]
        lease: PathBuf,
        /// Host id.
        #[arg(long)]
        host: uuid::Uuid,
        /// Host name.
        #[arg(long)]
        host_name: String,
        /// VM process id.
        #[arg(long)]
        pid: u32,
        /// Lease instance.
        #[arg(long)]
        instance: uuid::Uuid,
        /// The VM's vmm.log.
        #[arg(long)]
        log: PathBuf,
        /// Renewal interval, ms.
        #[arg(long)]
        renew_ms: u64,
        /// Lease time, ms.
        #[arg(long)]
        lease_ms: u64,
        /// Safety margin, ms.
        #[arg(long)]
        margin_ms: u64,
    },
}

fn parse_datastore(s: &str) -> Result<(String, PathBuf), String> {
    let (n, p) = s.split_once('=').ok_or("expected NAME=DIR")?;
    Ok((n.to_string(), PathBuf::from(p)))
}

impl Args {
    /// Layers defaults, the TOML file, then environment and flags (clap merges those two).
    pub fn config(&self) -> Result<AgentConfig, ConfigError> {
        let args = self;
        let mut c = match &args.config {
            Some(p) => AgentConfig::from_file(p)?,
            None => AgentConfig::default(),
        };
        if let Some(v) = args.listen {
            c.listen = v;
        }
        if let Some(v) = args.console_listen {
            c.console_listen = v;
        }
        if let Some(v) = args.console_ticket_secs {
            c.console_ticket_secs = v;
        }
        if let Some(v) = &args.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &args.root_password {
            c.root_password = v.clone();
        }
        for (n, p) in &args.datastores {
            c.datastores.insert(n.clone(), p.clone());
        }
        if let Some(v) = &args.qemu_binary {
            c.qemu_binary = v.clone();
        }
        if let Some(v) = &args.vmx_binary {
            c.vmx_binary = Some(v.clone());
        }
        if let Some(v) = args.lease_secs {
            c.lease_secs = v;
        }
        if let Some(v) = args.session_ttl_secs {
            c.session_ttl_secs = v;
        }
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_datastores_accumulate() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.toml");
        std::fs::write(
            &file,
            "shutdown_timeout_secs = 5\n[datastores]\nfast = \"/srv/fast\"\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let c = Args::try_parse_from([
            "strata-hostagent",
            "--config",
            f,
            "--datastore",
            "slow=/srv/slow",
        ])
        .unwrap()
        .config()
        .unwrap();
        assert_eq!(c.shutdown_timeout_secs, 5);
        assert_eq!(c.datastores.len(), 2);
        assert!(Args::try_parse_from(["strata-hostagent", "--datastore", "nodir"]).is_err());
        assert!(
            Args::try_parse_from(["strata-hostagent", "--datastore", "a/b=/x"])
                .unwrap()
                .config()
                .is_err()
        );
    }
}
