//! Events: the append-only record of everything that changed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kinds of inventory objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ObjectKind {
    /// Datacenter.
    Datacenter,
    /// Cluster.
    Cluster,
    /// Host.
    Host,
    /// Virtual machine.
    Vm,
    /// Datastore.
    Datastore,
    /// User.
    User,
    /// Resource pool.
    Pool,
}

impl ObjectKind {
    /// Stable lower-case name (as stored in the database).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Datacenter => "datacenter",
            ObjectKind::Cluster => "cluster",
            ObjectKind::Host => "host",
            ObjectKind::Vm => "vm",
            ObjectKind::Datastore => "datastore",
            ObjectKind::User => "user",
            ObjectKind::Pool => "pool",
        }
    }
    /// Parses [`ObjectKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Datacenter,
            Self::Cluster,
            Self::Host,
            Self::Vm,
            Self::Datastore,
            Self::User,
            Self::Pool,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Names one object: kind, id and its name when the reference was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// Kind.
    pub kind: ObjectKind,
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
}

/// How serious an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// Normal operation.
    Info,
    /// Needs attention.
    Warning,
    /// Something failed.
    Error,
}

impl Severity {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
    /// Parses [`Severity::as_str`].
    pub fn parse(s: &str) -> Self {
        match s {
            "warning" => Severity::Warning,
            "error" => Severity::Error,
            _ => Severity::Info,
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventInfo {
    /// Increasing id.
    pub id: i64,
    /// When, Unix ms.
    pub time_ms: i64,
    /// Stable kind, e.g. `vm.poweredOn`, `host.connected`, `user.loginFailed`.
    pub kind: String,
    /// Severity.
    pub severity: Severity,
    /// The object it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    /// User whose action caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What happened, in words.
    pub message: String,
}

/// `event.list` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventListParams {
    /// Only events about this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Uuid>,
    /// Only events with an id greater than this (for following).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_id: Option<i64>,
    /// At most this many, newest first (default 100, max 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_kind_parses_back() {
        for k in [
            ObjectKind::Datacenter,
            ObjectKind::Cluster,
            ObjectKind::Host,
            ObjectKind::Vm,
            ObjectKind::Datastore,
            ObjectKind::User,
            ObjectKind::Pool,
        ] {
            assert_eq!(ObjectKind::parse(k.as_str()), Some(k));
        }
    }
}
