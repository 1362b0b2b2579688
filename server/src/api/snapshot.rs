//! `vm.snapshot*`, `vm.clone`, `vm.setTemplate`: snapshot trees, clones and templates. The
//! file work happens on the VM's host agent; the manager records the resulting disks, the new
//! VM of a clone, and an Event for each change.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use strata_shared::api::agent as agent_api;
use strata_shared::api::{manager as m, Method};
use strata_shared::model::{
    IdParams, InventoryObject, ObjectKind, ObjectRef, PowerState, Severity, TaskInfo, VmInfo,
};
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::{handle, to_value};
use strata_shared::Client;
use uuid::Uuid;

use super::disk::{disk_task, vm_and_host, Change};
use super::host::agent_error;
use super::Session;
use crate::app::{vm_ref, App};
use crate::db::DbError;

/// Full clones of big disks take a while.
const CLONE_CALL_LIMIT: Duration = Duration::from_secs(3600);

/// Runs a (long) host call whose answer is not the VM, then reads the VM as the host has it
/// now (its disks changed).
async fn then_vm<M: Method>(c: Client, id: Uuid, p: M::Params) -> Result<VmInfo, RpcError> {
    c.call_timeout::<M>(p, CLONE_CALL_LIMIT)
        .await
        .map_err(agent_error)?;
    c.call::<agent_api::VmGet>(IdParams { id })
        .await
        .map_err(agent_error)
}

async fn snapshot_name(app: &App, vm: Uuid, snapshot: Uuid) -> String {
    let Ok((_, c)) = vm_and_host(app, vm).await else {
        return snapshot.to_string();
    };
    c.call::<agent_api::VmSnapshotList>(IdParams { id: vm })
        .await
        .ok()
        .and_then(|t| t.get(snapshot).map(|s| s.name.clone()))
        .unwrap_or_else(|| snapshot.to_string())
}

async fn clone(app: &Arc<App>, s: &Session, p: m::VmCloneParams) -> Result<TaskInfo, RpcError> {
    strata_shared::model::validate_name("VM", &p.name).map_err(RpcError::invalid)?;
    let (source, client) = vm_and_host(app, p.id).await?;
    if source.power_state.has_process() || source.power_state == PowerState::Suspended {
        return Err(RpcError::new(
            ErrorCode::InvalidState,
            format!(
                "VM {} is {}: power it off to clone it",
                source.name, source.power_state
            ),
        ));
    }
    let host = app
        .db
        .host(
            source
                .host
                .ok_or_else(|| RpcError::internal("VM has no host"))?,
        )
        .await?
        .info;
    if app.db.vm_name_taken(host.datacenter, &p.name).await? {
        return Err(RpcError::new(
            ErrorCode::Conflict,
            format!("a VM named {} already exists", p.name),
        ));
    }
    let id = Uuid::new_v4();
    let target = ObjectRef {
        kind: ObjectKind::Vm,
        id,
        name: p.name.clone(),
    };
    let app2 = app.clone();
    let user = s.username.clone();
    let kind = if p.linked { "linked" } else { "full" };
    app.tasks
        .start(
            app,
            &s.username,
            m::VmClone::NAME,
            format!("Clone {} to {} ({kind})", source.name, p.name),
            Some(target),
            move |task| async move {
                let app = app2;
                task.progress(10, "copying the disks on the host").await;
                let started = std::time::Instant::now();
                let mut vm = client
                    .call_timeout::<agent_api::VmClone>(
                        agent_api::AgentVmCloneParams {
                            clone: p.clone(),
                            new_id: Some(id),
                        },
                        CLONE_CALL_LIMIT,
                    )
                    .await
                    .map_err(agent_error)?;
                let took = started.elapsed();
                task.progress(90, "registering the VM").await;
                vm.host = source.host;
                vm.pool = source.pool;
                // The manager's copy of the source's allocation is the truth.
                vm.spec.allocation = source.spec.allocation;
                if let Err(e) = app.db.insert_vm(host.datacenter, &vm).await {
                    let _ = client
                        .call::<agent_api::VmDestroy>(IdParams { id: vm.id })
                        .await;
                    return Err(match e {
                        DbError::Duplicate => RpcError::new(
                            ErrorCode::Conflict,
                            format!("a VM named {} already exists", p.name),
                        ),
                        e => e.into(),
                    });
                }
                let msg = format!(
                    "VM {} cloned from {} ({kind} clone{}) in {:.1} s",
                    vm.name,
                    source.name,
                    if vm.spec.template { ", a template" } else { "" },
                    took.as_secs_f64()
                );
                app.event(
                    "vm.cloned",
                    Severity::Info,
                    Some(&vm_ref(&vm)),
                    Some(&user),
                    &msg,
                )
                .await;
                app.changed(InventoryObject::Vm(vm.clone()));
                to_value(&vm)
            },
        )
        .await
}

pub(super) async fn call(
    app: &Arc<App>,
    s: &Session,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    match method {
        m::VmSnapshotList::NAME => {
            handle::<m::VmSnapshotList, _, _>(params, |p| async move {
                let (_, c) = vm_and_host(app, p.id).await?;
                c.call::<agent_api::VmSnapshotList>(p)
                    .await
                    .map_err(agent_error)
            })
            .await
        }
        m::VmSnapshotCreate::NAME => {
            handle::<m::VmSnapshotCreate, _, _>(params, |p| async move {
                let text = format!("Take snapshot {:?}", p.name);
                disk_task(
                    app,
                    s,
                    p.id,
                    Change {
                        operation: m::VmSnapshotCreate::NAME,
                        description: text,
                        event: "vm.snapshotTaken",
                        live_ok: false,
                    },
                    |c| then_vm::<agent_api::VmSnapshotCreate>(c, p.id, p),
                )
                .await
            })
            .await
        }
        m::VmSnapshotRevert::NAME => {
            handle::<m::VmSnapshotRevert, _, _>(params, |p| async move {
                let name = snapshot_name(app, p.id, p.snapshot).await;
                let text = format!("Revert to snapshot {name:?}");
                disk_task(
                    app,
                    s,
                    p.id,
                    Change {
                        operation: m::VmSnapshotRevert::NAME,
                        description: text,
                        event: "vm.snapshotReverted",
                        live_ok: false,
                    },
                    |c| async move {
                        c.call::<agent_api::VmSnapshotRevert>(p)
                            .await
                            .map_err(agent_error)
                    },
                )
                .await
            })
            .await
        }
        m::VmSnapshotDelete::NAME => {
            handle::<m::VmSnapshotDelete, _, _>(params, |p| async move {
                let name = snapshot_name(app, p.id, p.snapshot).await;
                let text = format!("Delete snapshot {name:?}");
                disk_task(
                    app,
                    s,
                    p.id,
                    Change {
                        operation: m::VmSnapshotDelete::NAME,
                        description: text,
                        event: "vm.snapshotDeleted",
                        live_ok: false,
                    },
                    |c| then_vm::<agent_api::VmSnapshotDelete>(c, p.id, p),
                )
                .await
            })
            .await
        }
        m::VmClone::NAME => handle::<m::VmClone, _, _>(params, |p| clone(app, s, p)).await,
        m::VmSetTemplate::NAME => {
            handle::<m::VmSetTemplate, _, _>(params, |p| async move {
                let (vm, c) = vm_and_host(app, p.id).await?;
                c.call::<agent_api::VmSetTemplate>(p.clone())
                    .await
                    .map_err(agent_error)?;
                app.db
                    .update_vm_spec(p.id, |spec| spec.template = p.template)
                    .await?;
                let now = app.db.vm(p.id).await?;
                let what = if p.template {
                    format!("VM {} marked as a template", vm.name)
                } else {
                    format!("template {} marked as a VM", vm.name)
                };
                app.event(
                    "vm.templateChanged",
                    Severity::Info,
                    Some(&vm_ref(&now)),
                    Some(&s.username),
                    &what,
                )
                .await;
                app.changed(InventoryObject::Vm(now.clone()));
                Ok(now)
            })
            .await
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("no method {other:?}"),
        )),
    }
}
