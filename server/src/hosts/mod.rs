//! The manager's connections to host agents: one reconnecting link per host, pinned to the
//! host's certificate thumbprint.

mod link;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use strata_shared::rpc::{ErrorCode, RpcError};
use strata_shared::Client;
use tokio::sync::watch;
use uuid::Uuid;

use crate::app::App;

struct Link {
    client: watch::Receiver<Option<Client>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// All host links.
#[derive(Default)]
pub struct HostLinks {
    links: Mutex<HashMap<Uuid, Link>>,
}

impl HostLinks {
    /// Starts (or restarts) the link to a host.
    pub fn start(&self, app: &Arc<App>, host: Uuid) {
        let (client_tx, client_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(link::run(Arc::downgrade(app), host, client_tx, stop_rx));
        let old = self.links.lock().ok().and_then(|mut l| {
            l.insert(
                host,
                Link {
                    client: client_rx,
                    stop: stop_tx,
                    task,
                },
            )
        });
        if let Some(old) = old {
            let _ = old.stop.send(true);
            old.task.abort();
        }
    }

    /// Stops the link to a host.
    pub async fn stop(&self, host: Uuid) {
        let link = self.links.lock().ok().and_then(|mut l| l.remove(&host));
        if let Some(link) = link {
            let _ = link.stop.send(true);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), link.task).await;
        }
    }

    /// Stops every link.
    pub async fn stop_all(&self) {
        let ids: Vec<Uuid> = self
            .links
            .lock()
            .map(|l| l.keys().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.stop(id).await;
        }
    }

    /// The connected client of a host, or `Unavailable`.
    pub fn client(&self, host: Uuid, name: &str) -> Result<Client, RpcError> {
        self.links
            .lock()
            .ok()
            .and_then(|l| l.get(&host).and_then(|link| link.client.borrow().clone()))
            .filter(|c| !c.is_closed())
            .ok_or_else(|| {
                RpcError::new(
                    ErrorCode::Unavailable,
                    format!("host {name} is not connected"),
                )
            })
    }

    /// Waits until the host is connected (or `limit` passes).
    pub async fn wait_connected(&self, host: Uuid, limit: std::time::Duration) -> bool {
        let rx = self
            .links
            .lock()
            .ok()
            .and_then(|l| l.get(&host).map(|link| link.client.clone()));
        let Some(mut rx) = rx else { return false };
        tokio::time::timeout(limit, rx.wait_for(|c| c.is_some()))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }
}
