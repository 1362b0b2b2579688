//! Pushing each host's part of the resource-pool tree to its agent, which enforces it with
//! cgroups. Hosts keep the last tree they received when the manager is away.

use std::collections::{HashMap, HashSet};

use strata_shared::api::agent as agent_api;
use strata_shared::model::{HostPool, HostResources, HostVmResources, PoolInfo, Resource, VmInfo};
use tracing::{debug, warn};
use uuid::Uuid;

use super::entitlement::{host_share, weights};
use crate::app::App;

/// The part of `owner`'s tree that concerns `host`: every pool (parents first), with a
/// cluster pool's limit and reservation divided by where its VMs run, and the VMs on the host;
/// CPU weights are raised so that reservations hold under contention.
pub async fn host_resources(
    app: &App,
    host: Uuid,
) -> Result<HostResources, strata_shared::RpcError> {
    let owner = super::owner_of_host(app, host).await?;
    let hosts = app.db.hosts().await?;
    let host_cpu = hosts
        .iter()
        .find(|h| h.info.id == host)
        .and_then(|h| h.info.facts.as_ref())
        .map(|f| super::host_capacity(f).0)
        .unwrap_or(1);
    let pools = parents_first(app.db.pools(Some(owner)).await?);
    let parent_of: HashMap<Uuid, Option<Uuid>> = pools.iter().map(|p| (p.id, p.parent)).collect();
    let mut vms = Vec::new();
    for h in hosts
        .iter()
        .filter(|h| h.info.id == owner || h.info.cluster == Some(owner))
    {
        vms.extend(app.db.vms(Some(h.info.id)).await?);
    }
    // Demand (vCPUs of running VMs) under each pool: here and in the whole tree.
    let (mut here, mut total): (HashMap<Uuid, u64>, HashMap<Uuid, u64>) = Default::default();
    for vm in vms.iter().filter(|v| v.power_state.has_process()) {
        let mut at = vm.pool;
        let mut guard = 0;
        while let Some(p) = at {
            *total.entry(p).or_default() += u64::from(vm.spec.vcpus);
            if vm.host == Some(host) {
                *here.entry(p).or_default() += u64::from(vm.spec.vcpus);
            }
            at = parent_of.get(&p).copied().flatten();
            guard += 1;
            if guard > 1000 {
                break;
            }
        }
    }
    let part = |id: Uuid, amount: u64| {
        host_share(
            amount,
            here.get(&id).copied().unwrap_or(0),
            total.get(&id).copied().unwrap_or(0),
        )
    };
    let local: Vec<&VmInfo> = vms.iter().filter(|v| v.host == Some(host)).collect();

    // Capacity each sibling group shares on this host, then weights per group.
    let mut capacity: HashMap<Option<Uuid>, u64> = HashMap::from([(None, host_cpu)]);
    for p in &pools {
        let parent_cap = capacity.get(&p.parent).copied().unwrap_or(host_cpu);
        let cap = p
            .allocation
            .cpu
            .limit
            .map(|l| part(p.id, l).min(parent_cap))
            .unwrap_or(parent_cap);
        capacity.insert(Some(p.id), cap);
    }
    // What each pool really reserves here: an expandable pool reserves what its children do
    // when that is more than its own reservation.
    let mut effective: HashMap<Uuid, u64> = HashMap::new();
    for p in pools.iter().rev() {
        let own = part(p.id, p.allocation.cpu.reservation);
        let child_pools: u64 = pools
            .iter()
            .filter(|c| c.parent == Some(p.id))
            .map(|c| effective.get(&c.id).copied().unwrap_or(0))
            .sum();
        let child_vms: u64 = local
            .iter()
            .filter(|v| v.pool == Some(p.id) && v.power_state.has_process())
            .map(|v| v.spec.allocation.cpu.reservation)
            .sum();
        let needed = child_pools + child_vms;
        effective.insert(
            p.id,
            if p.allocation.cpu.expandable_reservation {
                own.max(needed)
            } else {
                own
            },
        );
    }
    let mut weight: HashMap<Uuid, u64> = HashMap::new();
    for (group, cap) in &capacity {
        let mut ids = Vec::new();
        let mut sibs = Vec::new();
        for p in pools.iter().filter(|p| p.parent == *group) {
            ids.push(p.id);
            sibs.push((
                p.allocation.cpu.shares.value_for_pool(Resource::Cpu),
                effective.get(&p.id).copied().unwrap_or(0),
            ));
        }
        for v in local.iter().filter(|v| v.pool == *group) {
            ids.push(v.id);
            let a = &v.spec.allocation.cpu;
            sibs.push((
                a.shares
                    .value_for_vm(Resource::Cpu, v.spec.vcpus, v.spec.memory_mib),
                a.reservation,
            ));
        }
        for (id, w) in ids.into_iter().zip(weights(&sibs, *cap)) {
            weight.insert(id, w);
        }
    }
    let pools = pools
        .into_iter()
        .map(|p| HostPool {
            id: p.id,
            parent: p.parent,
            cpu_shares: weight.get(&p.id).copied().unwrap_or(1000),
            cpu_reservation_mhz: part(p.id, p.allocation.cpu.reservation),
            cpu_limit_mhz: p.allocation.cpu.limit.map(|l| part(p.id, l)),
            memory_reservation_mib: part(p.id, p.allocation.memory.reservation),
            memory_limit_mib: p.allocation.memory.limit.map(|l| part(p.id, l)),
            name: p.name,
        })
        .collect();
    let vms = local
        .into_iter()
        .map(|v| {
            let a = v.spec.allocation;
            HostVmResources {
                vm: v.id,
                pool: v.pool,
                cpu_shares: weight.get(&v.id).copied().unwrap_or(1000),
                cpu_reservation_mhz: a.cpu.reservation,
                cpu_limit_mhz: a.cpu.limit,
                memory_reservation_mib: a.memory.reservation,
                memory_limit_mib: a.memory.limit,
            }
        })
        .collect();
    Ok(HostResources { pools, vms })
}

/// Orders pools so that every parent comes before its children.
fn parents_first(pools: Vec<PoolInfo>) -> Vec<PoolInfo> {
    let mut ordered = Vec::with_capacity(pools.len());
    let mut placed: HashSet<Uuid> = HashSet::new();
    while ordered.len() < pools.len() {
        let before = ordered.len();
        for p in &pools {
            if !placed.contains(&p.id) && p.parent.is_none_or(|x| placed.contains(&x)) {
                placed.insert(p.id);
                ordered.push(p.clone());
            }
        }
        if ordered.len() == before {
            break;
        }
    }
    ordered
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
