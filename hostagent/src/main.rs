//! strata-hostagent binary: parses configuration and runs the agent library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use strata_hostagent::AgentConfig;
use strata_shared::password::Secret;

/// Strata host agent: runs VMs on this KVM host.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML config file.
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve on (default 0.0.0.0:9443).
    #[arg(long, env = "STRATA_LISTEN")]
    listen: Option<SocketAddr>,
    /// State directory (default /var/lib/strata-hostagent).
    #[arg(long, env = "STRATA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Root password for first start; random and printed once when unset.
    #[arg(long, env = "STRATA_ROOT_PASSWORD", hide_env_values = true)]
    root_password: Option<Secret>,
    /// A datastore as NAME=DIR (repeatable).
    #[arg(long = "datastore", value_parser = parse_datastore)]
    datastores: Vec<(String, PathBuf)>,
    /// QEMU binary.
    #[arg(long, env = "STRATA_QEMU")]
    qemu_binary: Option<PathBuf>,
    /// Session lifetime, seconds.
    #[arg(long, env = "STRATA_SESSION_TTL_SECS")]
    session_ttl_secs: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Builds the test guest (Debian cloud kernel + busybox initramfs) and prints its paths.
    BuildGuest {
        /// Cache directory (default: target/strata-guest of the workspace).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_datastore(s: &str) -> Result<(String, PathBuf), String> {
    let (n, p) = s.split_once('=').ok_or("expected NAME=DIR")?;
    Ok((n.to_string(), PathBuf::from(p)))
}

fn config(args: &Args) -> anyhow::Result<AgentConfig> {
    let mut c = match &args.config {
        Some(p) => AgentConfig::from_file(p)?,
        None => AgentConfig::default(),
    };
    if let Some(v) = args.listen {
        c.listen = v;
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
    if let Some(v) = args.session_ttl_secs {
        c.session_ttl_secs = v;
    }
    c.validate()?;
    Ok(c)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
        }
        _ => std::future::pending::<()>().await,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(Command::BuildGuest { out }) = &args.command {
        let dir = out
            .clone()
            .unwrap_or_else(strata_hostagent::guest_image::default_cache_dir);
        let img = tokio::task::spawn_blocking(move || strata_hostagent::guest_image::build(&dir))
            .await??;
        println!("kernel: {}", img.kernel.display());
        println!("initrd: {}", img.initrd.display());
        return Ok(());
    }
    let cfg = config(&args)?;
    let (started, run) = strata_hostagent::start(cfg, shutdown_signal())
        .await
        .context("starting the host agent")?;
    println!(
        "strata-hostagent {} listening on wss://{}",
        strata_shared::VERSION,
        started.address
    );
    println!("certificate thumbprint: {}", started.thumbprint);
    println!("host id: {}", started.id);
    if let Some(pw) = &started.generated_root_password {
        println!("generated root password (shown once): {pw}");
    }
    run.await;
    Ok(())
}
