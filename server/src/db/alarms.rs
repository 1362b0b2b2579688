//! Active alarm rows: one per kind and object, updated in place, deleted when cleared.

use strata_shared::model::{
    AlarmChangeState, AlarmInfo, AlarmKind, AlarmSeverity, ObjectKind, ObjectRef,
};
use uuid::Uuid;

use super::{uuid, Db, DbError};

type AlarmTuple = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<i64>,
);
const COLS: &str = "id, kind, target_kind, target_id, target_name, severity, message, triggered_ms, acknowledged_by, acknowledged_ms";

fn row(t: AlarmTuple) -> Result<AlarmInfo, DbError> {
    let (id, kind, tkind, tid, tname, severity, message, triggered_ms, by, at) = t;
    Ok(AlarmInfo {
        id: uuid(&id)?,
        kind: AlarmKind::parse(&kind)
            .ok_or_else(|| DbError::Corrupt(format!("alarm kind {kind:?}")))?,
        target: ObjectRef {
            kind: ObjectKind::parse(&tkind)
                .ok_or_else(|| DbError::Corrupt(format!("alarm target kind {tkind:?}")))?,
            id: uuid(&tid)?,
            name: tname,
        },
        severity: AlarmSeverity::parse(&severity)
            .ok_or_else(|| DbError::Corrupt(format!("alarm severity {severity:?}")))?,
        message,
        triggered_ms,
        acknowledged_by: by,
        acknowledged_ms: at,
    })
}

/// What [`Db::upsert_alarm`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmUpsert {
    /// The alarm as stored now.
    pub alarm: AlarmInfo,
    /// `Triggered` (new) or `Changed` (severity or message).
    pub state: AlarmChangeState,
    /// The severity before, when it changed.
    pub previous: Option<AlarmSeverity>,
}

impl Db {
    /// Active alarms, optionally about one object: most severe first, then newest first.
    pub async fn alarms(&self, target: Option<Uuid>) -> Result<Vec<AlarmInfo>, DbError> {
        let rows: Vec<AlarmTuple> = sqlx::query_as(&format!(
            "SELECT {COLS} FROM alarms WHERE ($1 IS NULL OR target_id = $2)
             ORDER BY CASE severity WHEN 'critical' THEN 0 ELSE 1 END, triggered_ms DESC, id"
        ))
        .bind(target.map(|t| t.to_string()))
        .bind(target.map(|t| t.to_string()))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(row).collect()
    }

    /// One alarm (`NotFound` when it is not active).
    pub async fn alarm(&self, id: Uuid) -> Result<AlarmInfo, DbError> {
        let t: AlarmTuple = sqlx::query_as(&format!("SELECT {COLS} FROM alarms WHERE id = $1"))
            .bind(id.to_string())
            .fetch_one(&self.pool)
            .await?;
        row(t)
    }

    /// The active alarm of a kind on an object, if any.
    pub async fn alarm_for(
        &self,
        kind: AlarmKind,
        target: Uuid,
    ) -> Result<Option<AlarmInfo>, DbError> {
        let t: Option<AlarmTuple> = sqlx::query_as(&format!(
            "SELECT {COLS} FROM alarms WHERE kind = $1 AND target_id = $2"
        ))
        .bind(kind.as_str())
        .bind(target.to_string())
        .fetch_optional(&self.pool)
        .await?;
        t.map(row).transpose()
    }

    /// Makes the alarm of `kind` on `target` active with this severity and message: inserts
    /// it (triggered at `now_ms`) or updates the one already active in place, keeping its id
    /// and trigger time; a severity change drops the acknowledgement. `None` when it was
    /// already active exactly so.
    pub async fn upsert_alarm(
        &self,
        kind: AlarmKind,
        target: &ObjectRef,
        severity: AlarmSeverity,
        message: &str,
        now_ms: i64,
    ) -> Result<Option<AlarmUpsert>, DbError> {
        let mut tx = self.pool.begin().await?;
        let old: Option<AlarmTuple> = sqlx::query_as(&format!(
            "SELECT {COLS} FROM alarms WHERE kind = $1 AND target_id = $2{}",
            self.backend().for_update()
        ))
        .bind(kind.as_str())
        .bind(target.id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let out = match old.map(row).transpose()? {
            None => {
                let alarm = AlarmInfo {
                    id: Uuid::new_v4(),
                    kind,
                    target: target.clone(),
                    severity,
                    message: message.to_string(),
                    triggered_ms: now_ms,
                    acknowledged_by: None,
                    acknowledged_ms: None,
                };
                sqlx::query(&format!(
                    "INSERT INTO alarms ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)"
                ))
                .bind(alarm.id.to_string())
                .bind(kind.as_str())
                .bind(target.kind.as_str())
                .bind(target.id.to_string())
                .bind(&target.name)
                .bind(severity.as_str())
                .bind(message)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                AlarmUpsert {
                    alarm,
                    state: AlarmChangeState::Triggered,
                    previous: None,
                }
            }
            Some(old)
                if old.severity == severity
                    && old.message == message
                    && old.target.name == target.name =>
            {
                return Ok(None);
            }
            Some(old) => {
                let mut alarm = old.clone();
                alarm.severity = severity;
                alarm.message = message.to_string();
                alarm.target.name.clone_from(&target.name);
                if old.severity != severity {
                    alarm.acknowledged_by = None;
                    alarm.acknowledged_ms = None;
                }
                sqlx::query(
                    "UPDATE alarms SET severity = $1, message = $2, target_name = $3, acknowledged_by = $4, acknowledged_ms = $5 WHERE id = $6",
                )
                .bind(severity.as_str())
                .bind(message)
                .bind(&target.name)
                .bind(&alarm.acknowledged_by)
                .bind(alarm.acknowledged_ms)
                .bind(alarm.id.to_string())
                .execute(&mut *tx)
                .await?;
                AlarmUpsert {
                    alarm,
                    state: AlarmChangeState::Changed,
                    previous: (old.severity != severity).then_some(old.severity),
                }
            }
        };
        tx.commit().await?;
        Ok(Some(out))
    }

    /// Records who acknowledged an active alarm and when (`NotFound` when it is not active).
    pub async fn acknowledge_alarm(
        &self,
        id: Uuid,
        user: &str,
        now_ms: i64,
    ) -> Result<AlarmInfo, DbError> {
        let t: AlarmTuple = sqlx::query_as(&format!(
            "UPDATE alarms SET acknowledged_by = $1, acknowledged_ms = $2 WHERE id = $3 RETURNING {COLS}"
        ))
        .bind(user)
        .bind(now_ms)
        .bind(id.to_string())
        .fetch_one(&self.pool)
        .await?;
        row(t)
    }

    /// Gives the active alarms on `target` its new name; returns them as they are now.
    pub async fn rename_alarm_target(
        &self,
        target: Uuid,
        name: &str,
    ) -> Result<Vec<AlarmInfo>, DbError> {
        let rows: Vec<AlarmTuple> = sqlx::query_as(&format!(
            "UPDATE alarms SET target_name = $1 WHERE target_id = $2 AND target_name <> $1 \
             RETURNING {COLS}"
        ))
        .bind(name)
        .bind(target.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(row).collect()
    }

    /// Clears the alarm of `kind` on `target`; returns it as it was, `None` when none was
    /// active.
    pub async fn delete_alarm(
        &self,
        kind: AlarmKind,
        target: Uuid,
    ) -> Result<Option<AlarmInfo>, DbError> {
        let t: Option<AlarmTuple> = sqlx::query_as(&format!(
            "DELETE FROM alarms WHERE kind = $1 AND target_id = $2 RETURNING {COLS}"
        ))
        .bind(kind.as_str())
        .bind(target.to_string())
        .fetch_optional(&self.pool)
        .await?;
        t.map(row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{on_both_backends, TestDb};
    use super::*;

    on_both_backends!(
        one_alarm_per_kind_and_object_updated_in_place,
        list_order_acknowledge_and_clear,
        a_renamed_target_is_renamed_in_its_alarms
    );

    async fn a_renamed_target_is_renamed_in_its_alarms(db: TestDb) {
        let h = host("h1");
        let other = host("h2");
        for (target, kind) in [
            (&h, AlarmKind::HostConnection),
            (&h, AlarmKind::HostCpuUsage),
            (&other, AlarmKind::HostConnection),
        ] {
            db.upsert_alarm(kind, target, AlarmSeverity::Warning, "m", 1_000)
                .await
                .unwrap();
        }
        let renamed = db.rename_alarm_target(h.id, "h1-new").await.unwrap();
        assert_eq!(renamed.len(), 2);
        assert!(renamed.iter().all(|a| a.target.name == "h1-new"));
        assert!(db
            .alarms(Some(h.id))
            .await
            .unwrap()
            .iter()
            .all(|a| a.target.name == "h1-new"));
        assert_eq!(
            db.alarms(Some(other.id)).await.unwrap()[0].target.name,
            "h2"
        );
        assert!(db
            .rename_alarm_target(h.id, "h1-new")
            .await
            .unwrap()
            .is_empty());
    }

    fn host(name: &str) -> ObjectRef {
        ObjectRef {
            kind: ObjectKind::Host,
            id: Uuid::new_v4(),
            name: name.into(),
        }
    }

    async fn one_alarm_per_kind_and_object_updated_in_place(db: TestDb) {
        let h = host("h1");
        let up = db
            .upsert_alarm(
                AlarmKind::HostConnection,
                &h,
                AlarmSeverity::Critical,
                "Host h1 is not responding: connection lost",
                1_000,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(up.state, AlarmChangeState::Triggered);
        assert_eq!(up.previous, None);
        let first = up.alarm.clone();
        assert_eq!(db.alarm(first.id).await.unwrap(), first);

        // The same again changes nothing.
        assert_eq!(
            db.upsert_alarm(
                AlarmKind::HostConnection,
                &h,
                AlarmSeverity::Critical,
                "Host h1 is not responding: connection lost",
                2_000,
            )
            .await
            .unwrap(),
            None
        );
        // A new message updates it in place: same id, same trigger time, acknowledgement kept.
        db.acknowledge_alarm(first.id, "op", 1_500).await.unwrap();
        let up = db
            .upsert_alarm(
                AlarmKind::HostConnection,
                &h,
                AlarmSeverity::Critical,
                "Host h1 is not responding: connection refused",
                3_000,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(up.state, AlarmChangeState::Changed);
        assert_eq!(up.previous, None);
        assert_eq!(
            (up.alarm.id, up.alarm.triggered_ms),
            (first.id, first.triggered_ms)
        );
        assert_eq!(
            (
                up.alarm.acknowledged_by.as_deref(),
                up.alarm.acknowledged_ms
            ),
            (Some("op"), Some(1_500))
        );
        assert_eq!(db.alarms(None).await.unwrap(), vec![up.alarm.clone()]);

        // Another kind on the same object is another alarm.
        let vm_cpu = db
            .upsert_alarm(
                AlarmKind::HostCpuUsage,
                &h,
                AlarmSeverity::Warning,
                "Host h1 uses 80% of its CPU",
                4_000,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(vm_cpu.state, AlarmChangeState::Triggered);
        assert_eq!(db.alarms(Some(h.id)).await.unwrap().len(), 2);

        // A severity change resets the acknowledgement.
        db.acknowledge_alarm(vm_cpu.alarm.id, "op", 4_100)
            .await
            .unwrap();
        let up = db
            .upsert_alarm(
                AlarmKind::HostCpuUsage,
                &h,
                AlarmSeverity::Critical,
                "Host h1 uses 95% of its CPU",
                5_000,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(up.previous, Some(AlarmSeverity::Warning));
        assert_eq!(up.alarm.triggered_ms, 4_000);
        assert_eq!(
            (up.alarm.acknowledged_by, up.alarm.acknowledged_ms),
            (None, None)
        );
        assert_eq!(
            db.alarm(vm_cpu.alarm.id).await.unwrap().acknowledged_by,
            None
        );
    }

    async fn list_order_acknowledge_and_clear(mut db: TestDb) {
        let (a, b, c) = (host("a"), host("b"), host("c"));
        let warn_old = db
            .upsert_alarm(
                AlarmKind::HostCpuUsage,
                &a,
                AlarmSeverity::Warning,
                "w old",
                1_000,
            )
            .await
            .unwrap()
            .unwrap()
            .alarm;
        let crit_old = db
            .upsert_alarm(
                AlarmKind::HostConnection,
                &b,
                AlarmSeverity::Critical,
                "c old",
                2_000,
            )
            .await
            .unwrap()
            .unwrap()
            .alarm;
        let warn_new = db
            .upsert_alarm(
                AlarmKind::HostMemoryUsage,
                &c,
                AlarmSeverity::Warning,
                "w new",
                3_000,
            )
            .await
            .unwrap()
            .unwrap()
            .alarm;
        let crit_new = db
            .upsert_alarm(
                AlarmKind::HostConnection,
                &c,
                AlarmSeverity::Critical,
                "c new",
                4_000,
            )
            .await
            .unwrap()
            .unwrap()
            .alarm;
        let ids: Vec<Uuid> = db
            .alarms(None)
            .await
            .unwrap()
            .into_iter()
            .map(|x| x.id)
            .collect();
        assert_eq!(
            ids,
            vec![crit_new.id, crit_old.id, warn_new.id, warn_old.id],
            "most severe, then newest first"
        );
        let of_c: Vec<Uuid> = db
            .alarms(Some(c.id))
            .await
            .unwrap()
            .into_iter()
            .map(|x| x.id)
            .collect();
        assert_eq!(of_c, vec![crit_new.id, warn_new.id]);

        let acked = db.acknowledge_alarm(crit_old.id, "alice", 9).await.unwrap();
        assert_eq!(
            (acked.acknowledged_by.as_deref(), acked.acknowledged_ms),
            (Some("alice"), Some(9))
        );
        assert!(matches!(
            db.acknowledge_alarm(Uuid::new_v4(), "alice", 9).await,
            Err(DbError::NotFound)
        ));
        assert!(matches!(
            db.alarm(Uuid::new_v4()).await,
            Err(DbError::NotFound)
        ));

        let gone = db
            .delete_alarm(AlarmKind::HostConnection, b.id)
            .await
            .unwrap();
        assert_eq!(gone, Some(acked));
        assert_eq!(
            db.delete_alarm(AlarmKind::HostConnection, b.id)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            db.alarm_for(AlarmKind::HostConnection, b.id).await.unwrap(),
            None
        );
        assert_eq!(
            db.alarm_for(AlarmKind::HostConnection, c.id)
                .await
                .unwrap()
                .map(|x| x.id),
            Some(crit_new.id)
        );

        // Active alarms survive closing and reopening the database.
        db.reopen().await;
        let after = db.alarms(None).await.unwrap();
        assert_eq!(after.len(), 3);
        assert_eq!(after[0], crit_new);
    }
}
