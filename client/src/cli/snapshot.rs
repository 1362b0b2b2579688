//! `strata vm snapshot …`, `strata vm clone`, `strata vm template`.

use anyhow::anyhow;
use clap::Subcommand;
use strata_shared::api::manager as m;
use strata_shared::model::*;

use super::{format, task_done, Ctx};

/// Snapshot subcommands.
#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Shows a VM's snapshot tree.
    List {
        /// VM (name or id).
        vm: String,
    },
    /// Takes a snapshot of a powered-off VM's disks.
    Create {
        /// VM.
        vm: String,
        /// Snapshot name.
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Returns a powered-off VM's disks to a snapshot (later changes are discarded).
    Revert {
        /// VM.
        vm: String,
        /// Snapshot (name or id).
        snapshot: String,
    },
    /// Deletes a snapshot, merging its data into what depends on it.
    Delete {
        /// VM.
        vm: String,
        /// Snapshot (name or id).
        snapshot: String,
    },
}

async fn tree(ctx: &Ctx, vm: &VmInfo) -> anyhow::Result<SnapshotTree> {
    ctx.call::<m::VmSnapshotList>(IdParams { id: vm.id }).await
}

/// Finds a snapshot of `vm` by name or id.
pub async fn snapshot_id(ctx: &Ctx, vm: &VmInfo, key: &str) -> anyhow::Result<uuid::Uuid> {
    tree(ctx, vm)
        .await?
        .find(key)
        .map(|s| s.id)
        .ok_or_else(|| anyhow!("VM {} has no snapshot {key:?}", vm.name))
}

/// Lines of the tree, children indented under their parent, the current one marked.
fn render(t: &SnapshotTree) -> String {
    fn walk(
        t: &SnapshotTree,
        parent: Option<uuid::Uuid>,
        depth: usize,
        out: &mut Vec<Vec<String>>,
    ) {
        for s in t.snapshots.iter().filter(|s| s.parent == parent) {
            let mark = if t.current == Some(s.id) {
                " (you are here)"
            } else {
                ""
            };
            out.push(vec![
                format!("{}{}{mark}", "  ".repeat(depth), s.name),
                format::time(s.created_ms),
                s.disks
                    .iter()
                    .map(|d| d.file.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                s.description.clone(),
            ]);
            walk(t, Some(s.id), depth + 1, out);
        }
    }
    if t.snapshots.is_empty() {
        return "no snapshots".into();
    }
    let mut rows = Vec::new();
    walk(t, None, 0, &mut rows);
    format::table(&["SNAPSHOT", "TAKEN", "FROZEN FILES", "DESCRIPTION"], &rows)
}

/// Runs one snapshot subcommand.
pub async fn run(ctx: &Ctx, cmd: SnapshotCmd) -> anyhow::Result<()> {
    match cmd {
        SnapshotCmd::List { vm } => {
            let vm = ctx.vm(&vm).await?;
            let t = tree(ctx, &vm).await?;
            ctx.print(&t, || render(&t))?;
        }
        SnapshotCmd::Create {
            vm,
            name,
            description,
        } => {
            let vm = ctx.vm(&vm).await?;
            let t = ctx
                .run_task::<m::VmSnapshotCreate>(m::SnapshotCreateParams {
                    id: vm.id,
                    name,
                    description,
                })
                .await?;
            ctx.print(&t, || task_done(&t))?;
        }
        SnapshotCmd::Revert { vm, snapshot } => {
            let vm = ctx.vm(&vm).await?;
            let snapshot = snapshot_id(ctx, &vm, &snapshot).await?;
            let t = ctx
                .run_task::<m::VmSnapshotRevert>(m::SnapshotParams {
                    id: vm.id,
                    snapshot,
                })
                .await?;
            ctx.print(&t, || task_done(&t))?;
        }
        SnapshotCmd::Delete { vm, snapshot } => {
            let vm = ctx.vm(&vm).await?;
            let snapshot = snapshot_id(ctx, &vm, &snapshot).await?;
            let t = ctx
                .run_task::<m::VmSnapshotDelete>(m::SnapshotParams {
                    id: vm.id,
                    snapshot,
                })
                .await?;
            ctx.print(&t, || task_done(&t))?;
        }
    }
    Ok(())
}

/// `strata vm clone`.
pub async fn clone(
    ctx: &Ctx,
    vm: &str,
    name: String,
    linked: bool,
    snapshot: Option<String>,
    hostname: Option<String>,
    template: bool,
) -> anyhow::Result<()> {
    let vm = ctx.vm(vm).await?;
    let snapshot = match snapshot {
        Some(s) => Some(snapshot_id(ctx, &vm, &s).await?),
        None => None,
    };
    let t = ctx
        .run_task::<m::VmClone>(m::VmCloneParams {
            id: vm.id,
            name,
            linked,
            snapshot,
            hostname,
            template,
        })
        .await?;
    ctx.print(&t, || task_done(&t))
}

/// `strata vm template`.
pub async fn set_template(ctx: &Ctx, vm: &str, template: bool) -> anyhow::Result<()> {
    let vm = ctx.vm(vm).await?;
    let v = ctx
        .call::<m::VmSetTemplate>(m::SetTemplateParams {
            id: vm.id,
            template,
        })
        .await?;
    ctx.print(&v, || {
        if v.spec.template {
            format!("{} is a template", v.name)
        } else {
            format!("{} is a VM", v.name)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_is_indented_and_marks_the_current_snapshot() {
        let a = uuid::Uuid::new_v4();
        let b = uuid::Uuid::new_v4();
        let snap = |id, name: &str, parent| SnapshotInfo {
            id,
            name: name.into(),
            description: String::new(),
            created_ms: 0,
            parent,
            disks: vec![],
            copies: false,
        };
        let t = SnapshotTree {
            snapshots: vec![snap(a, "base", None), snap(b, "patched", Some(a))],
            current: Some(b),
        };
        let text = render(&t);
        assert!(text.contains("\nbase "), "{text}");
        assert!(text.contains("\n  patched (you are here)"), "{text}");
        assert_eq!(render(&SnapshotTree::default()), "no snapshots");
    }
}
