//! Resource pools and resource allocation: reservation, limit and shares of CPU (MHz) and
//! memory (MiB), for pools and VMs, in the classic model.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Share level: low/normal/high map to fixed values (see [`Shares::value_for_vm`]), custom
/// carries its own number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SharesLevel {
    /// Half of normal.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Twice normal.
    High,
    /// The number in `Shares::custom`.
    Custom,
}

/// Relative priority when capacity is contended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Shares {
    /// Level.
    pub level: SharesLevel,
    /// The value when `level` is custom (1..=1_000_000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<u32>,
}

/// Which resource a value is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Resource {
    /// CPU, MHz.
    Cpu,
    /// Memory, MiB.
    Memory,
}

impl Resource {
    /// Unit name.
    pub fn unit(self) -> &'static str {
        match self {
            Resource::Cpu => "MHz",
            Resource::Memory => "MiB",
        }
    }
}

impl Shares {
    fn scaled(self, normal: u64) -> u64 {
        match self.level {
            SharesLevel::Low => normal / 2,
            SharesLevel::Normal => normal,
            SharesLevel::High => normal * 2,
            SharesLevel::Custom => u64::from(self.custom.unwrap_or(1)),
        }
    }

    /// The number of shares of a VM: CPU 500/1000/2000 per vCPU, memory 5/10/20 per MiB.
    pub fn value_for_vm(self, resource: Resource, vcpus: u32, memory_mib: u64) -> u64 {
        match resource {
            Resource::Cpu => self.scaled(1000 * u64::from(vcpus.max(1))),
            Resource::Memory => self.scaled(10 * memory_mib.max(1)),
        }
    }

    /// The number of shares of a pool: CPU 2000/4000/8000, memory 81920/163840/327680 (as a
    /// 4-vCPU, 16 GiB VM).
    pub fn value_for_pool(self, resource: Resource) -> u64 {
        match resource {
            Resource::Cpu => self.scaled(4000),
            Resource::Memory => self.scaled(163_840),
        }
    }
}

/// Allocation of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Allocation {
    /// Guaranteed amount (MHz or MiB).
    #[serde(default)]
    pub reservation: u64,
    /// Upper bound; none means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Priority under contention.
    #[serde(default)]
    pub shares: Shares,
    /// Pools only: may borrow unreserved capacity from the parent for children's reservations.
    #[serde(default)]
    pub expandable_reservation: bool,
}

impl Allocation {
    /// Checks values that make sense on their own.
    pub fn validate(&self, resource: Resource) -> Result<(), String> {
        let unit = resource.unit();
        if let Some(l) = self.limit {
            if self.reservation > l {
                return Err(format!(
                    "{resource:?} reservation {} {unit} is above the limit {l} {unit}",
                    self.reservation
                ));
            }
        }
        if self.shares.level == SharesLevel::Custom {
            match self.shares.custom {
                Some(v) if (1..=1_000_000).contains(&v) => {}
                _ => {
                    return Err(format!(
                        "{resource:?} custom shares must be between 1 and 1000000"
                    ))
                }
            }
        } else if self.shares.custom.is_some() {
            return Err(format!(
                "{resource:?} shares: a custom value needs level custom"
            ));
        }
        if self.reservation > (1 << 40) || self.limit.is_some_and(|l| l > (1 << 40)) {
            return Err(format!("{resource:?} values must be at most 2^40 {unit}"));
        }
        Ok(())
    }
}

/// CPU and memory allocation of a pool or a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceAllocation {
    /// CPU in MHz.
    #[serde(default)]
    pub cpu: Allocation,
    /// Memory in MiB.
    #[serde(default)]
    pub memory: Allocation,
}

impl ResourceAllocation {
    /// Validates both resources.
    pub fn validate(&self) -> Result<(), String> {
        self.cpu.validate(Resource::Cpu)?;
        self.memory.validate(Resource::Memory)
    }
}

/// A resource pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolInfo {
    /// Id.
    pub id: Uuid,
    /// Name, unique among its siblings.
    pub name: String,
    /// The standalone host or cluster whose capacity the tree divides.
    pub owner: Uuid,
    /// Parent pool; none means directly under the owner's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uuid>,
    /// Allocation.
    pub allocation: ResourceAllocation,
}

/// `pool.create` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolCreateParams {
    /// Name.
    pub name: String,
    /// Standalone host or cluster (needed when `parent` is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Uuid>,
    /// Parent pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uuid>,
    /// Allocation.
    #[serde(default)]
    pub allocation: ResourceAllocation,
}

/// `pool.update` params: change name and/or allocation (applies live).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolUpdateParams {
    /// The pool.
    pub id: Uuid,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation: Option<ResourceAllocation>,
}

/// `pool.move` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolMoveParams {
    /// The pool.
    pub id: Uuid,
    /// New parent; none = directly under the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uuid>,
}

/// `pool.delete` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolDeleteParams {
    /// The pool.
    pub id: Uuid,
    /// Move its VMs and child pools to its parent instead of refusing.
    #[serde(default)]
    pub move_children_to_parent: bool,
}

/// `vm.setAllocation` params (applies live).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmAllocationParams {
    /// The VM.
    pub id: Uuid,
    /// New allocation.
    pub allocation: ResourceAllocation,
}

/// `vm.move` params: put a VM into a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmMoveParams {
    /// The VM.
    pub id: Uuid,
    /// Pool; none = directly under the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Uuid>,
}

/// `pool.list` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolListParams {
    /// Only the pools of this standalone host or cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Uuid>,
}

/// Reserved and available capacity of one resource at one node of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceUsage {
    /// What the node guarantees (its reservation; for the root, its capacity).
    pub reservation: u64,
    /// What its children (pools and powered-on VMs) reserve.
    pub reserved_by_children: u64,
    /// What a new child could still reserve here, counting what expandable pools may borrow.
    pub unreserved_for_children: u64,
}

/// One node of `pool.usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolUsage {
    /// Pool id; the owner's id for the root.
    pub id: Uuid,
    /// Name ("root" for the owner's root).
    pub name: String,
    /// CPU, MHz.
    pub cpu: ResourceUsage,
    /// Memory, MiB.
    pub memory: ResourceUsage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_values_follow_the_classic_model() {
        let s = |level| Shares {
            level,
            custom: None,
        };
        assert_eq!(
            s(SharesLevel::Normal).value_for_vm(Resource::Cpu, 2, 0),
            2000
        );
        assert_eq!(s(SharesLevel::High).value_for_vm(Resource::Cpu, 1, 0), 2000);
        assert_eq!(
            s(SharesLevel::Low).value_for_vm(Resource::Memory, 1, 1024),
            5120
        );
        assert_eq!(s(SharesLevel::Normal).value_for_pool(Resource::Cpu), 4000);
        let c = Shares {
            level: SharesLevel::Custom,
            custom: Some(7),
        };
        assert_eq!(c.value_for_pool(Resource::Memory), 7);
    }

    #[test]
    fn allocations_validate() {
        let ok = Allocation {
            reservation: 10,
            limit: Some(20),
            ..Default::default()
        };
        assert!(ok.validate(Resource::Cpu).is_ok());
        let bad = Allocation {
            reservation: 30,
            limit: Some(20),
            ..Default::default()
        };
        assert!(bad
            .validate(Resource::Cpu)
            .unwrap_err()
            .contains("above the limit"));
        let custom = Allocation {
            shares: Shares {
                level: SharesLevel::Custom,
                custom: None,
            },
            ..Default::default()
        };
        assert!(custom.validate(Resource::Memory).is_err());
        let stray = Allocation {
            shares: Shares {
                level: SharesLevel::High,
                custom: Some(3),
            },
            ..Default::default()
        };
        assert!(stray.validate(Resource::Memory).is_err());
    }
}

/// One pool as a host enforces it (`host.applyResources`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostPool {
    /// Pool id.
    pub id: Uuid,
    /// Parent pool; none = the host's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uuid>,
    /// Name (for logs).
    pub name: String,
    /// CPU shares (the pool's, resolved to a number).
    pub cpu_shares: u64,
    /// CPU reservation, MHz (honoured by weighting).
    pub cpu_reservation_mhz: u64,
    /// CPU limit, MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit_mhz: Option<u64>,
    /// Memory reservation, MiB.
    pub memory_reservation_mib: u64,
    /// Memory limit, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mib: Option<u64>,
}

/// One VM as a host enforces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostVmResources {
    /// VM id.
    pub vm: Uuid,
    /// Pool; none = the host's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<Uuid>,
    /// CPU shares (resolved to a number).
    pub cpu_shares: u64,
    /// CPU reservation, MHz.
    pub cpu_reservation_mhz: u64,
    /// CPU limit, MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit_mhz: Option<u64>,
    /// Memory reservation, MiB.
    pub memory_reservation_mib: u64,
    /// Memory limit, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_mib: Option<u64>,
}

/// `host.applyResources` params: this host's part of the resource-pool tree. The host keeps
/// it (and enforces it) until the manager sends another.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostResources {
    /// Pools, parents before children.
    pub pools: Vec<HostPool>,
    /// VMs on this host.
    pub vms: Vec<HostVmResources>,
}
