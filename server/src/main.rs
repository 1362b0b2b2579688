//! strata-server binary: parses configuration and runs the manager library.

use anyhow::Context;
use clap::Parser;
use strata_server::cli::Args;

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
    let cfg = args.config()?;
    let (started, run) = strata_server::start(cfg, strata_shared::service::shutdown_signal())
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
