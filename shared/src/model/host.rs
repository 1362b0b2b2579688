//! Hosts: what a host agent reports about its machine and how the manager sees it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::vm::Engine;

/// A datastore as one host sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatastoreFacts {
    /// The volume's id, kept in the datastore's `.strata-datastore` file: hosts that mount
    /// the same directory report the same id.
    #[serde(default = "Uuid::nil")]
    pub id: Uuid,
    /// Name, unique on the host.
    pub name: String,
    /// Directory on the host.
    pub path: String,
    /// File system size, bytes.
    pub capacity_bytes: u64,
    /// Free bytes.
    pub free_bytes: u64,
    /// The host can read and write it now.
    #[serde(default = "yes")]
    pub accessible: bool,
    /// Why it is not accessible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

fn yes() -> bool {
    true
}

/// A datastore's reachability changed on a host (pushed as `host.datastoreChanged`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatastoreChange {
    /// The datastore's name on the host.
    pub name: String,
    /// Reachable now.
    pub accessible: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// VMs whose files are on it.
    pub vms: Vec<String>,
}

/// What a host agent reports about its machine (`host.info` on the agent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostFacts {
    /// The agent's stable id (kept in its data dir).
    pub id: Uuid,
    /// Host name of the machine.
    pub hostname: String,
    /// Logical CPUs.
    pub cpu_count: u32,
    /// Nominal MHz per CPU.
    pub cpu_mhz: u32,
    /// Physical memory, MiB.
    pub memory_mib: u64,
    /// True when /proc/cpuinfo shows vmx or svm.
    pub hardware_virtualization: bool,
    /// Engines this host can run.
    pub engines: Vec<Engine>,
    /// What `auto` means on this host.
    pub default_engine: Engine,
    /// QEMU's version, when installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu_version: Option<String>,
    /// Strata version of the agent.
    pub agent_version: String,
    /// Datastores.
    pub datastores: Vec<DatastoreFacts>,
    /// The manager that last used this host since the agent started, when one did: changes
    /// made directly on a managed host bypass its manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<ManagerContact>,
}

/// A manager's last call to a host agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagerContact {
    /// The manager's credential (user name) on this host.
    pub username: String,
    /// When it last called, Unix ms.
    pub last_seen_ms: i64,
}

/// The manager's connection to a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ConnectionState {
    /// Connected and in sync.
    Connected,
    /// Not reachable; the manager keeps retrying.
    Disconnected,
    /// The host presented a different certificate; the manager will not talk to it until an
    /// operator reconnects it with the new thumbprint.
    NotTrusted,
}

impl std::fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectionState::Connected => "connected",
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::NotTrusted => "notTrusted",
        })
    }
}

/// A host in the manager's inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostInfo {
    /// Id (the agent's own id).
    pub id: Uuid,
    /// Display name (the machine's host name).
    pub name: String,
    /// `host:port` of the agent.
    pub address: String,
    /// Datacenter it belongs to.
    pub datacenter: Uuid,
    /// Cluster, when not standalone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Uuid>,
    /// Pinned SHA-256 certificate thumbprint.
    pub thumbprint: String,
    /// Connection state.
    pub connection_state: ConnectionState,
    /// Why it is not connected, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// Last facts the agent reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<HostFacts>,
}

/// `host.add` params (manager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostAddParams {
    /// `host:port` of the agent.
    pub address: String,
    /// Agent's administrator user (normally root).
    pub username: String,
    /// Its password; used once to register the manager, never stored.
    pub password: String,
    /// Expected SHA-256 certificate thumbprint; when missing the call fails with
    /// `NotTrusted` and `data.thumbprint` set to what the host presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    /// Cluster to join; standalone in the default datacenter when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Uuid>,
}

/// `host.registerManager` params (agent): the manager asks for its own credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterManagerParams {
    /// The manager's id.
    pub manager_id: Uuid,
}

/// `host.registerManager` result: a credential only this manager holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagerCredential {
    /// User name to log in with.
    pub username: String,
    /// Secret key (shown once).
    pub key: String,
}
