//! Alarms: what is wrong right now (a host not responding, a datastore lost, a VM or host
//! short of CPU or memory), as opposed to events, which record what happened.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::event::ObjectRef;

/// How bad an alarm is; `Critical` orders above `Warning`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum AlarmSeverity {
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

impl AlarmSeverity {
    /// Stable lower-case name (as stored in the database).
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmSeverity::Warning => "warning",
            AlarmSeverity::Critical => "critical",
        }
    }

    /// Parses [`AlarmSeverity::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Warning, Self::Critical]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for AlarmSeverity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The condition an alarm watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AlarmKind {
    /// The manager cannot reach (or does not trust) a host.
    HostConnection,
    /// A datastore is inaccessible on at least one host that mounts it.
    DatastoreAccess,
    /// A host's VMs use most of its CPU.
    HostCpuUsage,
    /// A host's VMs use most of its memory.
    HostMemoryUsage,
    /// A VM uses most of its virtual CPUs.
    VmCpuUsage,
}

impl AlarmKind {
    /// Every kind.
    pub const ALL: [AlarmKind; 5] = [
        AlarmKind::HostConnection,
        AlarmKind::DatastoreAccess,
        AlarmKind::HostCpuUsage,
        AlarmKind::HostMemoryUsage,
        AlarmKind::VmCpuUsage,
    ];

    /// Stable camelCase name (as on the wire and in the database).
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::HostConnection => "hostConnection",
            AlarmKind::DatastoreAccess => "datastoreAccess",
            AlarmKind::HostCpuUsage => "hostCpuUsage",
            AlarmKind::HostMemoryUsage => "hostMemoryUsage",
            AlarmKind::VmCpuUsage => "vmCpuUsage",
        }
    }

    /// Parses [`AlarmKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind in words, for people ("Host connection").
    pub fn label(self) -> &'static str {
        match self {
            AlarmKind::HostConnection => "Host connection",
            AlarmKind::DatastoreAccess => "Datastore access",
            AlarmKind::HostCpuUsage => "Host CPU usage",
            AlarmKind::HostMemoryUsage => "Host memory usage",
            AlarmKind::VmCpuUsage => "VM CPU usage",
        }
    }
}

impl std::fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One active alarm (at most one per kind and object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmInfo {
    /// Id (stays the same while the alarm is active, through severity changes).
    pub id: Uuid,
    /// What it watches.
    pub kind: AlarmKind,
    /// The host, datastore or VM it is about.
    pub target: ObjectRef,
    /// How bad it is now.
    pub severity: AlarmSeverity,
    /// What is wrong, in words, e.g. "Host h1 is not responding: connection refused".
    pub message: String,
    /// When it became active, Unix ms.
    pub triggered_ms: i64,
    /// Who acknowledged it (reset when the severity changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// When it was acknowledged, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_ms: Option<i64>,
}

/// What happened to an alarm (in `alarm.changed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AlarmChangeState {
    /// It became active.
    Triggered,
    /// Its severity or message changed, or it was acknowledged.
    Changed,
    /// Its condition ended; the alarm is gone.
    Cleared,
}

/// `alarm.changed` payload: an alarm and what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmChange {
    /// The alarm as it is now (as it was last, when cleared).
    pub alarm: AlarmInfo,
    /// What happened.
    pub state: AlarmChangeState,
}

/// `alarm.list` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlarmListParams {
    /// Only alarms about this host, datastore or VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Uuid>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectKind;

    #[test]
    fn severities_order_and_names_round_trip() {
        assert!(AlarmSeverity::Critical > AlarmSeverity::Warning);
        assert_eq!(AlarmSeverity::Critical.to_string(), "critical");
        assert_eq!(AlarmSeverity::Warning.to_string(), "warning");
        for s in [AlarmSeverity::Warning, AlarmSeverity::Critical] {
            assert_eq!(AlarmSeverity::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        for k in AlarmKind::ALL {
            assert_eq!(AlarmKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::json!(k.as_str())
            );
        }
        assert_eq!(AlarmKind::HostCpuUsage.label(), "Host CPU usage");
        assert_eq!(AlarmKind::parse("nonsense"), None);
    }

    #[test]
    fn alarm_info_is_camel_case_and_leaves_out_an_absent_acknowledgement() {
        let a = AlarmInfo {
            id: Uuid::nil(),
            kind: AlarmKind::VmCpuUsage,
            target: ObjectRef {
                kind: ObjectKind::Vm,
                id: Uuid::nil(),
                name: "web01".into(),
            },
            severity: AlarmSeverity::Critical,
            message: "VM web01 uses 97% of its CPU".into(),
            triggered_ms: 5,
            acknowledged_by: None,
            acknowledged_ms: None,
        };
        let v = serde_json::to_value(AlarmChange {
            alarm: a.clone(),
            state: AlarmChangeState::Triggered,
        })
        .unwrap();
        assert_eq!(v["state"], "triggered");
        assert_eq!(v["alarm"]["kind"], "vmCpuUsage");
        assert_eq!(v["alarm"]["triggeredMs"], 5);
        assert!(v["alarm"].get("acknowledgedBy").is_none(), "{v}");
        let back: AlarmChange = serde_json::from_value(v).unwrap();
        assert_eq!(back.alarm, a);
        assert!(serde_json::from_str::<AlarmListParams>(r#"{"targt":null}"#).is_err());
        assert_eq!(
            serde_json::from_str::<AlarmListParams>("{}").unwrap(),
            AlarmListParams::default()
        );
    }
}
