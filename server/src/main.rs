//! strata-server binary: parses configuration and runs the manager library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use strata_server::ServerConfig;
use strata_shared::password::Secret;

/// Strata manager: inventory, tasks, events and host orchestration.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML config file.
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve on (default 0.0.0.0:8443).
    #[arg(long, env = "STRATA_LISTEN")]
    listen: Option<SocketAddr>,
    /// State directory (default /var/lib/strata).
    #[arg(long, env = "STRATA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (default sqlite://DATA_DIR/strata.db).
    #[arg(long, env = "STRATA_DATABASE_URL")]
    database_url: Option<String>,
    /// Password of the first admin user (first start only); random and printed once when unset.
    #[arg(long, env = "STRATA_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<Secret>,
    /// Session lifetime, seconds.
    #[arg(long, env = "STRATA_SESSION_TTL_SECS")]
    session_ttl_secs: Option<u64>,
}

fn config(args: &Args) -> anyhow::Result<ServerConfig> {
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
    let cfg = config(&args)?;
    let (started, run) = strata_server::start(cfg, shutdown_signal())
        .await
        .context("starting the manager")?;
    println!(
        "strata-server {} listening on wss://{}",
        strata_shared::VERSION,
        started.address
    );
    println!("certificate thumbprint: {}", started.thumbprint);
    if let Some(pw) = &started.generated_admin_password {
        println!("generated password for user admin (shown once): {pw}");
    }
    run.await;
    Ok(())
}
