//! `datastore.*`: browse, upload and download files on a datastore through one of the hosts
//! that mount it (a connected one that can reach it).

use std::sync::Arc;

use serde_json::Value;
use strata_shared::api::agent as agent_api;
use strata_shared::api::{manager as m, Method};
use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::service::handle;
use strata_shared::Client;

use super::host::agent_error;
use crate::app::App;

/// A host client that can reach the datastore, and that host's name for it.
async fn through(app: &App, key: &str) -> Result<(Client, String), RpcError> {
    let mounts = app.db.datastore_mounts(key).await?;
    if mounts.is_empty() {
        return Err(RpcError::not_found("datastore", key));
    }
    let mut why = Vec::new();
    for (host, name, problem) in mounts {
        let row = app.db.host(host).await?;
        if let Some(p) = problem {
            why.push(format!("{}: {p}", row.info.name));
            continue;
        }
        match app.hosts.client(host, &row.info.name) {
            Ok(c) => return Ok((c, name)),
            Err(e) => why.push(e.message),
        }
    }
    Err(RpcError::new(
        ErrorCode::Unavailable,
        format!("no host can reach datastore {key} now ({})", why.join("; ")),
    ))
}

pub(super) async fn call(app: &Arc<App>, method: &str, params: Value) -> Result<Value, RpcError> {
    match method {
        m::DatastoreBrowse::NAME => {
            handle::<m::DatastoreBrowse, _, _>(params, |mut p| async move {
                let (c, name) = through(app, &p.datastore).await?;
                p.datastore = name;
                c.call::<agent_api::DatastoreBrowse>(p)
                    .await
                    .map_err(agent_error)
            })
            .await
        }
        m::DatastoreUpload::NAME => {
            handle::<m::DatastoreUpload, _, _>(params, |mut p| async move {
                let (c, name) = through(app, &p.datastore).await?;
                p.datastore = name;
                c.call::<agent_api::DatastoreUpload>(p)
                    .await
                    .map_err(agent_error)
            })
            .await
        }
        m::DatastoreDownload::NAME => {
            handle::<m::DatastoreDownload, _, _>(params, |mut p| async move {
                let (c, name) = through(app, &p.datastore).await?;
                p.datastore = name;
                c.call::<agent_api::DatastoreDownload>(p)
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
