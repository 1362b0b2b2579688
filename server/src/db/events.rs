//! Event rows (append-only).

use strata_shared::model::{EventInfo, ObjectKind, ObjectRef, Severity};
use uuid::Uuid;

use super::{uuid, Db, DbError};

type EventTuple = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);
const COLS: &str =
    "id, time_ms, kind, severity, object_kind, object_id, object_name, username, message";

fn row(t: EventTuple) -> Result<EventInfo, DbError> {
    let (id, time_ms, kind, severity, ok, oid, oname, user, message) = t;
    let object = match (ok.as_deref().and_then(ObjectKind::parse), oid) {
        (Some(k), Some(i)) => Some(ObjectRef {
            kind: k,
            id: uuid(&i)?,
            name: oname.unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(EventInfo {
        id,
        time_ms,
        kind,
        severity: Severity::parse(&severity),
        object,
        user,
        message,
    })
}

impl Db {
    /// Appends an event; returns it with its id.
    pub async fn insert_event(
        &self,
        kind: &str,
        severity: Severity,
        object: Option<&ObjectRef>,
        user: Option<&str>,
        message: &str,
    ) -> Result<EventInfo, DbError> {
        let time_ms = strata_shared::now_ms();
        let (id,): (i64,) = sqlx::query_as(&format!(
            "INSERT INTO events ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &COLS[4..]
        ))
        .bind(time_ms)
        .bind(kind)
        .bind(severity.as_str())
        .bind(object.map(|o| o.kind.as_str()))
        .bind(object.map(|o| o.id.to_string()))
        .bind(object.map(|o| o.name.clone()))
        .bind(user)
        .bind(message)
        .fetch_one(&self.pool)
        .await?;
        Ok(EventInfo {
            id,
            time_ms,
            kind: kind.to_string(),
            severity,
            object: object.cloned(),
            user: user.map(str::to_string),
            message: message.to_string(),
        })
    }

    /// Events, newest first, optionally about one object and after an id.
    pub async fn events(
        &self,
        object: Option<Uuid>,
        after_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<EventInfo>, DbError> {
        let rows: Vec<EventTuple> = sqlx::query_as(&format!(
            "SELECT {COLS} FROM events WHERE ($1 IS NULL OR object_id = $2) AND id > $3 ORDER BY id DESC LIMIT $4"
        ))
        .bind(object.map(|o| o.to_string()))
        .bind(object.map(|o| o.to_string()))
        .bind(after_id.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{on_both_backends, TestDb};
    use super::*;

    on_both_backends!(events_append_and_filter);

    async fn events_append_and_filter(db: TestDb) {
        let vm = ObjectRef {
            kind: ObjectKind::Vm,
            id: Uuid::new_v4(),
            name: "a".into(),
        };
        let e1 = db
            .insert_event(
                "vm.created",
                Severity::Info,
                Some(&vm),
                Some("admin"),
                "created",
            )
            .await
            .unwrap();
        let e2 = db
            .insert_event("host.added", Severity::Info, None, None, "added")
            .await
            .unwrap();
        assert!(e2.id > e1.id);
        let all = db.events(None, None, 10).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, e2.id, "newest first");
        let about = db.events(Some(vm.id), None, 10).await.unwrap();
        assert_eq!(about, vec![e1.clone()]);
        assert_eq!(db.events(None, Some(e1.id), 10).await.unwrap().len(), 1);
    }
}
