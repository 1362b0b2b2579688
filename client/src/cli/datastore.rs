//! `strata datastore …`: list datastores, browse them, upload and download files with
//! progress on stderr.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use strata_shared::api::manager as m;
use strata_shared::model::*;

use super::{format, Ctx};

/// Datastore subcommands.
#[derive(Subcommand, Debug)]
pub enum DatastoreCmd {
    /// Lists datastores with capacity, hosts and trouble.
    List,
    /// Lists a directory of a datastore.
    Ls {
        /// Datastore (name or id).
        datastore: String,
        /// Directory inside it.
        #[arg(default_value = "")]
        path: String,
    },
    /// Uploads a local file to a datastore.
    Upload {
        /// Datastore.
        datastore: String,
        /// Local file.
        local: PathBuf,
        /// Path on the datastore.
        remote: String,
        /// Replace an existing file.
        #[arg(long)]
        overwrite: bool,
    },
    /// Downloads a file from a datastore.
    Download {
        /// Datastore.
        datastore: String,
        /// Path on the datastore.
        remote: String,
        /// Local file to write (must not exist).
        local: PathBuf,
    },
}

fn progress(verb: &str, done: u64, total: u64) {
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    eprint!(
        "\r{verb} {} of {} ({pct}%)   ",
        format::bytes(done),
        format::bytes(total)
    );
    let _ = std::io::stderr().flush();
}

/// Runs one datastore subcommand.
pub async fn run(ctx: &Ctx, cmd: DatastoreCmd) -> anyhow::Result<()> {
    match cmd {
        DatastoreCmd::List => {
            let inv = ctx.call::<m::InventoryGet>(Empty {}).await?;
            let ds = inv.datastores;
            ctx.print(&ds, || {
                let rows: Vec<Vec<String>> = ds
                    .iter()
                    .map(|d| {
                        vec![
                            d.name.clone(),
                            format::bytes(d.capacity_bytes),
                            format::bytes(d.free_bytes),
                            d.hosts.len().to_string(),
                            if d.inaccessible_on.is_empty() {
                                "accessible".into()
                            } else {
                                d.inaccessible_on
                                    .iter()
                                    .map(|p| p.problem.clone())
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            },
                        ]
                    })
                    .collect();
                format::table(&["NAME", "CAPACITY", "FREE", "HOSTS", "STATE"], &rows)
            })?;
        }
        DatastoreCmd::Ls { datastore, path } => {
            let entries = ctx
                .call::<m::DatastoreBrowse>(BrowseParams { datastore, path })
                .await?;
            ctx.print(&entries, || {
                let rows: Vec<Vec<String>> = entries
                    .iter()
                    .map(|e| {
                        vec![
                            match e.kind {
                                EntryKind::Directory => format!("{}/", e.name),
                                EntryKind::File => e.name.clone(),
                            },
                            match e.kind {
                                EntryKind::Directory => String::new(),
                                EntryKind::File => format::bytes(e.size_bytes),
                            },
                            format::time(e.modified_ms),
                        ]
                    })
                    .collect();
                format::table(&["NAME", "SIZE", "MODIFIED"], &rows)
            })?;
        }
        DatastoreCmd::Upload {
            datastore,
            local,
            remote,
            overwrite,
        } => {
            let mut f = std::fs::File::open(&local)
                .with_context(|| format!("cannot open {}", local.display()))?;
            let total = f.metadata()?.len();
            let mut buf = vec![0u8; MAX_CHUNK];
            let mut offset = 0u64;
            loop {
                let mut n = 0;
                while n < buf.len() {
                    let r = f.read(&mut buf[n..])?;
                    if r == 0 {
                        break;
                    }
                    n += r;
                }
                let done = offset + n as u64 >= total;
                let p = ctx
                    .call::<m::DatastoreUpload>(UploadParams {
                        datastore: datastore.clone(),
                        path: remote.clone(),
                        offset,
                        data: encode_chunk(&buf[..n]),
                        done,
                        overwrite,
                    })
                    .await?;
                offset = p.received_bytes;
                progress("uploaded", offset, total);
                if done {
                    break;
                }
            }
            eprintln!();
            ctx.print(
                &UploadProgress {
                    received_bytes: offset,
                    done: true,
                },
                || {
                    format!(
                        "uploaded {} to [{datastore}] {remote}",
                        format::bytes(offset)
                    )
                },
            )?;
        }
        DatastoreCmd::Download {
            datastore,
            remote,
            local,
        } => {
            if local.exists() {
                bail!("{} already exists", local.display());
            }
            let part = local.with_extension("part");
            let mut out = std::fs::File::create(&part)
                .with_context(|| format!("cannot create {}", part.display()))?;
            let mut offset = 0u64;
            let result: anyhow::Result<u64> = async {
                loop {
                    let c = ctx
                        .call::<m::DatastoreDownload>(DownloadParams {
                            datastore: datastore.clone(),
                            path: remote.clone(),
                            offset,
                            max_bytes: None,
                        })
                        .await?;
                    let bytes = decode_chunk(&c.data).map_err(anyhow::Error::msg)?;
                    out.write_all(&bytes)?;
                    offset += bytes.len() as u64;
                    progress("downloaded", offset, c.size_bytes);
                    if bytes.is_empty() || offset >= c.size_bytes {
                        return Ok(offset);
                    }
                }
            }
            .await;
            eprintln!();
            match result {
                Ok(n) => {
                    out.sync_all()?;
                    std::fs::rename(&part, &local)?;
                    ctx.print(&n, || {
                        format!("downloaded {} to {}", format::bytes(n), local.display())
                    })?;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}
