//! Watching datastores: each is probed every few seconds; when one stops answering (storage
//! unmounted, read-only, a hung NFS server) the agent marks it inaccessible, refuses to power
//! on VMs from it, and tells the manager which VMs are affected; VMs on other datastores are
//! untouched. When it answers again it is marked accessible. (Running VMs on a lost
//! datastore are fenced by their lease keepers when they cannot renew their leases.)

use std::sync::Arc;
use std::time::Duration;

use strata_shared::api::notifications;
use strata_shared::model::DatastoreChange;
use strata_shared::rpc::Notification;
use tracing::{info, warn};

use super::Agent;
use crate::datastore::health;

/// Time between two probes of a datastore.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

impl Agent {
    /// Probes every datastore forever, publishing each change of reachability.
    pub async fn watch_datastores(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        loop {
            tick.tick().await;
            for ds in &self.datastores {
                let verdict = health::probe(&ds.root, ds.id, self.id).await;
                let problem = verdict.err();
                let changed = match ds.health.lock() {
                    Ok(mut h) if h.problem != problem => {
                        h.problem = problem.clone();
                        true
                    }
                    _ => false,
                };
                if !changed {
                    continue;
                }
                let vms: Vec<String> = self
                    .lock_vms()
                    .values()
                    .filter(|e| e.datastore == ds.name)
                    .map(|e| e.display_name())
                    .collect();
                match &problem {
                    Some(p) => {
                        warn!(datastore = %ds.name, problem = %p, ?vms, "datastore inaccessible")
                    }
                    None => info!(datastore = %ds.name, "datastore accessible again"),
                }
                let change = DatastoreChange {
                    name: ds.name.clone(),
                    accessible: problem.is_none(),
                    problem,
                    vms,
                };
                let _ = self
                    .notes
                    .send(Notification::new(notifications::DATASTORE_CHANGED, &change));
            }
        }
    }
}
