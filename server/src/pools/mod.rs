//! Resource pools in the manager: building a tree for admission control from the inventory,
//! and the capacity of its root.

pub mod admission;
pub mod enforce;
pub mod entitlement;

use std::collections::HashSet;
use std::sync::Mutex;

use strata_shared::model::HostFacts;
use strata_shared::rpc::{ErrorCode, RpcError};
use uuid::Uuid;

use crate::app::App;
use admission::{Node, NodeKind, Tree};

/// Memory a host keeps for itself, MiB: a tenth of its RAM, at least 256 MiB, at most 4 GiB.
pub fn host_reserve_mib(memory_mib: u64) -> u64 {
    (memory_mib / 10).clamp(256, 4096).min(memory_mib)
}

/// What a host contributes to its root pool: CPU MHz and memory MiB.
pub fn host_capacity(f: &HostFacts) -> (u64, u64) {
    (
        u64::from(f.cpu_count) * u64::from(f.cpu_mhz),
        f.memory_mib.saturating_sub(host_reserve_mib(f.memory_mib)),
    )
}

/// Serialises admission decisions and remembers VMs whose power-on is under way (they count
/// as powered on until their task ends).
#[derive(Default)]
pub struct Admission {
    /// Held while a decision is made and recorded.
    pub lock: tokio::sync::Mutex<()>,
    pending_on: Mutex<HashSet<Uuid>>,
}

impl Admission {
    /// Counts a VM as powered on until [`Admission::done`].
    pub fn pending(&self, vm: Uuid) {
        if let Ok(mut p) = self.pending_on.lock() {
            p.insert(vm);
        }
    }
    /// The power-on of `vm` finished (either way).
    pub fn done(&self, vm: Uuid) {
        if let Ok(mut p) = self.pending_on.lock() {
            p.remove(&vm);
        }
    }
    fn is_pending(&self, vm: Uuid) -> bool {
        self.pending_on
            .lock()
            .map(|p| p.contains(&vm))
            .unwrap_or(false)
    }
}

/// The tree owner of a host's VMs: its cluster, or the host itself when standalone.
pub async fn owner_of_host(app: &App, host: Uuid) -> Result<Uuid, RpcError> {
    let h = app
        .db
        .host(host)
        .await
        .map_err(|e| e.or_not_found("host", host))?;
    Ok(h.info.cluster.unwrap_or(h.info.id))
}

/// Builds the tree of a standalone host or a cluster.
pub async fn tree(app: &App, owner: Uuid) -> Result<Tree, RpcError> {
    let hosts = app.db.hosts().await?;
    let clusters = app.db.clusters().await?;
    let (members, root_name): (Vec<_>, String) =
        if let Some(c) = clusters.iter().find(|c| c.id == owner) {
            (
                hosts
                    .iter()
                    .filter(|h| h.info.cluster == Some(owner))
                    .collect(),
                format!("cluster {}", c.name),
            )
        } else if let Some(h) = hosts.iter().find(|h| h.info.id == owner) {
            if let Some(c) = h.info.cluster {
                return Err(RpcError::invalid(format!(
                    "host {} is in a cluster; its resource pools belong to the cluster ({c})",
                    h.info.name
                )));
            }
            (vec![h], format!("host {}", h.info.name))
        } else {
            return Err(RpcError::new(
                ErrorCode::NotFound,
                format!("no standalone host or cluster {owner}"),
            ));
        };
    let (mut cpu, mut mem) = (0u64, 0u64);
    for h in &members {
        if let Some(f) = &h.info.facts {
            let (c, m) = host_capacity(f);
            cpu += c;
            mem += m;
        }
    }
    let mut nodes: Vec<Node> = app
        .db
        .pools(Some(owner))
        .await?
        .into_iter()
        .map(|p| Node {
            id: p.id,
            name: p.name,
            parent: p.parent,
            kind: NodeKind::Pool,
            allocation: p.allocation,
        })
        .collect();
    for h in &members {
        for vm in app.db.vms(Some(h.info.id)).await? {
            let powered_on = vm.power_state.has_process() || app.admission.is_pending(vm.id);
            nodes.push(Node {
                id: vm.id,
                name: vm.name,
                parent: vm.pool,
                kind: NodeKind::Vm { powered_on },
                allocation: vm.spec.allocation,
            });
        }
    }
    Ok(Tree {
        root: owner,
        root_name,
        cpu_capacity: cpu,
        memory_capacity: mem,
        nodes,
    })
}

/// Checks a tree, mapping a shortfall to `InsufficientResources`.
pub fn admit(tree: &Tree) -> Result<(), RpcError> {
    tree.check().map_err(|s| {
        RpcError::new(ErrorCode::InsufficientResources, s.message.clone()).with_data(
            serde_json::json!({
                "pool": s.pool,
                "resource": s.resource,
                "shortBy": s.short_by,
            }),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_reserve_is_bounded() {
        assert_eq!(host_reserve_mib(1024), 256);
        assert_eq!(host_reserve_mib(24_576), 2457);
        assert_eq!(host_reserve_mib(1 << 20), 4096);
        assert_eq!(host_reserve_mib(100), 100);
    }
}
