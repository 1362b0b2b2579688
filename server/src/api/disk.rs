//! `vm.disk*`: a VM's virtual disks. Changes run as tasks on the VM's host agent; the
//! manager then records the disk list the host reports (and only that: the host's copy of the
//! rest of the spec, such as the allocation, is not the manager's truth).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use strata_shared::api::agent as agent_api;
use strata_shared::api::{manager as m, Method};
use strata_shared::model::{IdParams, InventoryObject, PowerState, Severity, TaskInfo, VmInfo};
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::{handle, to_value};
use strata_shared::Client;
use uuid::Uuid;

use super::host::agent_error;
use super::Session;
use crate::app::{vm_ref, App};

/// Thick disks of many GiB take a while to allocate.
const DISK_CALL_LIMIT: Duration = Duration::from_secs(3600);

pub(super) async fn vm_and_host(app: &App, id: Uuid) -> Result<(VmInfo, Client), RpcError> {
    let vm = app.db.vm(id).await.map_err(|e| e.or_not_found("VM", id))?;
    let host = vm
        .host
        .ok_or_else(|| RpcError::internal("VM has no host"))?;
    let row = app.db.host(host).await?;
    let client = app.hosts.client(host, &row.info.name)?;
    Ok((vm, client))
}

/// What a disk task is.
pub(super) struct Change {
    /// The method.
    pub operation: &'static str,
    /// The task's description and the event's message.
    pub description: String,
    /// The event kind recorded on success.
    pub event: &'static str,
    /// Allowed while the VM runs (the host decides whether it can).
    pub live_ok: bool,
}

/// Runs one change to a VM's disk files (disks, snapshots) as a task: refuses a powered-on VM at once, then calls the host and
/// records the disks it reports.
pub(super) async fn disk_task<F, Fut>(
    app: &Arc<App>,
    s: &Session,
    id: Uuid,
    change: Change,
    op: F,
) -> Result<TaskInfo, RpcError>
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<VmInfo, RpcError>> + Send + 'static,
{
    let (vm, client) = vm_and_host(app, id).await?;
    let running = vm.power_state.has_process() && !change.live_ok;
    if running || vm.power_state == PowerState::Suspended {
        return Err(RpcError::new(
            ErrorCode::InvalidState,
            format!("VM {} is {}: power it off first", vm.name, vm.power_state),
        ));
    }
    let app2 = app.clone();
    let user = s.username.clone();
    let what = change.description.clone();
    let event = change.event;
    app.tasks
        .start(
            app,
            &s.username,
            change.operation,
            change.description,
            Some(vm_ref(&vm)),
            move |task| async move {
                task.progress(10, "working on the host").await;
                let reported = op(client).await?;
                task.progress(90, "recording the VM's disks").await;
                app2.db
                    .update_vm_spec(id, |spec| spec.disks = reported.spec.disks.clone())
                    .await?;
                let now = app2.db.vm(id).await?;
                app2.event(
                    event,
                    Severity::Info,
                    Some(&vm_ref(&now)),
                    Some(&user),
                    &what,
                )
                .await;
                app2.changed(InventoryObject::Vm(now.clone()));
                to_value(&now)
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
        m::VmDiskList::NAME => {
            handle::<m::VmDiskList, _, _>(params, |p| async move {
                let (_, client) = vm_and_host(app, p.id).await?;
                client
                    .call::<agent_api::VmDiskList>(IdParams { id: p.id })
                    .await
                    .map_err(agent_error)
            })
            .await
        }
        m::VmDiskCreate::NAME => {
            handle::<m::VmDiskCreate, _, _>(params, |p| async move {
                let vm = app
                    .db
                    .vm(p.id)
                    .await
                    .map_err(|e| e.or_not_found("VM", p.id))?;
                let text = format!(
                    "Add a {} MiB {} {} disk to {}",
                    p.size_mib,
                    match p.provisioning {
                        strata_shared::model::Provisioning::Thin => "thin",
                        strata_shared::model::Provisioning::Thick => "thick",
                    },
                    p.format,
                    vm.name
                );
                disk_task(
                    app,
                    s,
                    p.id,
                    Change {
                        operation: m::VmDiskCreate::NAME,
                        description: text,
                        event: "vm.diskAdded",
                        live_ok: true,
                    },
                    |c| async move {
                        c.call_timeout::<agent_api::VmDiskCreate>(p, DISK_CALL_LIMIT)
                            .await
                            .map_err(agent_error)
                    },
                )
                .await
            })
            .await
        }
        m::VmDiskGrow::NAME => {
            handle::<m::VmDiskGrow, _, _>(params, |p| async move {
                let text = format!("Grow disk {} to {} MiB", p.file, p.size_mib);
                disk_task(
                    app,
                    s,
                    p.id,
                    Change {
                        operation: m::VmDiskGrow::NAME,
                        description: text,
                        event: "vm.diskGrown",
                        live_ok: false,
                    },
                    |c| async move {
                        c.call_timeout::<agent_api::VmDiskGrow>(p, DISK_CALL_LIMIT)
                            .await
                            .map_err(agent_error)
                    },
                )
                .await
            })
            .await
        }
        m::VmDiskAttach::NAME => {
            handle::<m::VmDiskAttach, _, _>(params, |p| async move {
                let text = format!("Attach disk {}", p.disk.file);
                disk_task(
                    app,
                    s,
                    p.id,
                    Change {
                        operation: m::VmDiskAttach::NAME,
                        description: text,
                        event: "vm.diskAttached",
                        live_ok: true,
                    },
                    |c| async move {
                        c.call::<agent_api::VmDiskAttach>(p)
                            .await
                            .map_err(agent_error)
                    },
                )
                .await
            })
            .await
        }
        m::VmDiskRemove::NAME => {
            handle::<m::VmDiskRemove, _, _>(params, |p| async move {
                let text = if p.delete_file {
                    format!("Remove and delete disk {}", p.file)
                } else {
                    format!("Detach disk {}", p.file)
                };
                disk_task(
                    app,
                    s,
                    p.id,
                    Change {
                        operation: m::VmDiskRemove::NAME,
                        description: text,
                        event: "vm.diskRemoved",
                        live_ok: false,
                    },
                    |c| async move {
                        c.call::<agent_api::VmDiskRemove>(p)
                            .await
                            .map_err(agent_error)
                    },
                )
                .await
            })
            .await
        }
        m::VmDiskMapDevice::NAME => {
            handle::<m::VmDiskMapDevice, _, _>(params, |p| async move {
                let text = format!("Map host device {}", p.device);
                disk_task(
                    app,
                    s,
                    p.id,
                    Change {
                        operation: m::VmDiskMapDevice::NAME,
                        description: text,
                        event: "vm.deviceMapped",
                        live_ok: false,
                    },
                    |c| async move {
                        c.call::<agent_api::VmDiskMapDevice>(p)
                            .await
                            .map_err(agent_error)
                    },
                )
                .await
            })
            .await
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("no method {other:?}"),
        )),
    }
}
