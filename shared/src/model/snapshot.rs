//! VM snapshots: a tree of frozen disk states per VM, and clones made from them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::disk::DiskSpec;

/// One snapshot: the disk files it froze (read-only from then on) and where it sits in the
/// VM's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotInfo {
    /// Stable id.
    pub id: Uuid,
    /// Name, unique within the VM.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// When it was taken, Unix ms.
    pub created_ms: i64,
    /// The snapshot it was taken on top of; none for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uuid>,
    /// The VM's disks as they were: files in the VM's directory that no longer change.
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    /// The frozen files are whole copies (native engine, which reads raw files only) rather
    /// than the bases of the VM's qcow2 overlays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copies: bool,
}

/// A VM's snapshots and which one its running state builds on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SnapshotTree {
    /// All snapshots, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<SnapshotInfo>,
    /// The snapshot the VM's current disks are overlays of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Uuid>,
}

impl SnapshotTree {
    /// One snapshot by id.
    pub fn get(&self, id: Uuid) -> Option<&SnapshotInfo> {
        self.snapshots.iter().find(|s| s.id == id)
    }

    /// One snapshot by name or id (as text).
    pub fn find(&self, key: &str) -> Option<&SnapshotInfo> {
        self.snapshots
            .iter()
            .find(|s| s.name == key || s.id.to_string() == key)
    }

    /// The snapshots taken directly on top of `id`.
    pub fn children(&self, id: Uuid) -> impl Iterator<Item = &SnapshotInfo> {
        self.snapshots.iter().filter(move |s| s.parent == Some(id))
    }
}

/// Where a linked clone's disks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LinkedBase {
    /// The source VM.
    pub vm: Uuid,
    /// Its snapshot whose disks the clone reads through.
    pub snapshot: Uuid,
}
