//! The datastore access alarm: critical while a datastore is inaccessible on at least one
//! host that mounts it, cleared when every host reaches it again (or it leaves the inventory).

use std::collections::HashMap;

use strata_shared::model::{AlarmKind, AlarmSeverity, ObjectKind, ObjectRef};
use tracing::warn;
use uuid::Uuid;

use crate::app::App;

/// The alarm message for a datastore with these (host name, problem) pairs.
pub fn message(datastore: &str, problems: &[(String, String)]) -> String {
    match problems {
        [(host, problem)] => {
            format!("Datastore {datastore} is inaccessible on {host}: {problem}")
        }
        many => format!(
            "Datastore {datastore} is inaccessible on {} hosts: {}",
            many.len(),
            many.iter()
                .map(|(h, p)| format!("{h} ({p})"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// Re-checks every datastore's access alarm against the inventory (after a host reports its
/// datastores, a datastore changes on a host, or a host goes away).
pub async fn evaluate(app: &App) {
    let (datastores, hosts, stored) = match (
        app.db.datastores().await,
        app.db.hosts().await,
        app.db.alarms(None).await,
    ) {
        (Ok(d), Ok(h), Ok(a)) => (d, h, a),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            warn!(error = %e, "cannot check the datastore alarms");
            return;
        }
    };
    let names: HashMap<Uuid, String> = hosts
        .into_iter()
        .map(|h| (h.info.id, h.info.name))
        .collect();
    let mut bad = Vec::new();
    for d in &datastores {
        if d.inaccessible_on.is_empty() {
            continue;
        }
        let problems: Vec<(String, String)> = d
            .inaccessible_on
            .iter()
            .map(|p| {
                let host = names
                    .get(&p.host)
                    .cloned()
                    .unwrap_or_else(|| p.host.to_string());
                (host, p.problem.clone())
            })
            .collect();
        let target = ObjectRef {
            kind: ObjectKind::Datastore,
            id: d.id,
            name: d.name.clone(),
        };
        super::raise(
            app,
            AlarmKind::DatastoreAccess,
            &target,
            AlarmSeverity::Critical,
            &message(&d.name, &problems),
        )
        .await;
        bad.push(d.id);
    }
    for a in stored {
        if a.kind != AlarmKind::DatastoreAccess || bad.contains(&a.target.id) {
            continue;
        }
        let why = if datastores.iter().any(|d| d.id == a.target.id) {
            format!(
                "datastore {} is accessible again on every host",
                a.target.name
            )
        } else {
            format!("datastore {} is no longer in the inventory", a.target.name)
        };
        super::clear(app, AlarmKind::DatastoreAccess, a.target.id, &why).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_hosts_and_problems() {
        assert_eq!(
            message("ds2", &[("h1".into(), "no answer within 2 s".into())]),
            "Datastore ds2 is inaccessible on h1: no answer within 2 s"
        );
        assert_eq!(
            message(
                "ds2",
                &[
                    ("h1".into(), "stale file handle".into()),
                    ("h2".into(), "not mounted".into())
                ]
            ),
            "Datastore ds2 is inaccessible on 2 hosts: h1 (stale file handle); h2 (not mounted)"
        );
    }
}
