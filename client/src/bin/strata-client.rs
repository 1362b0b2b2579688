//! `strata-client`: the desktop client.

use std::path::PathBuf;

use clap::Parser;
use strata_client::app::{run_native, tour::Tour, Launch};

/// Strata desktop client.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Server to pre-fill in the connect dialog (HOST:PORT).
    #[arg(long, env = "STRATA_URL")]
    server: Option<String>,
    /// User name to pre-fill.
    #[arg(long, env = "STRATA_USERNAME")]
    username: Option<String>,
    /// Take documentation screenshots into DIR, then quit: logs in to --server as
    /// --username with STRATA_PASSWORD, trusting the certificate it presents.
    #[arg(long, value_name = "DIR")]
    tour: Option<PathBuf>,
    /// For the tour: a host agent not in the inventory, whose certificate the Add Host
    /// screenshot shows (HOST:PORT).
    #[arg(long, env = "STRATA_TOUR_NEW_HOST", value_name = "HOST:PORT")]
    tour_new_host: Option<String>,
}

fn main() -> anyhow::Result<()> {
    strata_shared::service::init_logging();
    let args = Args::parse();
    let tour = match args.tour {
        Some(dir) => {
            let server = args
                .server
                .clone()
                .ok_or_else(|| anyhow::anyhow!("--tour needs --server (or STRATA_URL)"))?;
            let password = std::env::var("STRATA_PASSWORD")
                .map_err(|_| anyhow::anyhow!("--tour needs STRATA_PASSWORD"))?;
            std::fs::create_dir_all(&dir)?;
            let user = args.username.clone().unwrap_or_else(|| "admin".into());
            Some(Tour::new(dir, server, user, password).with_new_host(args.tour_new_host.clone()))
        }
        None => None,
    };
    run_native(Launch {
        server: args.server,
        username: args.username,
        tour,
    })
}
