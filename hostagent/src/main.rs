//! strata-hostagent binary: parses configuration and runs the agent library.

use anyhow::Context;
use clap::Parser;
use strata_hostagent::cli::{Args, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    strata_shared::service::init_logging();
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
    let cfg = args.config()?;
    let (started, run) = strata_hostagent::start(cfg, strata_shared::service::shutdown_signal())
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
