//! `vm.*`: every operation goes through the VM's host agent; power operations are tasks.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use strata_shared::api::agent::{self as agent_api, AgentVmCreateParams};
use strata_shared::api::{manager as m, Method};
use strata_shared::model::{
    ConnectionState, IdParams, InventoryObject, ObjectKind, PowerState, Severity, TaskInfo, VmInfo,
};
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::{handle, to_value};
use strata_shared::Client;
use tracing::warn;
use uuid::Uuid;

use super::host::agent_error;
use super::Session;
use crate::app::{vm_ref, App};
use crate::db::DbError;

async fn get_vm(app: &App, id: Uuid) -> Result<VmInfo, RpcError> {
    app.db.vm(id).await.map_err(|e| e.or_not_found("VM", id))
}

async fn host_client(app: &App, host: Option<Uuid>) -> Result<Client, RpcError> {
    let host = host.ok_or_else(|| RpcError::internal("VM has no host"))?;
    let row = app.db.host(host).await?;
    app.hosts.client(host, &row.info.name)
}

async fn create(app: &Arc<App>, s: &Session, p: m::VmCreateParams) -> Result<TaskInfo, RpcError> {
    strata_shared::model::validate_name("VM", &p.name).map_err(RpcError::invalid)?;
    p.spec.validate().map_err(RpcError::invalid)?;
    let host = match app.db.host(p.host).await {
        Ok(h) => h.info,
        Err(DbError::NotFound) => return Err(RpcError::not_found("host", p.host)),
        Err(e) => return Err(e.into()),
    };
    if host.connection_state != ConnectionState::Connected {
        return Err(RpcError::new(
            ErrorCode::Unavailable,
            format!("host {} is not connected", host.name),
        ));
    }
    if app.db.vm_name_taken(host.datacenter, &p.name).await? {
        return Err(RpcError::new(
            ErrorCode::Conflict,
            format!("a VM named {} already exists", p.name),
        ));
    }
    let app2 = app.clone();
    let user = s.username.clone();
    let id = Uuid::new_v4();
    let target = strata_shared::model::ObjectRef {
        kind: ObjectKind::Vm,
        id,
        name: p.name.clone(),
    };
    app.tasks
        .start(
            app,
            &s.username,
            m::VmCreate::NAME,
            format!("Create VM {} on {}", p.name, host.name),
            Some(target),
            move |task| async move {
                let app = app2;
                let client = app.hosts.client(host.id, &host.name)?;
                task.progress(20, "creating the VM's files on the host")
                    .await;
                let params = AgentVmCreateParams {
                    id: Some(id),
                    name: p.name.clone(),
                    datastore: p.datastore.clone(),
                    spec: p.spec.clone(),
                };
                let mut vm = client
                    .call::<agent_api::VmCreate>(params)
                    .await
                    .map_err(agent_error)?;
                vm.host = Some(host.id);
                task.progress(80, "registering the VM").await;
                if let Err(e) = app.db.insert_vm(host.datacenter, &vm).await {
                    // Leave nothing behind: the files go again when the inventory refuses the VM.
                    let _ = client.call::<agent_api::VmDestroy>(IdParams { id }).await;
                    return Err(match e {
                        DbError::Duplicate => RpcError::new(
                            ErrorCode::Conflict,
                            format!("a VM named {} already exists", p.name),
                        ),
                        e => e.into(),
                    });
                }
                let msg = format!(
                    "VM {} created on {} ({} vCPU, {} MiB)",
                    vm.name, host.name, vm.spec.vcpus, vm.spec.memory_mib
                );
                app.event(
                    "vm.created",
                    Severity::Info,
                    Some(&vm_ref(&vm)),
                    Some(&user),
                    &msg,
                )
                .await;
                app.changed(InventoryObject::Vm(vm.clone()));
                crate::pools::enforce::push_host(&app, host.id).await;
                to_value(&vm)
            },
        )
        .await
}

/// What a reconfiguration changes, in words ("renamed to db01; 2 vCPUs (was 1)").
fn reconfigure_text(vm: &VmInfo, name: &str, spec: &strata_shared::model::VmSpec) -> String {
    let mut parts = Vec::new();
    if name != vm.name {
        parts.push(format!("renamed to {name}"));
    }
    if spec.vcpus != vm.spec.vcpus {
        parts.push(format!("{} vCPUs (was {})", spec.vcpus, vm.spec.vcpus));
    }
    if spec.memory_mib != vm.spec.memory_mib {
        parts.push(format!(
            "{} MiB memory (was {} MiB)",
            spec.memory_mib, vm.spec.memory_mib
        ));
    }
    if spec.boot.cmdline != vm.spec.boot.cmdline {
        parts.push(if spec.boot.cmdline.is_empty() {
            "kernel command line cleared".to_string()
        } else {
            format!("kernel command line {:?}", spec.boot.cmdline)
        });
    }
    if parts.is_empty() {
        "nothing changed".into()
    } else {
        parts.join("; ")
    }
}

/// `vm.reconfigure`: checks everything at once (values, power state, name unique in the
/// datacenter), then changes the VM on its host and records what the host reports.
async fn reconfigure(
    app: &Arc<App>,
    s: &Session,
    p: m::VmReconfigureParams,
) -> Result<TaskInfo, RpcError> {
    let vm = get_vm(app, p.id).await?;
    if p.changes_hardware(&vm.spec)
        && (vm.power_state.has_process() || vm.power_state == PowerState::Suspended)
    {
        return Err(RpcError::new(
            ErrorCode::InvalidState,
            format!(
                "VM {} is {}: power it off to change its vCPUs or memory",
                vm.name, vm.power_state
            ),
        ));
    }
    let mut spec = vm.spec.clone();
    p.apply(&mut spec).map_err(RpcError::invalid)?;
    let host = vm
        .host
        .ok_or_else(|| RpcError::internal("VM has no host"))?;
    let host_row = app.db.host(host).await?;
    let name = p.name.clone().unwrap_or_else(|| vm.name.clone());
    if name != vm.name
        && app
            .db
            .vm_name_taken(host_row.info.datacenter, &name)
            .await?
    {
        return Err(RpcError::new(
            ErrorCode::Conflict,
            format!("a VM named {name} already exists"),
        ));
    }
    let client = app.hosts.client(host, &host_row.info.name)?;
    let description = if name != vm.name && !p.changes_hardware(&vm.spec) && p.cmdline.is_none() {
        format!("Rename VM {} to {name}", vm.name)
    } else {
        format!("Reconfigure VM {}", vm.name)
    };
    let app2 = app.clone();
    let user = s.username.clone();
    app.tasks
        .start(
            app,
            &s.username,
            m::VmReconfigure::NAME,
            description,
            Some(vm_ref(&vm)),
            move |task| async move {
                let app = app2;
                task.progress(20, "changing the VM's configuration on the host")
                    .await;
                let reported = client
                    .call::<agent_api::VmReconfigure>(p.clone())
                    .await
                    .map_err(agent_error)?;
                task.progress(80, "recording the new configuration").await;
                let new = reported.spec.clone();
                let stored = app
                    .db
                    .reconfigure_vm(vm.id, &name, |s| {
                        s.vcpus = new.vcpus;
                        s.memory_mib = new.memory_mib;
                        s.boot.cmdline.clone_from(&new.boot.cmdline);
                    })
                    .await;
                if let Err(e) = stored {
                    // Put the host back as it was, so host and inventory agree.
                    let undo = m::VmReconfigureParams {
                        id: vm.id,
                        name: p.name.as_ref().map(|_| vm.name.clone()),
                        vcpus: p.vcpus.map(|_| vm.spec.vcpus),
                        memory_mib: p.memory_mib.map(|_| vm.spec.memory_mib),
                        cmdline: p.cmdline.as_ref().map(|_| vm.spec.boot.cmdline.clone()),
                    };
                    if let Err(u) = client.call::<agent_api::VmReconfigure>(undo).await {
                        warn!(vm = %vm.id, error = %u, "cannot undo a reconfiguration on the host");
                    }
                    return Err(match e {
                        DbError::Duplicate => RpcError::new(
                            ErrorCode::Conflict,
                            format!("a VM named {name} already exists"),
                        ),
                        e => e.into(),
                    });
                }
                let now = get_vm(&app, vm.id).await?;
                let what = reconfigure_text(&vm, &now.name, &now.spec);
                app.event(
                    "vm.reconfigured",
                    Severity::Info,
                    Some(&vm_ref(&now)),
                    Some(&user),
                    &format!("VM {} reconfigured: {what}", vm.name),
                )
                .await;
                app.changed(InventoryObject::Vm(now.clone()));
                if now.name != vm.name {
                    crate::alarms::object_renamed(&app, vm.id, &now.name).await;
                }
                // Shares follow vCPUs and memory.
                if now.spec.vcpus != vm.spec.vcpus || now.spec.memory_mib != vm.spec.memory_mib {
                    crate::pools::enforce::push_host(&app, host).await;
                }
                to_value(&now)
            },
        )
        .await
}

/// Starts a power task: checks the VM and the host at once, then runs `op` on the agent,
/// which returns the VM's new state and, when it has one, the host's account of what happened.
async fn power_task<F, Fut>(
    app: &Arc<App>,
    s: &Session,
    id: Uuid,
    operation: &str,
    verb: &str,
    op: F,
) -> Result<TaskInfo, RpcError>
where
    F: FnOnce(Client, VmInfo) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(VmInfo, Option<String>), RpcError>> + Send + 'static,
{
    let vm = get_vm(app, id).await?;
    let client = host_client(app, vm.host).await?;
    let app2 = app.clone();
    let user = s.username.clone();
    let verb2 = verb.to_string();
    app.tasks
        .start(
            app,
            &s.username,
            operation,
            format!("{verb} {}", vm.name),
            Some(vm_ref(&vm)),
            move |task| async move {
                task.progress(10, &verb2).await;
                app2.vm_ops.begin(id);
                let outcome = op(client.clone(), vm.clone()).await;
                let applied = match outcome {
                    Ok((reported, how)) => {
                        // The user is the event's own field; the message says only what happened.
                        let reason = how.unwrap_or_default();
                        app2.apply_power_state(id, reported.power_state, &reason, Some(&user))
                            .await
                    }
                    Err(e) => Err(e),
                };
                app2.admission.done(id);
                app2.vm_ops.end(id);
                // A change the host reported while we were busy (say, a crash right after
                // power-on) was not recorded: read the state once more.
                if let Ok(now) = client.call::<agent_api::VmGet>(IdParams { id }).await {
                    let _ = app2
                        .apply_power_state(
                            id,
                            now.power_state,
                            "state re-synced from the host",
                            None,
                        )
                        .await;
                }
                applied?;
                to_value(&get_vm(&app2, id).await?)
            },
        )
        .await
}

/// Admission control for a power-on: the VM's reservation must fit its pool tree. On success
/// the VM counts as powered on until its task ends.
async fn admit_power_on(app: &Arc<App>, id: Uuid) -> Result<(), RpcError> {
    let vm = get_vm(app, id).await?;
    if vm.power_state.has_process() {
        return Ok(());
    }
    let host = vm
        .host
        .ok_or_else(|| RpcError::internal("VM has no host"))?;
    let owner = crate::pools::owner_of_host(app, host).await?;
    let _guard = app.admission.lock.lock().await;
    let mut tree = crate::pools::tree(app, owner).await?;
    if let Some(n) = tree.nodes.iter_mut().find(|n| n.id == id) {
        n.kind = crate::pools::admission::NodeKind::Vm { powered_on: true };
    }
    crate::pools::admit(&tree)?;
    app.admission.pending(id);
    Ok(())
}

pub(super) async fn call(
    app: &Arc<App>,
    s: &Session,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    match method {
        m::VmCreate::NAME => handle::<m::VmCreate, _, _>(params, |p| create(app, s, p)).await,
        m::VmReconfigure::NAME => {
            handle::<m::VmReconfigure, _, _>(params, |p| reconfigure(app, s, p)).await
        }
        m::VmList::NAME => {
            handle::<m::VmList, _, _>(params, |p| async move { Ok(app.db.vms(p.host).await?) })
                .await
        }
        m::VmGet::NAME => {
            handle::<m::VmGet, _, _>(params, |p| async move { get_vm(app, p.id).await }).await
        }
        m::VmPowerOn::NAME => {
            handle::<m::VmPowerOn, _, _>(params, |p| async move {
                admit_power_on(app, p.id).await?;
                power_task(
                    app,
                    s,
                    p.id,
                    m::VmPowerOn::NAME,
                    "Power on",
                    move |c, vm| async move {
                        c.call::<agent_api::VmPowerOn>(IdParams { id: vm.id })
                            .await
                            .map(|v| (v, None))
                            .map_err(agent_error)
                    },
                )
                .await
                .inspect_err(|_| app.admission.done(p.id))
            })
            .await
        }
        m::VmPowerOff::NAME => {
            handle::<m::VmPowerOff, _, _>(params, |p| {
                let verb = if p.hard {
                    "Power off (hard)"
                } else {
                    "Shut down and power off"
                };
                let limit = Duration::from_secs(u64::from(p.timeout_secs.unwrap_or(60)) + 60);
                power_task(
                    app,
                    s,
                    p.id,
                    m::VmPowerOff::NAME,
                    verb,
                    move |c, _vm| async move {
                        let r = c
                            .call_timeout::<agent_api::VmPowerOff>(p, limit)
                            .await
                            .map_err(agent_error)?;
                        Ok((r.vm, Some(r.reason)))
                    },
                )
            })
            .await
        }
        m::VmReset::NAME => {
            handle::<m::VmReset, _, _>(params, |p| {
                power_task(
                    app,
                    s,
                    p.id,
                    m::VmReset::NAME,
                    "Reset",
                    move |c, vm| async move {
                        c.call::<agent_api::VmReset>(IdParams { id: vm.id })
                            .await
                            .map(|v| (v, None))
                            .map_err(agent_error)
                    },
                )
            })
            .await
        }
        m::VmSuspend::NAME => {
            handle::<m::VmSuspend, _, _>(params, |p| {
                power_task(
                    app,
                    s,
                    p.id,
                    m::VmSuspend::NAME,
                    "Suspend",
                    move |c, vm| async move {
                        // Saving memory takes a while on a big VM: give it the QEMU engine's
                        // own limit and some.
                        c.call_timeout::<agent_api::VmSuspend>(
                            IdParams { id: vm.id },
                            Duration::from_secs(180),
                        )
                        .await
                        .map(|v| (v, Some("state saved on the host".to_string())))
                        .map_err(agent_error)
                    },
                )
            })
            .await
        }
        m::VmPause::NAME | m::VmUnpause::NAME => {
            let pause = method == m::VmPause::NAME;
            handle::<m::VmPause, _, _>(params, |p| {
                let (operation, verb) = if pause {
                    (m::VmPause::NAME, "Pause")
                } else {
                    (m::VmUnpause::NAME, "Unpause")
                };
                power_task(app, s, p.id, operation, verb, move |c, vm| async move {
                    let id = IdParams { id: vm.id };
                    let r = if pause {
                        c.call::<agent_api::VmPause>(id).await
                    } else {
                        c.call::<agent_api::VmUnpause>(id).await
                    };
                    r.map(|v| (v, None)).map_err(agent_error)
                })
            })
            .await
        }
        m::VmDestroy::NAME => {
            handle::<m::VmDestroy, _, _>(params, |p| async move {
                let vm = get_vm(app, p.id).await?;
                if vm.power_state.has_process() || vm.power_state == PowerState::Suspended {
                    return Err(RpcError::new(
                        ErrorCode::InvalidState,
                        format!("VM {} must be powered off first", vm.name),
                    ));
                }
                let client = host_client(app, vm.host).await?;
                let app2 = app.clone();
                let user = s.username.clone();
                app.tasks
                    .start(
                        app,
                        &s.username,
                        m::VmDestroy::NAME,
                        format!("Destroy {}", vm.name),
                        Some(vm_ref(&vm)),
                        move |task| async move {
                            task.progress(20, "deleting the VM's files").await;
                            match client
                                .call::<agent_api::VmDestroy>(IdParams { id: vm.id })
                                .await
                            {
                                Ok(_) => {}
                                Err(e) if e.code() == Some(ErrorCode::NotFound) => {}
                                Err(e) => return Err(agent_error(e)),
                            }
                            app2.db.delete_vm(vm.id).await?;
                            crate::alarms::object_removed(
                                &app2,
                                vm.id,
                                &format!("VM {} was destroyed", vm.name),
                            )
                            .await;
                            app2.event(
                                "vm.destroyed",
                                Severity::Info,
                                Some(&vm_ref(&vm)),
                                Some(&user),
                                &format!("VM {} destroyed", vm.name),
                            )
                            .await;
                            app2.removed(ObjectKind::Vm, vm.id);
                            Ok(Value::Null)
                        },
                    )
                    .await
            })
            .await
        }
        m::VmConsoleTicket::NAME => {
            handle::<m::VmConsoleTicket, _, _>(params, |p| async move {
                let vm = get_vm(app, p.id).await?;
                let host = vm
                    .host
                    .ok_or_else(|| RpcError::internal("VM has no host"))?;
                let row = app.db.host(host).await?;
                let c = app.hosts.client(host, &row.info.name)?;
                let mut ticket = c
                    .call::<agent_api::VmConsoleTicket>(agent_api::ConsoleTicketParams {
                        id: vm.id,
                        user: Some(s.username.clone()),
                    })
                    .await
                    .map_err(agent_error)?;
                // The client reaches the host where the manager does.
                crate::console::readdress(&mut ticket, &row.info.address);
                app.event(
                    "vm.console.ticket",
                    Severity::Info,
                    Some(&vm_ref(&vm)),
                    Some(&s.username),
                    &format!("Console ticket issued for {} to {}", vm.name, s.username),
                )
                .await;
                Ok(ticket)
            })
            .await
        }
        m::VmConsoleRead::NAME => {
            handle::<m::VmConsoleRead, _, _>(params, |p| async move {
                let vm = get_vm(app, p.id).await?;
                let c = host_client(app, vm.host).await?;
                c.call::<agent_api::VmConsoleRead>(p)
                    .await
                    .map_err(agent_error)
            })
            .await
        }
        m::VmConsoleSend::NAME => {
            handle::<m::VmConsoleSend, _, _>(params, |p| async move {
                let vm = get_vm(app, p.id).await?;
                let c = host_client(app, vm.host).await?;
                c.call::<agent_api::VmConsoleSend>(p)
                    .await
                    .map_err(agent_error)
            })
            .await
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("no method {other:?}"),
        )),
    }
}
