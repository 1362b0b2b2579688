//! `inventory.*`, `datacenter.*`, `cluster.*`.

use std::sync::Arc;

use serde_json::Value;
use strata_shared::api::manager as m;
use strata_shared::api::Method;
use strata_shared::model::{
    ClusterInfo, Empty, Inventory, InventoryObject, ObjectKind, ObjectRef, Severity,
};
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::{forward_notifications, handle, Connection};
use uuid::Uuid;

use super::Session;
use crate::app::App;
use crate::db::DbError;

/// The whole inventory.
pub async fn inventory(app: &App) -> Result<Inventory, RpcError> {
    Ok(Inventory {
        datacenters: app.db.datacenters().await?,
        clusters: app.db.clusters().await?,
        hosts: app.db.hosts().await?.into_iter().map(|h| h.info).collect(),
        datastores: app.db.datastores().await?,
        vms: app.db.vms(None).await?,
        pools: app.db.pools(None).await?,
    })
}

pub(super) async fn call(
    app: &Arc<App>,
    conn: &Arc<Connection<Session>>,
    s: &Session,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    match method {
        m::InventoryGet::NAME => handle::<m::InventoryGet, _, _>(params, |_| inventory(app)).await,
        m::InventorySubscribe::NAME => {
            handle::<m::InventorySubscribe, _, _>(params, |_| async {
                forward_notifications(conn.clone(), app.notes.subscribe());
                Ok(Empty {})
            })
            .await
        }
        m::DatacenterList::NAME => {
            handle::<m::DatacenterList, _, _>(params, |_| async { Ok(app.db.datacenters().await?) })
                .await
        }
        m::ClusterList::NAME => {
            handle::<m::ClusterList, _, _>(params, |_| async { Ok(app.db.clusters().await?) }).await
        }
        m::ClusterCreate::NAME => {
            handle::<m::ClusterCreate, _, _>(params, |p| async move {
                strata_shared::model::validate_name("cluster", &p.name)
                    .map_err(RpcError::invalid)?;
                let datacenter = match p.datacenter {
                    Some(id) => {
                        if !app.db.datacenters().await?.iter().any(|d| d.id == id) {
                            return Err(RpcError::not_found("datacenter", id));
                        }
                        id
                    }
                    None => app.db.default_datacenter().await?.id,
                };
                let c = ClusterInfo {
                    id: Uuid::new_v4(),
                    name: p.name,
                    datacenter,
                };
                match app.db.insert_cluster(&c).await {
                    Ok(()) => {}
                    Err(DbError::Duplicate) => {
                        return Err(RpcError::new(
                            ErrorCode::Conflict,
                            format!("a cluster named {} already exists", c.name),
                        ))
                    }
                    Err(e) => return Err(e.into()),
                }
                let r = ObjectRef {
                    kind: ObjectKind::Cluster,
                    id: c.id,
                    name: c.name.clone(),
                };
                app.event(
                    "cluster.created",
                    Severity::Info,
                    Some(&r),
                    Some(&s.username),
                    &format!("cluster {} created", c.name),
                )
                .await;
                app.changed(InventoryObject::Cluster(c.clone()));
                Ok(c)
            })
            .await
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("no method {other:?}"),
        )),
    }
}
