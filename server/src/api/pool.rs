//! `pool.*`, `vm.setAllocation`, `vm.move`: resource pools with admission control.

use std::sync::Arc;

use serde_json::Value;
use strata_shared::api::manager as m;
use strata_shared::api::Method;
use strata_shared::model::{
    Empty, InventoryObject, ObjectKind, ObjectRef, PoolCreateParams, PoolInfo, Severity, VmInfo,
};
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::handle;
use uuid::Uuid;

use super::Session;
use crate::app::{vm_ref, App};
use crate::db::DbError;
use crate::pools::{self, admission::NodeKind};

fn pool_ref(p: &PoolInfo) -> ObjectRef {
    ObjectRef {
        kind: ObjectKind::Pool,
        id: p.id,
        name: p.name.clone(),
    }
}

fn duplicate(name: &str) -> impl FnOnce(DbError) -> RpcError + '_ {
    move |e| match e {
        DbError::Duplicate => RpcError::new(
            ErrorCode::Conflict,
            format!("a sibling named {name} already exists"),
        ),
        e => e.into(),
    }
}

/// Records a pool event and pushes the pool to subscribers.
async fn announce(app: &App, s: &Session, kind: &str, pool: &PoolInfo, message: &str) {
    app.event(
        kind,
        Severity::Info,
        Some(&pool_ref(pool)),
        Some(&s.username),
        message,
    )
    .await;
    app.changed(InventoryObject::Pool(pool.clone()));
}

async fn get_pool(app: &App, id: Uuid) -> Result<PoolInfo, RpcError> {
    app.db
        .pool(id)
        .await
        .map_err(|e| e.or_not_found("resource pool", id))
}

fn describe(a: &strata_shared::model::ResourceAllocation) -> String {
    let one = |x: &strata_shared::model::Allocation, unit: &str| {
        let limit = x
            .limit
            .map(|l| format!("{l} {unit}"))
            .unwrap_or_else(|| "unlimited".into());
        format!(
            "reservation {} {unit}, limit {limit}, shares {:?}",
            x.reservation, x.shares.level
        )
    };
    format!(
        "CPU {}; memory {}",
        one(&a.cpu, "MHz"),
        one(&a.memory, "MiB")
    )
}

async fn create(app: &Arc<App>, s: &Session, p: PoolCreateParams) -> Result<PoolInfo, RpcError> {
    strata_shared::model::validate_name("resource pool", &p.name).map_err(RpcError::invalid)?;
    p.allocation.validate().map_err(RpcError::invalid)?;
    let owner = match (p.parent, p.owner) {
        (Some(parent), _) => get_pool(app, parent).await?.owner,
        (None, Some(owner)) => owner,
        (None, None) => {
            return Err(RpcError::invalid(
                "name the parent pool or the standalone host or cluster (owner)",
            ))
        }
    };
    let _guard = app.admission.lock.lock().await;
    let mut tree = pools::tree(app, owner).await?;
    let pool = PoolInfo {
        id: Uuid::new_v4(),
        name: p.name,
        owner,
        parent: p.parent,
        allocation: p.allocation,
    };
    tree.nodes.push(pools::admission::Node {
        id: pool.id,
        name: pool.name.clone(),
        parent: pool.parent,
        kind: NodeKind::Pool,
        allocation: pool.allocation,
    });
    pools::admit(&tree)?;
    app.db
        .insert_pool(&pool)
        .await
        .map_err(duplicate(&pool.name))?;
    let msg = format!(
        "resource pool {} created in {} ({})",
        pool.name,
        tree.root_name,
        describe(&pool.allocation)
    );
    announce(app, s, "pool.created", &pool, &msg).await;
    Ok(pool)
}

async fn update(
    app: &Arc<App>,
    s: &Session,
    p: strata_shared::model::PoolUpdateParams,
) -> Result<PoolInfo, RpcError> {
    let mut pool = get_pool(app, p.id).await?;
    if let Some(name) = &p.name {
        strata_shared::model::validate_name("resource pool", name).map_err(RpcError::invalid)?;
        pool.name = name.clone();
    }
    if let Some(a) = p.allocation {
        a.validate().map_err(RpcError::invalid)?;
        pool.allocation = a;
    }
    let _guard = app.admission.lock.lock().await;
    let mut tree = pools::tree(app, pool.owner).await?;
    if let Some(n) = tree.nodes.iter_mut().find(|n| n.id == pool.id) {
        n.allocation = pool.allocation;
    }
    pools::admit(&tree)?;
    app.db
        .update_pool(&pool)
        .await
        .map_err(duplicate(&pool.name))?;
    let msg = format!(
        "resource pool {} changed: {}",
        pool.name,
        describe(&pool.allocation)
    );
    announce(app, s, "pool.updated", &pool, &msg).await;
    crate::pools::enforce::push_owner(app, pool.owner).await;
    Ok(pool)
}

async fn move_pool(
    app: &Arc<App>,
    s: &Session,
    id: Uuid,
    parent: Option<Uuid>,
) -> Result<PoolInfo, RpcError> {
    let mut pool = get_pool(app, id).await?;
    if let Some(np) = parent {
        if get_pool(app, np).await?.owner != pool.owner {
            return Err(RpcError::invalid(
                "a pool can only move within its own host's or cluster's tree",
            ));
        }
    }
    let _guard = app.admission.lock.lock().await;
    let mut tree = pools::tree(app, pool.owner).await?;
    if tree.would_cycle(id, parent) {
        return Err(RpcError::invalid(format!(
            "pool {} cannot move under itself or one of its own pools",
            pool.name
        )));
    }
    if let Some(n) = tree.nodes.iter_mut().find(|n| n.id == id) {
        n.parent = parent;
    }
    pools::admit(&tree)?;
    pool.parent = parent;
    app.db
        .update_pool(&pool)
        .await
        .map_err(duplicate(&pool.name))?;
    announce(
        app,
        s,
        "pool.moved",
        &pool,
        &format!("resource pool {} moved", pool.name),
    )
    .await;
    crate::pools::enforce::push_owner(app, pool.owner).await;
    Ok(pool)
}

async fn delete(
    app: &Arc<App>,
    s: &Session,
    id: Uuid,
    move_children: bool,
) -> Result<Empty, RpcError> {
    let pool = get_pool(app, id).await?;
    let _guard = app.admission.lock.lock().await;
    let mut tree = pools::tree(app, pool.owner).await?;
    let (vms, child_pools) =
        tree.nodes
            .iter()
            .filter(|n| n.parent == Some(id))
            .fold((0, 0), |(v, p), n| match n.kind {
                NodeKind::Vm { .. } => (v + 1, p),
                NodeKind::Pool => (v, p + 1),
            });
    if (vms > 0 || child_pools > 0) && !move_children {
        return Err(RpcError::new(
            ErrorCode::InvalidState,
            format!(
                "resource pool {} still holds {vms} VM(s) and {child_pools} pool(s); move them out or delete with moveChildrenToParent",
                pool.name
            ),
        ));
    }
    let moved: Vec<(Uuid, bool)> = tree
        .nodes
        .iter()
        .filter(|n| n.parent == Some(id))
        .map(|n| (n.id, matches!(n.kind, NodeKind::Pool)))
        .collect();
    for n in tree.nodes.iter_mut().filter(|n| n.parent == Some(id)) {
        n.parent = pool.parent;
    }
    tree.nodes.retain(|n| n.id != id);
    pools::admit(&tree)?;
    app.db.delete_pool(id, pool.parent).await?;
    let msg = format!(
        "resource pool {} deleted ({vms} VM(s), {child_pools} pool(s) moved to its parent)",
        pool.name
    );
    app.event(
        "pool.deleted",
        Severity::Info,
        Some(&pool_ref(&pool)),
        Some(&s.username),
        &msg,
    )
    .await;
    app.removed(ObjectKind::Pool, id);
    // Subscribers learn where exactly the moved children went, pools as well as VMs.
    for (child, is_pool) in moved {
        if is_pool {
            if let Ok(p) = get_pool(app, child).await {
                app.changed(InventoryObject::Pool(p));
            }
        } else if let Ok(vm) = app.db.vm(child).await {
            app.changed(InventoryObject::Vm(vm));
        }
    }
    crate::pools::enforce::push_owner(app, pool.owner).await;
    Ok(Empty {})
}

async fn vm_change(
    app: &Arc<App>,
    s: &Session,
    id: Uuid,
    allocation: Option<strata_shared::model::ResourceAllocation>,
    pool: Option<Option<Uuid>>,
) -> Result<VmInfo, RpcError> {
    let mut vm = app.db.vm(id).await.map_err(|e| e.or_not_found("VM", id))?;
    let host = vm
        .host
        .ok_or_else(|| RpcError::internal("VM has no host"))?;
    let owner = pools::owner_of_host(app, host).await?;
    if let Some(a) = &allocation {
        let mut spec = vm.spec.clone();
        spec.allocation = *a;
        spec.validate().map_err(RpcError::invalid)?;
    }
    if let Some(Some(p)) = pool {
        if get_pool(app, p).await?.owner != owner {
            return Err(RpcError::invalid(
                "the pool belongs to another host's or cluster's tree",
            ));
        }
    }
    let _guard = app.admission.lock.lock().await;
    let mut tree = pools::tree(app, owner).await?;
    if let Some(n) = tree.nodes.iter_mut().find(|n| n.id == id) {
        if let Some(a) = allocation {
            n.allocation = a;
        }
        if let Some(p) = pool {
            n.parent = p;
        }
    }
    pools::admit(&tree)?;
    let mut what = Vec::new();
    if let Some(a) = allocation {
        app.db.set_vm_allocation(id, &a).await?;
        what.push(describe(&a));
    }
    if let Some(p) = pool {
        app.db.set_vm_pool(id, p).await?;
        what.push(match p {
            Some(p) => format!("moved to pool {}", get_pool(app, p).await?.name),
            None => "moved to the root pool".into(),
        });
    }
    vm = app.db.vm(id).await?;
    let live = if vm.power_state.has_process() {
        " (applied live)"
    } else {
        ""
    };
    let msg = format!("VM {}: {}{live}", vm.name, what.join("; "));
    app.event(
        "vm.reconfigured",
        Severity::Info,
        Some(&vm_ref(&vm)),
        Some(&s.username),
        &msg,
    )
    .await;
    app.changed(InventoryObject::Vm(vm.clone()));
    crate::pools::enforce::push_owner(app, owner).await;
    Ok(vm)
}

pub(super) async fn call(
    app: &Arc<App>,
    s: &Session,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    match method {
        m::PoolCreate::NAME => handle::<m::PoolCreate, _, _>(params, |p| create(app, s, p)).await,
        m::PoolUpdate::NAME => handle::<m::PoolUpdate, _, _>(params, |p| update(app, s, p)).await,
        m::PoolMove::NAME => {
            handle::<m::PoolMove, _, _>(params, |p| move_pool(app, s, p.id, p.parent)).await
        }
        m::PoolDelete::NAME => {
            handle::<m::PoolDelete, _, _>(params, |p| {
                delete(app, s, p.id, p.move_children_to_parent)
            })
            .await
        }
        m::PoolList::NAME => {
            handle::<m::PoolList, _, _>(params, |p| async move { Ok(app.db.pools(p.owner).await?) })
                .await
        }
        m::PoolUsageGet::NAME => {
            handle::<m::PoolUsageGet, _, _>(params, |p| async move {
                Ok(pools::tree(app, p.id).await?.usage())
            })
            .await
        }
        m::VmSetAllocation::NAME => {
            handle::<m::VmSetAllocation, _, _>(params, |p| {
                vm_change(app, s, p.id, Some(p.allocation), None)
            })
            .await
        }
        m::VmMove::NAME => {
            handle::<m::VmMove, _, _>(params, |p| vm_change(app, s, p.id, None, Some(p.pool))).await
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("no method {other:?}"),
        )),
    }
}
