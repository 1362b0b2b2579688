//! `stats.query`: performance samples of a VM or a host.

use std::sync::Arc;

use serde_json::Value;
use strata_shared::api::{manager as m, Method};
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::handle;

use crate::app::App;
use crate::db::DbError;

pub(super) async fn call(app: &Arc<App>, method: &str, params: Value) -> Result<Value, RpcError> {
    match method {
        m::StatsQuery::NAME => {
            handle::<m::StatsQuery, _, _>(params, |p| async move {
                let since = p
                    .since_ms
                    .unwrap_or_else(|| strata_shared::now_ms() - 3_600_000);
                match app.db.vm(p.id).await {
                    Ok(_) => return Ok(app.db.vm_stats(p.id, since).await?),
                    Err(DbError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
                match app.db.host(p.id).await {
                    Ok(_) => Ok(app.db.host_stats(p.id, since).await?),
                    Err(DbError::NotFound) => Err(RpcError::not_found("VM or host", p.id)),
                    Err(e) => Err(e.into()),
                }
            })
            .await
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("no method {other:?}"),
        )),
    }
}
