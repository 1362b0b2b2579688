//! Connected straight to one host agent (no manager): the agent's synchronous methods stand
//! in for the manager's tasks. The inventory is built from `host.info` and `vm.list` (one
//! datacenter holding the one standalone host), kept current from the agent's
//! `vm.powerStateChanged` and `host.datastoreChanged` notifications; each operation becomes
//! a local Recent Tasks entry, and what the agent reports becomes local events. Clusters,
//! resource pools, host management and performance history need a manager and are refused
//! in words.

use std::sync::atomic::{AtomicI64, Ordering};

use strata_shared::api::agent as a;
use strata_shared::api::manager as m;
use strata_shared::api::{notifications, Method};
use strata_shared::model::{
    ConsoleEvent, ConsoleEventKind, ConsoleTicket, DatacenterInfo, DatastoreChange, DatastoreInfo,
    DatastoreProblem, Empty, EventInfo, HostCounters, HostFacts, HostInfo, IdParams, Inventory,
    InventoryChange, InventoryObject, ObjectKind, ObjectRef, PowerStateChange, Severity,
    StatSample, VmInfo,
};
use strata_shared::rpc::Notification;
use strata_shared::{Client, ClientError, ErrorCode};
use uuid::Uuid;

use super::{describe, finish_local_task, local_task, Action, NetEvent, Operation, Outbox};

/// How many live samples a direct connection keeps per VM or host (30 minutes at the
/// Performance tab's 5-second refresh).
const LIVE_SAMPLES: usize = 360;

/// Performance sampled live from the agent's raw counters while a Performance tab asks (an
/// agent keeps no history; a manager does).
#[derive(Default)]
struct LiveStats {
    /// Each VM's last (time, CPU ns) reading.
    last: std::collections::HashMap<Uuid, (i64, u64)>,
    /// Samples per VM, and per host (the sum over its VMs).
    series: std::collections::HashMap<Uuid, std::collections::VecDeque<StatSample>>,
}

impl LiveStats {
    fn push(&mut self, id: Uuid, sample: StatSample) {
        let s = self.series.entry(id).or_default();
        s.push_back(sample);
        while s.len() > LIVE_SAMPLES {
            s.pop_front();
        }
    }

    /// Takes one round of counters of host `host`.
    fn record(&mut self, host: Uuid, c: &HostCounters) {
        let rates = c.rates(&mut self.last);
        if rates.is_empty() {
            return;
        }
        let (mut cpu, mut mem) = (0.0, 0.0);
        for (vm, cpu_mhz, memory_mib) in rates {
            cpu += cpu_mhz;
            mem += memory_mib;
            let time_ms = c.time_ms;
            self.push(
                vm,
                StatSample {
                    time_ms,
                    cpu_mhz,
                    memory_mib,
                },
            );
        }
        let sample = StatSample {
            time_ms: c.time_ms,
            cpu_mhz: cpu,
            memory_mib: mem,
        };
        self.push(host, sample);
    }

    fn of(&self, id: Uuid) -> Vec<StatSample> {
        self.series
            .get(&id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Why a manager-only request is refused on a direct connection.
pub const NEEDS_MANAGER: &str =
    "This is a direct connection to a host agent: clusters, resource pools, adding hosts and \
     performance history need a Strata manager (performance is sampled live while shown)";

/// A logged-in connection to one host agent.
pub struct AgentLink {
    /// The SDK client.
    pub client: Client,
    /// The host's id (the agent's own).
    pub host: Uuid,
    /// The datacenter the host is shown in (made up, stable per host).
    pub datacenter: Uuid,
    /// The thumbprint the connection pinned.
    thumbprint: String,
    /// Ids for the local events (increasing).
    next_event: AtomicI64,
    /// Live performance samples.
    live: std::sync::Mutex<LiveStats>,
}

/// The made-up datacenter a directly connected host is shown in: stable per host.
pub fn datacenter_of(host: Uuid) -> Uuid {
    Uuid::new_v5(&host, b"strata-direct-datacenter")
}

/// A datastore's inventory id: its volume id, or one made from its name when the agent is
/// older than volume ids.
fn datastore_id(host: Uuid, name: &str, volume: Uuid) -> Uuid {
    if volume.is_nil() {
        Uuid::new_v5(&host, name.as_bytes())
    } else {
        volume
    }
}

/// What the made-up datacenter of a direct connection is called.
pub const DATACENTER_NAME: &str = "Direct connection";

/// The inventory a host agent's facts and VMs make: one datacenter ([`DATACENTER_NAME`]), the
/// host (connected, standalone), its datastores and VMs.
pub fn inventory_of(
    facts: &HostFacts,
    vms: Vec<VmInfo>,
    address: &str,
    thumbprint: &str,
) -> Inventory {
    let datacenter = datacenter_of(facts.id);
    let host = host_of(facts, datacenter, address, thumbprint);
    Inventory {
        datacenters: vec![DatacenterInfo {
            id: datacenter,
            name: DATACENTER_NAME.to_string(),
        }],
        clusters: Vec::new(),
        datastores: datastores_of(facts, datacenter),
        vms: vms.into_iter().map(|v| placed(v, facts.id)).collect(),
        hosts: vec![host],
        pools: Vec::new(),
    }
}

fn host_of(facts: &HostFacts, datacenter: Uuid, address: &str, thumbprint: &str) -> HostInfo {
    HostInfo {
        id: facts.id,
        name: facts.hostname.clone(),
        address: address.to_string(),
        datacenter,
        cluster: None,
        thumbprint: thumbprint.to_string(),
        connection_state: strata_shared::model::ConnectionState::Connected,
        state_reason: None,
        facts: Some(facts.clone()),
    }
}

fn datastores_of(facts: &HostFacts, datacenter: Uuid) -> Vec<DatastoreInfo> {
    facts
        .datastores
        .iter()
        .map(|d| DatastoreInfo {
            id: datastore_id(facts.id, &d.name, d.id),
            name: d.name.clone(),
            datacenter,
            capacity_bytes: d.capacity_bytes,
            free_bytes: d.free_bytes,
            hosts: vec![facts.id],
            inaccessible_on: if d.accessible {
                Vec::new()
            } else {
                vec![DatastoreProblem {
                    host: facts.id,
                    problem: d.problem.clone().unwrap_or_else(|| "not reachable".into()),
                }]
            },
        })
        .collect()
}

/// The agent's VM as the inventory shows it: on this host.
fn placed(mut vm: VmInfo, host: Uuid) -> VmInfo {
    vm.host = Some(host);
    vm
}

fn upsert(object: InventoryObject) -> NetEvent {
    NetEvent::Inventory(InventoryChange::Upsert {
        object: Box::new(object),
    })
}

fn vm_ref(vm: &VmInfo) -> ObjectRef {
    ObjectRef {
        kind: ObjectKind::Vm,
        id: vm.id,
        name: vm.name.clone(),
    }
}

impl AgentLink {
    /// Subscribes to the agent's notifications, then loads the host and its VMs. `username`
    /// is who logged in.
    pub(super) async fn open(
        client: Client,
        username: String,
    ) -> Result<
        (
            AgentLink,
            tokio::sync::broadcast::Receiver<Notification>,
            NetEvent,
        ),
        ClientError,
    > {
        // Subscribe before loading, so no change between the two is missed.
        let notes = client.notifications();
        client.call::<a::HostSubscribe>(Empty {}).await?;
        let facts = client.call::<a::HostInfoMethod>(Empty {}).await?;
        let vms = client.call::<a::VmList>(Empty {}).await?;
        let thumbprint = client.thumbprint().to_string();
        let inventory = inventory_of(&facts, vms, client.address(), &thumbprint);
        let link = AgentLink {
            host: facts.id,
            datacenter: datacenter_of(facts.id),
            thumbprint,
            next_event: AtomicI64::new(1),
            live: std::sync::Mutex::new(LiveStats::default()),
            client,
        };
        let ev = NetEvent::Connected {
            address: link.client.address().to_string(),
            username,
            inventory,
            tasks: Vec::new(),
            events: Vec::new(),
            alarms: Vec::new(),
            direct: true,
        };
        Ok((link, notes, ev))
    }

    /// The whole inventory again (after lost notifications).
    pub(super) async fn reload(&self) -> Result<Inventory, ClientError> {
        let facts = self.client.call::<a::HostInfoMethod>(Empty {}).await?;
        let vms = self.client.call::<a::VmList>(Empty {}).await?;
        Ok(inventory_of(
            &facts,
            vms,
            self.client.address(),
            &self.thumbprint,
        ))
    }

    fn event(
        &self,
        kind: &str,
        severity: Severity,
        object: Option<ObjectRef>,
        message: String,
    ) -> NetEvent {
        NetEvent::Event(EventInfo {
            id: self.next_event.fetch_add(1, Ordering::Relaxed),
            time_ms: strata_shared::now_ms(),
            kind: kind.to_string(),
            severity,
            object,
            user: None,
            message,
        })
    }

    /// Runs a power or lifecycle operation as a local task; the VM's new state goes to the
    /// inventory at once.
    pub(super) async fn run(&self, op: Operation, id: Uuid, user: &str, out: &Outbox) {
        let method = match op {
            Operation::PowerOn => a::VmPowerOn::NAME,
            Operation::PowerOff | Operation::PowerOffHard => a::VmPowerOff::NAME,
            Operation::Reset => a::VmReset::NAME,
            Operation::Suspend => a::VmSuspend::NAME,
            Operation::Pause => a::VmPause::NAME,
            Operation::Unpause => a::VmUnpause::NAME,
            Operation::Destroy => a::VmDestroy::NAME,
            Operation::RemoveHost => {
                let message = NEEDS_MANAGER.to_string();
                return out.send(NetEvent::OperationFailed { op, message }).await;
            }
        };
        let target = self
            .client
            .call::<a::VmGet>(IdParams { id })
            .await
            .map(|v| vm_ref(&v))
            .ok();
        let name = target
            .as_ref()
            .map_or_else(|| id.to_string(), |t| t.name.clone());
        let label = format!("{} {name}", op.label());
        let mut task = local_task(method, &label, target, user);
        out.send(NetEvent::Task(task.clone())).await;
        let p = IdParams { id };
        let c = &self.client;
        let result: Result<Option<VmInfo>, ClientError> = match op {
            Operation::PowerOn => c.call::<a::VmPowerOn>(p).await.map(Some),
            Operation::PowerOff | Operation::PowerOffHard => c
                .call::<a::VmPowerOff>(m::PowerOffParams {
                    id,
                    hard: op == Operation::PowerOffHard,
                    timeout_secs: None,
                })
                .await
                .map(|r| Some(r.vm)),
            Operation::Reset => c.call::<a::VmReset>(p).await.map(Some),
            Operation::Suspend => c.call::<a::VmSuspend>(p).await.map(Some),
            Operation::Pause => c.call::<a::VmPause>(p).await.map(Some),
            Operation::Unpause => c.call::<a::VmUnpause>(p).await.map(Some),
            Operation::Destroy | Operation::RemoveHost => {
                c.call::<a::VmDestroy>(p).await.map(|_| None)
            }
        };
        finish_local_task(&mut task, &result);
        out.send(NetEvent::Task(task)).await;
        match result {
            Ok(Some(vm)) => {
                out.send(upsert(InventoryObject::Vm(placed(vm, self.host))))
                    .await
            }
            Ok(None) => {
                let kind = ObjectKind::Vm;
                out.send(NetEvent::Inventory(InventoryChange::Remove { kind, id }))
                    .await
            }
            Err(e) => {
                let message = describe(&e);
                out.send(NetEvent::OperationFailed { op, message }).await
            }
        }
    }

    /// Runs a dialog's action: creating a VM (with its disks, then powering it on when
    /// asked) and changing a VM's settings work on the agent; the rest needs a manager.
    pub(super) async fn run_action(
        &self,
        action: Action,
        label: String,
        target: Option<ObjectRef>,
        token: u64,
        user: &str,
        out: &Outbox,
    ) {
        let done = |result: Result<(), String>| NetEvent::ActionDone {
            token,
            label: label.clone(),
            result,
        };
        match action {
            Action::CreateVm {
                params,
                disks,
                power_on,
            } => {
                let name = params.name.clone();
                let create = a::AgentVmCreateParams {
                    id: None,
                    name: params.name,
                    datastore: params.datastore,
                    spec: params.spec,
                };
                let created = self
                    .step(a::VmCreate::NAME, &label, target, user, out, || {
                        self.client.call::<a::VmCreate>(create)
                    })
                    .await;
                let vm = match created {
                    Ok(vm) => vm,
                    Err(e) => return out.send(done(Err(e))).await,
                };
                out.send(done(Ok(()))).await;
                let target = Some(vm_ref(&vm));
                for (i, d) in disks.iter().enumerate() {
                    let step = format!("Add a {} MiB disk to {name}", d.size_mib);
                    let params = d.params(vm.id);
                    let r = self
                        .step(
                            a::VmDiskCreate::NAME,
                            &step,
                            target.clone(),
                            user,
                            out,
                            || self.client.call::<a::VmDiskCreate>(params),
                        )
                        .await;
                    if let Err(e) = r {
                        let message = d.failed(&name, i, &e);
                        return out.send(NetEvent::ActionFailed { message }).await;
                    }
                }
                if power_on {
                    let step = format!("Power on {name}");
                    let r = self
                        .step(a::VmPowerOn::NAME, &step, target, user, out, || {
                            self.client.call::<a::VmPowerOn>(IdParams { id: vm.id })
                        })
                        .await;
                    if let Err(e) = r {
                        let message = super::power_on_failed(&name, &e);
                        out.send(NetEvent::ActionFailed { message }).await;
                    }
                }
            }
            Action::Reconfigure(p) => {
                let r = self
                    .step(a::VmReconfigure::NAME, &label, target, user, out, || {
                        self.client.call::<a::VmReconfigure>(p)
                    })
                    .await;
                out.send(done(r.map(|_| ()))).await;
            }
            Action::AddHost { .. } | Action::CreateCluster(_) | Action::MoveVm(_) => {
                out.send(done(Err(NEEDS_MANAGER.to_string()))).await;
            }
        }
    }

    /// One agent call returning a VM, shown as a local task; the VM goes to the inventory.
    async fn step<F, Fut>(
        &self,
        method: &str,
        label: &str,
        target: Option<ObjectRef>,
        user: &str,
        out: &Outbox,
        call: F,
    ) -> Result<VmInfo, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<VmInfo, ClientError>>,
    {
        let mut task = local_task(method, label, target, user);
        out.send(NetEvent::Task(task.clone())).await;
        let r = call().await;
        finish_local_task(&mut task, &r);
        out.send(NetEvent::Task(task)).await;
        match r {
            Ok(vm) => {
                let vm = placed(vm, self.host);
                out.send(upsert(InventoryObject::Vm(vm.clone()))).await;
                Ok(vm)
            }
            Err(e) => Err(describe(&e)),
        }
    }

    /// The live samples of a VM or the host, after reading the agent's counters once more
    /// (the first reading of a VM gives no sample yet: CPU use needs two).
    pub(super) async fn stats(&self, id: Uuid) -> Result<Vec<StatSample>, String> {
        let counters = self
            .client
            .call::<a::HostStats>(Empty {})
            .await
            .map_err(|e| describe(&e))?;
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.record(self.host, &counters);
        Ok(live.of(id))
    }

    /// A console ticket from the agent, addressed where this client reaches the agent.
    pub(super) async fn console_ticket(&self, vm: Uuid) -> Result<ConsoleTicket, String> {
        let mut t = self
            .client
            .call::<a::VmConsoleTicket>(a::ConsoleTicketParams { id: vm, user: None })
            .await
            .map_err(|e| describe(&e))?;
        if let Some((_, query)) = t.ws_url.split_once('?') {
            t.ws_url = format!("wss://{}/console?{query}", self.client.address());
        }
        Ok(t)
    }

    /// Turns an agent notification into inventory changes and events.
    pub(super) async fn on_note(&self, n: Notification, out: &Outbox) {
        match n.method.as_str() {
            notifications::VM_POWER_STATE_CHANGED => {
                let Ok(change) = serde_json::from_value::<PowerStateChange>(n.params) else {
                    return tracing::debug!("malformed power state notification dropped");
                };
                match self
                    .client
                    .call::<a::VmGet>(IdParams { id: change.vm })
                    .await
                {
                    Ok(vm) => {
                        let message = format!(
                            "{} is {}: {}",
                            vm.name,
                            crate::app::theme::power_text(vm.power_state).to_lowercase(),
                            change.reason
                        );
                        out.send(self.event(
                            "vm.powerStateChanged",
                            Severity::Info,
                            Some(vm_ref(&vm)),
                            message,
                        ))
                        .await;
                        out.send(upsert(InventoryObject::Vm(placed(vm, self.host))))
                            .await;
                    }
                    Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                        let (kind, id) = (ObjectKind::Vm, change.vm);
                        out.send(NetEvent::Inventory(InventoryChange::Remove { kind, id }))
                            .await;
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot read a changed VM"),
                }
            }
            notifications::DATASTORE_CHANGED => {
                let Ok(change) = serde_json::from_value::<DatastoreChange>(n.params) else {
                    return tracing::debug!("malformed datastore notification dropped");
                };
                let (severity, message) = if change.accessible {
                    (
                        Severity::Info,
                        format!("Datastore {} is accessible again", change.name),
                    )
                } else {
                    (
                        Severity::Error,
                        format!(
                            "Datastore {} is inaccessible: {}",
                            change.name,
                            change.problem.as_deref().unwrap_or("not reachable")
                        ),
                    )
                };
                out.send(self.event("datastore.changed", severity, None, message))
                    .await;
                if let Ok(facts) = self.client.call::<a::HostInfoMethod>(Empty {}).await {
                    for d in datastores_of(&facts, self.datacenter) {
                        out.send(upsert(InventoryObject::Datastore(d))).await;
                    }
                    let host = host_of(
                        &facts,
                        self.datacenter,
                        self.client.address(),
                        &self.thumbprint,
                    );
                    out.send(upsert(InventoryObject::Host(host))).await;
                }
            }
            notifications::CONSOLE_EVENT => {
                let Ok(e) = serde_json::from_value::<ConsoleEvent>(n.params) else {
                    return;
                };
                let (kind, severity, what) = match e.kind {
                    ConsoleEventKind::Opened => ("vm.console.opened", Severity::Info, "opened"),
                    ConsoleEventKind::Closed => ("vm.console.closed", Severity::Info, "closed"),
                    ConsoleEventKind::Refused => {
                        ("vm.console.refused", Severity::Warning, "refused")
                    }
                };
                let message = format!("Console {what} ({}, {})", e.peer, e.detail);
                let object = match e.vm {
                    Some(id) => match self.client.call::<a::VmGet>(IdParams { id }).await {
                        Ok(vm) => Some(vm_ref(&vm)),
                        Err(_) => Some(ObjectRef {
                            kind: ObjectKind::Vm,
                            id,
                            name: id.to_string(),
                        }),
                    },
                    None => None,
                };
                out.send(self.event(kind, severity, object, message)).await;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::{DatastoreFacts, Engine};

    fn facts() -> HostFacts {
        HostFacts {
            id: Uuid::new_v4(),
            hostname: "esx7".into(),
            cpu_count: 8,
            cpu_mhz: 2400,
            memory_mib: 32768,
            hardware_virtualization: true,
            engines: vec![Engine::Qemu],
            default_engine: Engine::Qemu,
            qemu_version: None,
            agent_version: "0".into(),
            datastores: vec![
                DatastoreFacts {
                    id: Uuid::new_v4(),
                    name: "ds1".into(),
                    path: "/d1".into(),
                    capacity_bytes: 100,
                    free_bytes: 40,
                    accessible: true,
                    problem: None,
                },
                DatastoreFacts {
                    id: Uuid::nil(),
                    name: "old".into(),
                    path: "/d2".into(),
                    capacity_bytes: 100,
                    free_bytes: 40,
                    accessible: false,
                    problem: Some("I/O error".into()),
                },
            ],
            managed_by: None,
        }
    }

    #[test]
    fn live_samples_come_from_two_readings_and_sum_up_for_the_host() {
        use strata_shared::model::VmCounters;
        let (host, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let round = |t: i64, cpu: u64| HostCounters {
            time_ms: t,
            cpu_mhz_per_core: 1000,
            vms: vec![
                VmCounters {
                    vm: a,
                    cpu_ns: cpu,
                    rss_bytes: 100 << 20,
                },
                VmCounters {
                    vm: b,
                    cpu_ns: cpu / 2,
                    rss_bytes: 50 << 20,
                },
            ],
        };
        let mut live = LiveStats::default();
        live.record(host, &round(0, 0));
        assert!(live.of(a).is_empty(), "one reading is no rate yet");
        // One second: a used a whole core (1000 MHz), b half of one.
        live.record(host, &round(1_000, 1_000_000_000));
        assert_eq!(live.of(a)[0].cpu_mhz, 1000.0);
        assert_eq!(live.of(b)[0].cpu_mhz, 500.0);
        let h = live.of(host);
        assert_eq!((h[0].cpu_mhz, h[0].memory_mib), (1500.0, 150.0));
        for t in 2..(LIVE_SAMPLES as i64 + 10) {
            live.record(host, &round(t * 1_000, t as u64 * 1_000_000_000));
        }
        assert_eq!(live.of(a).len(), LIVE_SAMPLES, "the oldest go");
    }

    #[test]
    fn a_host_agent_becomes_one_datacenter_with_its_host_datastores_and_vms() {
        let f = facts();
        let vm = VmInfo {
            host: None,
            datastore: "ds1".into(),
            ..crate::app::test_fixtures::vm("web", Uuid::nil())
        };
        let inv = inventory_of(&f, vec![vm.clone()], "h:9443", "AB:CD");
        assert_eq!(inv.datacenters.len(), 1);
        assert_eq!(inv.datacenters[0].name, DATACENTER_NAME);
        assert_eq!(inv.hosts[0].name, "esx7");
        let dc = inv.datacenters[0].id;
        assert_eq!(dc, datacenter_of(f.id), "stable across reloads");
        assert_eq!(inv.hosts.len(), 1);
        let h = &inv.hosts[0];
        assert_eq!((h.id, h.datacenter, h.cluster), (f.id, dc, None));
        assert_eq!(h.address, "h:9443");
        assert_eq!(inv.vms[0].host, Some(f.id), "VMs are placed on the host");
        assert_eq!(inv.datastores.len(), 2);
        assert_eq!(inv.datastores[0].id, f.datastores[0].id);
        assert!(inv.datastores[0].inaccessible_on.is_empty());
        // An agent without volume ids still gets a stable, distinct id per datastore.
        assert!(!inv.datastores[1].id.is_nil());
        assert_eq!(inv.datastores[1].id, datastore_id(f.id, "old", Uuid::nil()));
        assert_eq!(inv.datastores[1].inaccessible_on[0].problem, "I/O error");
        assert!(inv.clusters.is_empty() && inv.pools.is_empty());
    }
}
