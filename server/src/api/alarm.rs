//! `alarm.*`: the active alarms, and acknowledging one.

use std::sync::Arc;

use serde_json::Value;
use strata_shared::api::{manager as m, Method};
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::handle;

use super::Session;
use crate::app::App;

pub(super) async fn call(
    app: &Arc<App>,
    s: &Session,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    match method {
        m::AlarmList::NAME => {
            handle::<m::AlarmList, _, _>(
                params,
                |p| async move { Ok(app.db.alarms(p.target).await?) },
            )
            .await
        }
        m::AlarmAcknowledge::NAME => {
            handle::<m::AlarmAcknowledge, _, _>(params, |p| async move {
                crate::alarms::acknowledge(app, p.id, &s.username)
                    .await
                    .map_err(|e| e.or_not_found("active alarm", p.id))
            })
            .await
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("no method {other:?}"),
        )),
    }
}
