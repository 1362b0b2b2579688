//! Tasks: every long operation is a row that moves queued → running → success | error, with
//! progress pushed to subscribers as it goes.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::Value;
use strata_shared::api::notifications;
use strata_shared::model::{ObjectRef, TaskInfo, TaskState};
use strata_shared::rpc::{ErrorCode, RpcError};
use tokio::task::JoinSet;
use tracing::{info, warn};
use uuid::Uuid;

use crate::app::App;

/// Tracks running tasks so shutdown can wait for them.
#[derive(Default)]
pub struct Tasks {
    running: Mutex<JoinSet<()>>,
}

/// Handle a running task uses to report progress.
pub struct TaskHandle {
    app: Weak<App>,
    info: Mutex<TaskInfo>,
}

impl TaskHandle {
    /// Sets progress (0..=100) and the current step; persisted and pushed.
    pub async fn progress(&self, percent: u8, step: &str) {
        let snapshot = {
            let Ok(mut t) = self.info.lock() else { return };
            t.progress = percent.min(100);
            t.step = Some(step.to_string());
            t.clone()
        };
        if let Some(app) = self.app.upgrade() {
            if let Err(e) = app.db.update_task(&snapshot).await {
                warn!(task = %snapshot.id, error = %e, "cannot store task progress");
            }
            app.publish(notifications::TASK_PROGRESS, &snapshot);
        }
    }

    /// Sets the target once it is known (e.g. the VM a create made).
    pub fn set_target(&self, target: ObjectRef) {
        if let Ok(mut t) = self.info.lock() {
            t.target = Some(target);
        }
    }

    fn snapshot(&self) -> Option<TaskInfo> {
        self.info.lock().ok().map(|t| t.clone())
    }
}

impl Tasks {
    /// Records a task and runs `work` in the background; returns the queued task at once.
    pub async fn start<F, Fut>(
        &self,
        app: &Arc<App>,
        user: &str,
        operation: &str,
        description: String,
        target: Option<ObjectRef>,
        work: F,
    ) -> Result<TaskInfo, RpcError>
    where
        F: FnOnce(Arc<TaskHandle>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, RpcError>> + Send + 'static,
    {
        let task = TaskInfo {
            id: Uuid::new_v4(),
            operation: operation.to_string(),
            description,
            target,
            state: TaskState::Queued,
            progress: 0,
            step: None,
            error: None,
            result: None,
            user: user.to_string(),
            queued_ms: strata_shared::now_ms(),
            completed_ms: None,
        };
        app.db.insert_task(&task).await?;
        app.publish(notifications::TASK_PROGRESS, &task);
        let handle = Arc::new(TaskHandle {
            app: Arc::downgrade(app),
            info: Mutex::new(task.clone()),
        });
        let weak = Arc::downgrade(app);
        let fut = async move {
            if let Ok(mut t) = handle.info.lock() {
                t.state = TaskState::Running;
            }
            handle.progress(0, "started").await;
            let outcome = work(handle.clone()).await;
            let Some(mut t) = handle.snapshot() else {
                return;
            };
            t.completed_ms = Some(strata_shared::now_ms());
            match outcome {
                Ok(v) => {
                    t.state = TaskState::Success;
                    t.progress = 100;
                    t.step = None;
                    t.result = (!v.is_null()).then_some(v);
                }
                Err(e) => {
                    t.state = TaskState::Error;
                    t.error = Some(e);
                }
            }
            info!(task = %t.id, operation = %t.operation, state = %t.state, "task finished");
            if let Some(app) = weak.upgrade() {
                if let Err(e) = app.db.update_task(&t).await {
                    warn!(task = %t.id, error = %e, "cannot store a finished task");
                }
                app.publish(notifications::TASK_PROGRESS, &t);
                app.publish(notifications::TASK_DONE, &t);
            }
        };
        if let Ok(mut set) = self.running.lock() {
            while set.try_join_next().is_some() {}
            set.spawn(fut);
        }
        Ok(task)
    }

    /// Waits up to `grace` for running tasks; returns how many were still running.
    pub async fn drain(&self, grace: Duration) -> usize {
        let mut set = match self.running.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => return 0,
        };
        let _ =
            tokio::time::timeout(grace, async { while set.join_next().await.is_some() {} }).await;
        let left = set.len();
        set.abort_all();
        left
    }
}

/// The error stored on tasks a shutdown or crash interrupted.
pub fn interrupted() -> RpcError {
    RpcError::new(
        ErrorCode::Unavailable,
        "interrupted: the manager stopped before the task finished",
    )
}
