//! `strata pool …` and the allocation options shared with `strata vm set-allocation`.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use strata_shared::api::manager as m;
use strata_shared::model::*;

use super::{format, Ctx};

/// CPU and memory reservation, limit and shares, as flags.
#[derive(Args, Debug, Clone, Default)]
pub struct AllocationArgs {
    /// CPU reservation, MHz.
    #[arg(long)]
    cpu_reservation: Option<u64>,
    /// CPU limit, MHz ("unlimited" to clear).
    #[arg(long)]
    cpu_limit: Option<String>,
    /// CPU shares: low, normal, high or a number.
    #[arg(long)]
    cpu_shares: Option<String>,
    /// Memory reservation, MiB.
    #[arg(long)]
    mem_reservation: Option<u64>,
    /// Memory limit, MiB ("unlimited" to clear).
    #[arg(long)]
    mem_limit: Option<String>,
    /// Memory shares: low, normal, high or a number.
    #[arg(long)]
    mem_shares: Option<String>,
    /// Pools: let children borrow unreserved capacity from the parent (true/false).
    #[arg(long)]
    expandable: Option<bool>,
}

fn shares(s: &str) -> anyhow::Result<Shares> {
    Ok(match s {
        "low" => Shares {
            level: SharesLevel::Low,
            custom: None,
        },
        "normal" => Shares {
            level: SharesLevel::Normal,
            custom: None,
        },
        "high" => Shares {
            level: SharesLevel::High,
            custom: None,
        },
        n => {
            Shares {
                level: SharesLevel::Custom,
                custom: Some(n.parse().map_err(|_| {
                    anyhow!("shares must be low, normal, high or a number, not {n:?}")
                })?),
            }
        }
    })
}

fn limit(s: &str) -> anyhow::Result<Option<u64>> {
    if s == "unlimited" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| anyhow!("a limit is a number or \"unlimited\", not {s:?}"))
}

impl AllocationArgs {
    /// Applies the flags given on top of `base`.
    pub fn apply(&self, mut a: ResourceAllocation) -> anyhow::Result<ResourceAllocation> {
        if let Some(v) = self.cpu_reservation {
            a.cpu.reservation = v;
        }
        if let Some(v) = &self.cpu_limit {
            a.cpu.limit = limit(v)?;
        }
        if let Some(v) = &self.cpu_shares {
            a.cpu.shares = shares(v)?;
        }
        if let Some(v) = self.mem_reservation {
            a.memory.reservation = v;
        }
        if let Some(v) = &self.mem_limit {
            a.memory.limit = limit(v)?;
        }
        if let Some(v) = &self.mem_shares {
            a.memory.shares = shares(v)?;
        }
        if let Some(v) = self.expandable {
            a.cpu.expandable_reservation = v;
            a.memory.expandable_reservation = v;
        }
        Ok(a)
    }
}

/// `strata pool …`.
#[derive(Subcommand, Debug)]
pub enum PoolCmd {
    /// Creates a resource pool.
    Create {
        /// Name.
        name: String,
        /// Standalone host or cluster whose capacity the tree divides (name or id).
        #[arg(long)]
        owner: Option<String>,
        /// Parent pool (name or id).
        #[arg(long)]
        parent: Option<String>,
        #[command(flatten)]
        allocation: AllocationArgs,
    },
    /// Changes a pool's allocation (applies live).
    Update {
        /// Pool (name or id).
        pool: String,
        /// New name.
        #[arg(long)]
        rename: Option<String>,
        #[command(flatten)]
        allocation: AllocationArgs,
    },
    /// Deletes a pool.
    Delete {
        /// Pool.
        pool: String,
        /// Move its VMs and pools to its parent instead of refusing.
        #[arg(long)]
        move_children: bool,
    },
    /// Lists pools.
    List,
    /// Reserved and unreserved capacity of a host's or cluster's pools.
    Usage {
        /// Standalone host or cluster (name or id).
        owner: String,
    },
}

async fn pool_id(ctx: &Ctx, name: &str) -> anyhow::Result<PoolInfo> {
    let pools = ctx.call::<m::PoolList>(PoolListParams::default()).await?;
    let mut hits: Vec<PoolInfo> = pools
        .into_iter()
        .filter(|p| p.name == name || p.id.to_string() == name)
        .collect();
    match hits.len() {
        0 => bail!("no resource pool named {name:?}"),
        1 => Ok(hits.remove(0)),
        _ => bail!("{} pools are named {name:?}; use its id", hits.len()),
    }
}

async fn owner_id(ctx: &Ctx, name: &str) -> anyhow::Result<uuid::Uuid> {
    let clusters = ctx.call::<m::ClusterList>(Empty {}).await?;
    if let Some(c) = clusters
        .iter()
        .find(|c| c.name == name || c.id.to_string() == name)
    {
        return Ok(c.id);
    }
    Ok(ctx.host(name).await?.id)
}

fn alloc_text(a: &Allocation, unit: &str) -> String {
    let lim = a
        .limit
        .map(|l| format!("{l}"))
        .unwrap_or_else(|| "∞".into());
    let shares = match a.shares.level {
        SharesLevel::Custom => a.shares.custom.unwrap_or(0).to_string(),
        l => format!("{l:?}").to_lowercase(),
    };
    format!(
        "{}/{lim} {unit} {shares}{}",
        a.reservation,
        if a.expandable_reservation { " exp" } else { "" }
    )
}

/// Runs a `strata pool` command.
pub async fn run(ctx: &Ctx, cmd: PoolCmd) -> anyhow::Result<()> {
    match cmd {
        PoolCmd::Create {
            name,
            owner,
            parent,
            allocation,
        } => {
            let parent = match parent {
                Some(p) => Some(pool_id(ctx, &p).await?.id),
                None => None,
            };
            let owner = match owner {
                Some(o) => Some(owner_id(ctx, &o).await?),
                None => None,
            };
            let allocation = allocation.apply(ResourceAllocation::default())?;
            let p = ctx
                .call::<m::PoolCreate>(PoolCreateParams {
                    name,
                    owner,
                    parent,
                    allocation,
                })
                .await?;
            ctx.print(&p, || {
                format!("resource pool {} created ({})", p.name, p.id)
            })?;
        }
        PoolCmd::Update {
            pool,
            rename,
            allocation,
        } => {
            let p = pool_id(ctx, &pool).await?;
            let a = allocation.apply(p.allocation)?;
            let p = ctx
                .call::<m::PoolUpdate>(PoolUpdateParams {
                    id: p.id,
                    name: rename,
                    allocation: Some(a),
                })
                .await?;
            ctx.print(&p, || format!("resource pool {} updated", p.name))?;
        }
        PoolCmd::Delete {
            pool,
            move_children,
        } => {
            let p = pool_id(ctx, &pool).await?;
            ctx.call::<m::PoolDelete>(PoolDeleteParams {
                id: p.id,
                move_children_to_parent: move_children,
            })
            .await?;
            ctx.print(&p, || format!("resource pool {} deleted", p.name))?;
        }
        PoolCmd::List => {
            let pools = ctx.call::<m::PoolList>(PoolListParams::default()).await?;
            ctx.print(&pools, || {
                let name = |id: Option<uuid::Uuid>| {
                    id.and_then(|i| pools.iter().find(|p| p.id == i))
                        .map(|p| p.name.clone())
                        .unwrap_or_else(|| "(root)".into())
                };
                let rows: Vec<Vec<String>> = pools
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            name(p.parent),
                            alloc_text(&p.allocation.cpu, "MHz"),
                            alloc_text(&p.allocation.memory, "MiB"),
                            p.id.to_string(),
                        ]
                    })
                    .collect();
                format::table(
                    &[
                        "NAME",
                        "PARENT",
                        "CPU RES/LIMIT SHARES",
                        "MEMORY RES/LIMIT SHARES",
                        "ID",
                    ],
                    &rows,
                )
            })?;
        }
        PoolCmd::Usage { owner } => {
            let id = owner_id(ctx, &owner).await?;
            let usage = ctx.call::<m::PoolUsageGet>(IdParams { id }).await?;
            ctx.print(&usage, || {
                let rows: Vec<Vec<String>> = usage
                    .iter()
                    .map(|u| {
                        vec![
                            u.name.clone(),
                            format!("{} / {}", u.cpu.reserved_by_children, u.cpu.reservation),
                            u.cpu.unreserved_for_children.to_string(),
                            format!(
                                "{} / {}",
                                u.memory.reserved_by_children, u.memory.reservation
                            ),
                            u.memory.unreserved_for_children.to_string(),
                        ]
                    })
                    .collect();
                format::table(
                    &[
                        "POOL",
                        "CPU USED/RES MHz",
                        "CPU FREE",
                        "MEM USED/RES MiB",
                        "MEM FREE",
                    ],
                    &rows,
                )
            })?;
        }
    }
    Ok(())
}
