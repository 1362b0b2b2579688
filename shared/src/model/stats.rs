//! Performance statistics: what host agents count for each running VM, and the samples the
//! manager keeps and serves for charts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A running VM's raw counters at one moment (host agent → manager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmCounters {
    /// The VM.
    pub vm: Uuid,
    /// CPU time its process (all threads) has used, nanoseconds.
    pub cpu_ns: u64,
    /// Resident memory of its process, bytes.
    pub rss_bytes: u64,
}

/// `host.stats` result (agent): counters of every running VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostCounters {
    /// When they were read, Unix ms.
    pub time_ms: i64,
    /// MHz of one host CPU (to turn CPU time into MHz).
    pub cpu_mhz_per_core: u32,
    /// The VMs.
    pub vms: Vec<VmCounters>,
}

/// One sample of a VM's (or a host's) load over an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatSample {
    /// End of the interval, Unix ms.
    pub time_ms: i64,
    /// CPU used, MHz (averaged over the interval).
    pub cpu_mhz: f64,
    /// Resident memory, MiB.
    pub memory_mib: f64,
}

/// `stats.query` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatsQueryParams {
    /// A VM or a host (a host's samples are the sums over its VMs).
    pub id: Uuid,
    /// Only samples after this time, Unix ms (default: the last hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
}
