//! `strata vm disk …`: a VM's virtual disks.

use anyhow::bail;
use clap::Subcommand;
use strata_shared::api::manager as m;
use strata_shared::model::*;

use super::{format, task_done, Ctx};

/// Disk subcommands.
#[derive(Subcommand, Debug)]
pub enum DiskCmd {
    /// Lists a VM's disks with their sizes.
    List {
        /// VM (name or id).
        vm: String,
    },
    /// Creates a disk and attaches it (VM powered off).
    Create {
        /// VM.
        vm: String,
        /// Size, e.g. 512M, 20G or a number of MiB.
        #[arg(long)]
        size: String,
        /// raw or qcow2.
        #[arg(long, default_value = "raw")]
        format: String,
        /// Preallocate the whole size now.
        #[arg(long)]
        thick: bool,
        /// Attach read-only.
        #[arg(long)]
        read_only: bool,
        /// File name in the VM's directory (default NAME.raw, NAME_1.raw, …).
        #[arg(long)]
        file: Option<String>,
    },
    /// Grows a disk (VM powered off).
    Grow {
        /// VM.
        vm: String,
        /// Disk file name.
        file: String,
        /// New size, e.g. 40G.
        #[arg(long)]
        size: String,
    },
    /// Attaches a disk file already in the VM's directory (VM powered off).
    Attach {
        /// VM.
        vm: String,
        /// Disk file name.
        file: String,
        /// raw or qcow2.
        #[arg(long, default_value = "raw")]
        format: String,
        /// Attach read-only.
        #[arg(long)]
        read_only: bool,
    },
    /// Detaches a disk (VM powered off); --delete also deletes its file.
    Remove {
        /// VM.
        vm: String,
        /// Disk file name.
        file: String,
        /// Delete the file too.
        #[arg(long)]
        delete: bool,
    },
}

/// Parses a size: a number of MiB, or a number with M/G/T.
pub fn parse_size_mib(s: &str) -> anyhow::Result<u64> {
    let t = s.trim().to_ascii_uppercase();
    let t = t
        .strip_suffix("IB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('M') => (&t[..t.len() - 1], 1),
        Some('G') => (&t[..t.len() - 1], 1024),
        Some('T') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    match num
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
    {
        Some(n) if n > 0 => Ok(n),
        _ => bail!("size {s:?} is not a size like 512M, 20G or 1T"),
    }
}

fn parse_format(s: &str) -> anyhow::Result<DiskFormat> {
    match s {
        "raw" => Ok(DiskFormat::Raw),
        "qcow2" => Ok(DiskFormat::Qcow2),
        _ => bail!("format must be raw or qcow2, not {s:?}"),
    }
}

/// Runs one disk subcommand.
pub async fn run(ctx: &Ctx, cmd: DiskCmd) -> anyhow::Result<()> {
    match cmd {
        DiskCmd::List { vm } => {
            let vm = ctx.vm(&vm).await?;
            let disks = ctx.call::<m::VmDiskList>(IdParams { id: vm.id }).await?;
            ctx.print(&disks, || {
                let rows: Vec<Vec<String>> = disks
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        vec![
                            format!("vd{}", char::from(b'a' + i as u8)),
                            d.file.clone(),
                            d.format.to_string(),
                            format::bytes(d.capacity_bytes),
                            format::bytes(d.allocated_bytes),
                            if d.read_only {
                                "read-only"
                            } else {
                                "read-write"
                            }
                            .into(),
                        ]
                    })
                    .collect();
                format::table(&["DEVICE", "FILE", "FORMAT", "SIZE", "USED", "MODE"], &rows)
            })?;
        }
        DiskCmd::Create {
            vm,
            size,
            format,
            thick,
            read_only,
            file,
        } => {
            let vm = ctx.vm(&vm).await?;
            let t = ctx
                .run_task::<m::VmDiskCreate>(m::DiskCreateParams {
                    id: vm.id,
                    size_mib: parse_size_mib(&size)?,
                    format: parse_format(&format)?,
                    provisioning: if thick {
                        Provisioning::Thick
                    } else {
                        Provisioning::Thin
                    },
                    read_only,
                    file,
                })
                .await?;
            ctx.print(&t, || task_done(&t))?;
        }
        DiskCmd::Grow { vm, file, size } => {
            let vm = ctx.vm(&vm).await?;
            let t = ctx
                .run_task::<m::VmDiskGrow>(m::DiskGrowParams {
                    id: vm.id,
                    file,
                    size_mib: parse_size_mib(&size)?,
                })
                .await?;
            ctx.print(&t, || task_done(&t))?;
        }
        DiskCmd::Attach {
            vm,
            file,
            format,
            read_only,
        } => {
            let vm = ctx.vm(&vm).await?;
            let t = ctx
                .run_task::<m::VmDiskAttach>(m::DiskAttachParams {
                    id: vm.id,
                    disk: DiskSpec {
                        file,
                        format: parse_format(&format)?,
                        read_only,
                    },
                })
                .await?;
            ctx.print(&t, || task_done(&t))?;
        }
        DiskCmd::Remove { vm, file, delete } => {
            let vm = ctx.vm(&vm).await?;
            let t = ctx
                .run_task::<m::VmDiskRemove>(m::DiskRemoveParams {
                    id: vm.id,
                    file,
                    delete_file: delete,
                })
                .await?;
            ctx.print(&t, || task_done(&t))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size_mib("512").unwrap(), 512);
        assert_eq!(parse_size_mib("512M").unwrap(), 512);
        assert_eq!(parse_size_mib("20G").unwrap(), 20 * 1024);
        assert_eq!(parse_size_mib("1t").unwrap(), 1024 * 1024);
        assert_eq!(parse_size_mib("2GiB").unwrap(), 2048);
        for bad in ["", "0", "-1G", "ten", "1.5G", "99999999999999999T"] {
            assert!(parse_size_mib(bad).is_err(), "{bad:?} accepted");
        }
    }
}
