//! Tasks: every long operation returns one at once and reports progress through it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::event::ObjectRef;
use crate::rpc::RpcError;

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TaskState {
    /// Accepted, not started.
    Queued,
    /// Under way.
    Running,
    /// Finished well.
    Success,
    /// Finished with an error.
    Error,
}

impl TaskState {
    /// True for `Success` and `Error`.
    pub fn is_done(self) -> bool {
        matches!(self, TaskState::Success | TaskState::Error)
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Error => "error",
        })
    }
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskInfo {
    /// Id.
    pub id: Uuid,
    /// Method that started it, e.g. `vm.powerOn`.
    pub operation: String,
    /// What it does, in words.
    pub description: String,
    /// The object it works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ObjectRef>,
    /// State.
    pub state: TaskState,
    /// Percent done, 0..=100.
    pub progress: u8,
    /// Current step, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
    /// What it produced (e.g. the created VM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Who started it.
    pub user: String,
    /// When it was accepted, Unix ms.
    pub queued_ms: i64,
    /// When it finished, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_ms: Option<i64>,
}

/// `task.list` params.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskListParams {
    /// Most recent first, at most this many (default 100, max 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only queued or running tasks.
    #[serde(default)]
    pub active_only: bool,
}
