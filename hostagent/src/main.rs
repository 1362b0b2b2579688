//! strata-hostagent binary: parses configuration and runs the agent library.

use anyhow::Context;
use clap::Parser;
use strata_hostagent::cli::{Args, Command};

fn main() -> anyhow::Result<()> {
    strata_shared::service::init_logging();
    let args = Args::parse();
    if let Some(Command::LeaseKeeper {
        lease,
        host,
        host_name,
        pid,
        instance,
        log,
        renew_ms,
        lease_ms,
        margin_ms,
    }) = &args.command
    {
        use std::time::Duration;
        let keeper = strata_hostagent::datastore::lease_keeper::KeeperArgs {
            lease: lease.clone(),
            host: *host,
            host_name: host_name.clone(),
            pid: *pid,
            instance: *instance,
            log: log.clone(),
            timing: strata_hostagent::datastore::lease::LeaseTiming {
                renew: Duration::from_millis(*renew_ms),
                lease: Duration::from_millis(*lease_ms),
                margin: Duration::from_millis(*margin_ms),
            },
        };
        strata_hostagent::datastore::lease_keeper::run(&keeper);
        return Ok(());
    }
    tokio::runtime::Runtime::new()?.block_on(agent_main(args))
}

async fn agent_main(args: Args) -> anyhow::Result<()> {
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
