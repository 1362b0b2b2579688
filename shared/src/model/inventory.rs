//! The inventory tree: datacenters, clusters, hosts, VMs, datastores, and change deltas.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::ObjectKind;
use super::host::HostInfo;
use super::vm::VmInfo;

/// A datacenter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatacenterInfo {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
}

/// A cluster of hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Id.
    pub id: Uuid,
    /// Name, unique in its datacenter.
    pub name: String,
    /// Datacenter.
    pub datacenter: Uuid,
}

/// A datastore in the manager's inventory (one object however many hosts see it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatastoreInfo {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Datacenter.
    pub datacenter: Uuid,
    /// Capacity, bytes (as last reported).
    pub capacity_bytes: u64,
    /// Free bytes (as last reported).
    pub free_bytes: u64,
    /// Hosts that mount it.
    pub hosts: Vec<Uuid>,
    /// Hosts that mount it but cannot reach it now (storage lost), with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inaccessible_on: Vec<DatastoreProblem>,
}

/// One host's trouble with a datastore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatastoreProblem {
    /// The host.
    pub host: Uuid,
    /// What is wrong, in words.
    pub problem: String,
}

/// `cluster.create` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterCreateParams {
    /// Name.
    pub name: String,
    /// Datacenter; the default one when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<Uuid>,
}

/// The whole inventory at once (`inventory.get`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// Datacenters.
    pub datacenters: Vec<DatacenterInfo>,
    /// Clusters.
    pub clusters: Vec<ClusterInfo>,
    /// Hosts.
    pub hosts: Vec<HostInfo>,
    /// Datastores.
    pub datastores: Vec<DatastoreInfo>,
    /// VMs.
    pub vms: Vec<VmInfo>,
    /// Resource pools.
    #[serde(default)]
    pub pools: Vec<super::pool::PoolInfo>,
}

/// One object, for inventory deltas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "object", rename_all = "camelCase")]
pub enum InventoryObject {
    /// A datacenter.
    Datacenter(DatacenterInfo),
    /// A cluster.
    Cluster(ClusterInfo),
    /// A host.
    Host(HostInfo),
    /// A datastore.
    Datastore(DatastoreInfo),
    /// A VM.
    Vm(VmInfo),
    /// A resource pool.
    Pool(super::pool::PoolInfo),
}

/// An inventory delta, pushed as `inventory.changed` to subscribed sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "change", rename_all = "camelCase")]
pub enum InventoryChange {
    /// Created or updated.
    Upsert {
        /// The object as it is now.
        object: Box<InventoryObject>,
    },
    /// Removed.
    Remove {
        /// Kind.
        kind: ObjectKind,
        /// Id.
        id: Uuid,
    },
}
