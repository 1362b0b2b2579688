//! Pushing each host's part of the resource-pool tree to its agent, which enforces it with
//! cgroups. Hosts keep the last tree they received when the manager is away.

use std::collections::HashMap;

use strata_shared::api::agent as agent_api;
use strata_shared::model::{HostPool, HostResources, HostVmResources, Resource};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::app::App;

/// The part of `owner`'s tree that concerns `host`: all pools (parents first) and the VMs on it.
pub async fn host_resources(
    app: &App,
    host: Uuid,
) -> Result<HostResources, strata_shared::RpcError> {
    let owner = super::owner_of_host(app, host).await?;
    let pools = app.db.pools(Some(owner)).await?;
    // Parents before children.
    let mut ordered = Vec::with_capacity(pools.len());
    let mut placed: HashMap<Uuid, ()> = HashMap::new();
    while ordered.len() < pools.len() {
        let before = ordered.len();
        for p in &pools {
            if !placed.contains_key(&p.id) && p.parent.is_none_or(|x| placed.contains_key(&x)) {
                placed.insert(p.id, ());
                ordered.push(p.clone());
            }
        }
        if ordered.len() == before {
            break;
        }
    }
    let pools = ordered
        .into_iter()
        .map(|p| HostPool {
            id: p.id,
            parent: p.parent,
            name: p.name,
            cpu_shares: p.allocation.cpu.shares.value_for_pool(Resource::Cpu),
            cpu_reservation_mhz: p.allocation.cpu.reservation,
            cpu_limit_mhz: p.allocation.cpu.limit,
            memory_reservation_mib: p.allocation.memory.reservation,
            memory_limit_mib: p.allocation.memory.limit,
        })
        .collect();
    let vms = app
        .db
        .vms(Some(host))
        .await?
        .into_iter()
        .map(|v| {
            let a = v.spec.allocation;
            HostVmResources {
                vm: v.id,
                pool: v.pool,
                cpu_shares: a.cpu.shares.value_for_vm(
                    Resource::Cpu,
                    v.spec.vcpus,
                    v.spec.memory_mib,
                ),
                cpu_reservation_mhz: a.cpu.reservation,
                cpu_limit_mhz: a.cpu.limit,
                memory_reservation_mib: a.memory.reservation,
                memory_limit_mib: a.memory.limit,
            }
        })
        .collect();
    Ok(HostResources { pools, vms })
}

/// Sends one host its tree (logged, never fatal: the link re-sends on reconnect).
pub async fn push_host(app: &App, host: Uuid) {
    let res = match host_resources(app, host).await {
        Ok(r) => r,
        Err(e) => {
            warn!(%host, error = %e, "cannot compute the host's resource tree");
            return;
        }
    };
    let Ok(row) = app.db.host(host).await else {
        return;
    };
    match app.hosts.client(host, &row.info.name) {
        Ok(c) => {
            if let Err(e) = c.call::<agent_api::HostApplyResources>(res).await {
                warn!(%host, error = %e, "the host did not apply its resource tree");
            }
        }
        Err(_) => debug!(%host, "host not connected; it gets the tree when it reconnects"),
    }
}

/// Sends every host of a standalone host's or cluster's tree its part.
pub async fn push_owner(app: &App, owner: Uuid) {
    let Ok(hosts) = app.db.hosts().await else {
        return;
    };
    for h in hosts
        .iter()
        .filter(|h| h.info.id == owner || h.info.cluster == Some(owner))
    {
        push_host(app, h.info.id).await;
    }
}
