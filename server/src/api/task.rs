//! `task.*`, `event.*`.

use std::sync::Arc;

use serde_json::Value;
use strata_shared::api::manager as m;
use strata_shared::api::Method;
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::handle;

use crate::app::App;

fn limit(l: Option<u32>) -> u32 {
    l.unwrap_or(100).clamp(1, 1000)
}

pub(super) async fn call(app: &Arc<App>, method: &str, params: Value) -> Result<Value, RpcError> {
    match method {
        m::TaskGet::NAME => {
            handle::<m::TaskGet, _, _>(params, |p| async move {
                app.db
                    .task(p.id)
                    .await
                    .map_err(|e| e.or_not_found("task", p.id))
            })
            .await
        }
        m::TaskList::NAME => {
            handle::<m::TaskList, _, _>(params, |p| async move {
                Ok(app.db.tasks(limit(p.limit), p.active_only).await?)
            })
            .await
        }
        m::EventList::NAME => {
            handle::<m::EventList, _, _>(params, |p| async move {
                Ok(app.db.events(p.object, p.after_id, limit(p.limit)).await?)
            })
            .await
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("no method {other:?}"),
        )),
    }
}
