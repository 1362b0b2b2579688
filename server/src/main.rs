//! strata-server binary: parses configuration and runs the manager library.

use anyhow::Context;
use clap::Parser;
use strata_server::cli::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    strata_shared::service::init_logging();
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
