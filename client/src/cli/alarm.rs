//! `strata alarm …`: what is wrong right now, and acknowledging it.

use anyhow::anyhow;
use clap::Subcommand;
use strata_shared::api::manager as m;
use strata_shared::model::*;
use uuid::Uuid;

use super::{format, Ctx};

/// Alarm subcommands.
#[derive(Subcommand, Debug)]
pub enum AlarmCmd {
    /// Lists the active alarms, most severe then newest first.
    #[command(visible_alias = "list")]
    Ls {
        /// Only alarms about this host, datastore or VM (id or name).
        #[arg(long)]
        target: Option<String>,
    },
    /// Acknowledges an alarm: it stays active, marked with your user (operator role).
    #[command(visible_alias = "acknowledge")]
    Ack {
        /// Alarm id (from `strata alarm ls`).
        id: Uuid,
    },
}

/// The object in words: "VM web01", "host h1", "datastore ds2".
fn object(r: &ObjectRef) -> String {
    match r.kind {
        ObjectKind::Vm => format!("VM {}", r.name),
        other => format!("{} {}", other.as_str(), r.name),
    }
}

/// The alarms as a table.
pub fn rows(alarms: &[AlarmInfo]) -> String {
    if alarms.is_empty() {
        return "No active alarms.".into();
    }
    let rows: Vec<Vec<String>> = alarms
        .iter()
        .map(|a| {
            vec![
                a.severity.to_string(),
                a.kind.label().to_string(),
                object(&a.target),
                a.message.clone(),
                format::time(a.triggered_ms),
                a.acknowledged_by.clone().unwrap_or_default(),
                a.id.to_string(),
            ]
        })
        .collect();
    format::table(
        &[
            "SEVERITY",
            "KIND",
            "OBJECT",
            "MESSAGE",
            "SINCE",
            "ACKNOWLEDGED BY",
            "ID",
        ],
        &rows,
    )
}

/// A host, datastore or VM id from an id or a name.
async fn target_id(ctx: &Ctx, s: &str) -> anyhow::Result<Uuid> {
    if let Ok(id) = s.parse() {
        return Ok(id);
    }
    let inv = ctx.call::<m::InventoryGet>(Empty {}).await?;
    inv.vms
        .iter()
        .find(|v| v.name == s)
        .map(|v| v.id)
        .or_else(|| {
            inv.hosts
                .iter()
                .find(|h| h.name == s || h.address == s)
                .map(|h| h.id)
        })
        .or_else(|| inv.datastores.iter().find(|d| d.name == s).map(|d| d.id))
        .ok_or_else(|| anyhow!("no host, datastore or VM named {s:?}"))
}

/// Runs one alarm subcommand.
pub async fn run(ctx: &Ctx, cmd: AlarmCmd) -> anyhow::Result<()> {
    match cmd {
        AlarmCmd::Ls { target } => {
            let target = match target {
                Some(t) => Some(target_id(ctx, &t).await?),
                None => None,
            };
            let alarms = ctx.call::<m::AlarmList>(AlarmListParams { target }).await?;
            ctx.print(&alarms, || rows(&alarms))?;
        }
        AlarmCmd::Ack { id } => {
            let a = ctx.call::<m::AlarmAcknowledge>(IdParams { id }).await?;
            ctx.print(&a, || {
                format!(
                    "acknowledged: {} {} alarm on {} ({})",
                    a.severity,
                    a.kind.label(),
                    object(&a.target),
                    a.message
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_what_is_wrong_since_when_and_who_acknowledged_it() {
        assert_eq!(rows(&[]), "No active alarms.");
        let a = AlarmInfo {
            id: Uuid::nil(),
            kind: AlarmKind::HostConnection,
            target: ObjectRef {
                kind: ObjectKind::Host,
                id: Uuid::nil(),
                name: "h1".into(),
            },
            severity: AlarmSeverity::Critical,
            message: "Host h1 is not responding: connection refused".into(),
            triggered_ms: 0,
            acknowledged_by: Some("op".into()),
            acknowledged_ms: Some(1),
        };
        let t = rows(&[a]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("SEVERITY  KIND"), "{t}");
        assert!(lines[0].contains("ACKNOWLEDGED BY"), "{t}");
        for want in [
            "critical",
            "Host connection",
            "host h1",
            "connection refused",
            "1970-01-01 00:00:00",
            "op",
        ] {
            assert!(lines[1].contains(want), "{want} missing: {t}");
        }
    }
}
