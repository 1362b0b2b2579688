//! Task rows.

use strata_shared::model::{ObjectKind, ObjectRef, TaskInfo, TaskState};
use strata_shared::rpc::RpcError;
use uuid::Uuid;

use super::{uuid, Db, DbError};

type TaskTuple = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<i64>,
);
const COLS: &str = "id, operation, description, target_kind, target_id, target_name, state, progress, step, error, result, username, queued_ms, completed_ms";

fn state_str(s: TaskState) -> &'static str {
    match s {
        TaskState::Queued => "queued",
        TaskState::Running => "running",
        TaskState::Success => "success",
        TaskState::Error => "error",
    }
}

fn state(s: &str) -> TaskState {
    match s {
        "queued" => TaskState::Queued,
        "running" => TaskState::Running,
        "success" => TaskState::Success,
        _ => TaskState::Error,
    }
}

fn row(t: TaskTuple) -> Result<TaskInfo, DbError> {
    let (
        id,
        operation,
        description,
        tk,
        tid,
        tname,
        st,
        progress,
        step,
        error,
        result,
        user,
        queued_ms,
        completed_ms,
    ) = t;
    let target = match (tk.as_deref().and_then(ObjectKind::parse), tid) {
        (Some(kind), Some(id)) => Some(ObjectRef {
            kind,
            id: uuid(&id)?,
            name: tname.unwrap_or_default(),
        }),
        _ => None,
    };
    let error: Option<RpcError> = error
        .map(|e| serde_json::from_str(&e))
        .transpose()
        .map_err(|e| DbError::Corrupt(e.to_string()))?;
    let result = result
        .map(|r| serde_json::from_str(&r))
        .transpose()
        .map_err(|e| DbError::Corrupt(e.to_string()))?;
    Ok(TaskInfo {
        id: uuid(&id)?,
        operation,
        description,
        target,
        state: state(&st),
        progress: progress.clamp(0, 100) as u8,
        step,
        error,
        result,
        user,
        queued_ms,
        completed_ms,
    })
}

impl Db {
    /// Stores a new task.
    pub async fn insert_task(&self, t: &TaskInfo) -> Result<(), DbError> {
        sqlx::query(&format!(
            "INSERT INTO tasks ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(t.id.to_string())
        .bind(&t.operation)
        .bind(&t.description)
        .bind(t.target.as_ref().map(|o| o.kind.as_str()))
        .bind(t.target.as_ref().map(|o| o.id.to_string()))
        .bind(t.target.as_ref().map(|o| o.name.clone()))
        .bind(state_str(t.state))
        .bind(i64::from(t.progress))
        .bind(&t.step)
        .bind(
            t.error
                .as_ref()
                .map(|e| serde_json::to_string(e).unwrap_or_default()),
        )
        .bind(t.result.as_ref().map(|r| r.to_string()))
        .bind(&t.user)
        .bind(t.queued_ms)
        .bind(t.completed_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes a task's changing fields.
    pub async fn update_task(&self, t: &TaskInfo) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE tasks SET state = $1, progress = $2, step = $3, error = $4, result = $5, completed_ms = $6, target_id = $7, target_kind = $8, target_name = $9 WHERE id = $10",
        )
        .bind(state_str(t.state))
        .bind(i64::from(t.progress))
        .bind(&t.step)
        .bind(t.error.as_ref().map(|e| serde_json::to_string(e).unwrap_or_default()))
        .bind(t.result.as_ref().map(|r| r.to_string()))
        .bind(t.completed_ms)
        .bind(t.target.as_ref().map(|o| o.id.to_string()))
        .bind(t.target.as_ref().map(|o| o.kind.as_str()))
        .bind(t.target.as_ref().map(|o| o.name.clone()))
        .bind(t.id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One task.
    pub async fn task(&self, id: Uuid) -> Result<TaskInfo, DbError> {
        let t: TaskTuple = sqlx::query_as(&format!("SELECT {COLS} FROM tasks WHERE id = $1"))
            .bind(id.to_string())
            .fetch_one(&self.pool)
            .await?;
        row(t)
    }

    /// Recent tasks, newest first.
    pub async fn tasks(&self, limit: u32, active_only: bool) -> Result<Vec<TaskInfo>, DbError> {
        let filter = if active_only {
            "WHERE state IN ('queued', 'running')"
        } else {
            ""
        };
        let rows: Vec<TaskTuple> = sqlx::query_as(&format!(
            "SELECT {COLS} FROM tasks {filter} ORDER BY queued_ms DESC, rowid DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(row).collect()
    }

    /// Marks tasks left queued or running by a previous run as failed; returns how many.
    pub async fn fail_unfinished_tasks(&self, reason: &RpcError) -> Result<u64, DbError> {
        let r = sqlx::query("UPDATE tasks SET state = 'error', error = $1, completed_ms = $2 WHERE state IN ('queued', 'running')")
            .bind(serde_json::to_string(reason).unwrap_or_default())
            .bind(strata_shared::now_ms())
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{on_both_backends, TestDb};
    use super::*;

    fn task(queued_ms: i64, state: TaskState) -> TaskInfo {
        TaskInfo {
            id: Uuid::new_v4(),
            operation: "vm.powerOn".into(),
            description: "Power on".into(),
            target: Some(ObjectRef {
                kind: ObjectKind::Vm,
                id: Uuid::new_v4(),
                name: "web".into(),
            }),
            state,
            progress: 0,
            step: None,
            error: None,
            result: None,
            user: "admin".into(),
            queued_ms,
            completed_ms: None,
        }
    }

    on_both_backends!(tasks_round_trip);

    async fn tasks_round_trip(db: TestDb) {
        let mut a = task(1_000, TaskState::Running);
        db.insert_task(&a).await.unwrap();
        assert_eq!(db.task(a.id).await.unwrap(), a);
        a.state = TaskState::Success;
        a.progress = 100;
        a.step = Some("done".into());
        a.result = Some(serde_json::json!({"id": 7, "ok": true}));
        a.completed_ms = Some(1_500);
        db.update_task(&a).await.unwrap();
        assert_eq!(db.task(a.id).await.unwrap(), a);
        // Same queue time: the later insert is the newer task.
        let b = task(2_000, TaskState::Queued);
        let c = task(2_000, TaskState::Running);
        db.insert_task(&b).await.unwrap();
        db.insert_task(&c).await.unwrap();
        let ids: Vec<Uuid> = db
            .tasks(10, false)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, vec![c.id, b.id, a.id]);
        assert_eq!(db.tasks(1, false).await.unwrap().len(), 1);
        assert_eq!(db.tasks(10, true).await.unwrap().len(), 2);
        let reason = RpcError::internal("the manager stopped");
        assert_eq!(db.fail_unfinished_tasks(&reason).await.unwrap(), 2);
        let failed = db.task(b.id).await.unwrap();
        assert_eq!(
            (failed.state, failed.error.map(|e| e.message)),
            (TaskState::Error, Some("the manager stopped".into()))
        );
        assert!(db.tasks(10, true).await.unwrap().is_empty());
        assert!(matches!(
            db.task(Uuid::new_v4()).await,
            Err(DbError::NotFound)
        ));
    }
}
