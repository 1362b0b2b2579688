//! The client's data model: the inventory kept current from `inventory.changed` deltas, and
//! the recent tasks and events. Plain structs, no UI and no networking.

use std::collections::{BTreeMap, HashMap, VecDeque};

use strata_shared::model::{
    ClusterInfo, DatacenterInfo, DatastoreInfo, EventInfo, HostInfo, Inventory, InventoryChange,
    InventoryObject, ObjectKind, PoolInfo, PowerState, TaskInfo, VmInfo,
};
use uuid::Uuid;

/// How many tasks the model keeps (newest first).
pub const MAX_TASKS: usize = 500;
/// How many events the model keeps (newest first).
pub const MAX_EVENTS: usize = 1000;

/// The inventory, indexed by id, with the parent → children links the tree needs.
#[derive(Debug, Default, Clone)]
pub struct InventoryModel {
    /// Datacenters by id.
    pub datacenters: BTreeMap<Uuid, DatacenterInfo>,
    /// Clusters by id.
    pub clusters: BTreeMap<Uuid, ClusterInfo>,
    /// Hosts by id.
    pub hosts: BTreeMap<Uuid, HostInfo>,
    /// Datastores by id.
    pub datastores: BTreeMap<Uuid, DatastoreInfo>,
    /// VMs by id.
    pub vms: HashMap<Uuid, VmInfo>,
    /// Resource pools by id.
    pub pools: BTreeMap<Uuid, PoolInfo>,
    /// VM ids per host, sorted by VM name.
    vms_by_host: HashMap<Uuid, Vec<Uuid>>,
    /// Bumped on every change (lets views cache derived data).
    pub generation: u64,
    /// Bumped only when objects appear, go, are renamed, move, or a VM's configuration
    /// changes: what orders and places rows. Power and connection states do not bump it.
    pub layout_generation: u64,
}

impl InventoryModel {
    /// Builds the model from a full snapshot (`inventory.get`).
    pub fn from_snapshot(inv: Inventory) -> Self {
        let mut m = InventoryModel {
            datacenters: inv.datacenters.into_iter().map(|d| (d.id, d)).collect(),
            clusters: inv.clusters.into_iter().map(|c| (c.id, c)).collect(),
            hosts: inv.hosts.into_iter().map(|h| (h.id, h)).collect(),
            datastores: inv.datastores.into_iter().map(|d| (d.id, d)).collect(),
            vms: inv.vms.into_iter().map(|v| (v.id, v)).collect(),
            pools: inv.pools.into_iter().map(|p| (p.id, p)).collect(),
            vms_by_host: HashMap::new(),
            generation: 1,
            layout_generation: 1,
        };
        m.reindex_all();
        m
    }

    fn reindex_all(&mut self) {
        self.vms_by_host.clear();
        for vm in self.vms.values() {
            if let Some(h) = vm.host {
                self.vms_by_host.entry(h).or_default().push(vm.id);
            }
        }
        let hosts: Vec<Uuid> = self.vms_by_host.keys().copied().collect();
        for h in hosts {
            self.sort_host(h);
        }
    }

    fn sort_host(&mut self, host: Uuid) {
        let vms = &self.vms;
        if let Some(list) = self.vms_by_host.get_mut(&host) {
            list.sort_by(|a, b| {
                let na = vms.get(a).map(|v| v.name.as_str()).unwrap_or("");
                let nb = vms.get(b).map(|v| v.name.as_str()).unwrap_or("");
                natural_cmp(na, nb)
            });
        }
    }

    fn unlink_vm(&mut self, vm: Uuid, host: Option<Uuid>) {
        if let Some(h) = host {
            if let Some(list) = self.vms_by_host.get_mut(&h) {
                list.retain(|v| *v != vm);
            }
        }
    }

    /// Applies one delta; only the touched object and its host's child list change.
    pub fn apply(&mut self, change: InventoryChange) {
        self.generation += 1;
        let mut layout = true;
        match change {
            InventoryChange::Upsert { object } => match *object {
                InventoryObject::Datacenter(d) => {
                    if let Some(old) = self.datacenters.insert(d.id, d.clone()) {
                        layout = old.name != d.name;
                    }
                }
                InventoryObject::Cluster(c) => {
                    if let Some(old) = self.clusters.insert(c.id, c.clone()) {
                        layout = old.name != c.name || old.datacenter != c.datacenter;
                    }
                }
                InventoryObject::Host(h) => {
                    let (name, dc, cluster) = (h.name.clone(), h.datacenter, h.cluster);
                    if let Some(old) = self.hosts.insert(h.id, h) {
                        layout = old.name != name || old.datacenter != dc || old.cluster != cluster;
                    }
                }
                InventoryObject::Datastore(d) => {
                    self.datastores.insert(d.id, d);
                }
                InventoryObject::Pool(p) => {
                    self.pools.insert(p.id, p);
                }
                InventoryObject::Vm(vm) => {
                    let id = vm.id;
                    let new_host = vm.host;
                    let old = self.vms.insert(id, vm);
                    let relink = match &old {
                        Some(o) => o.host != new_host || o.name != self.vms[&id].name,
                        None => true,
                    };
                    layout = relink
                        || old.as_ref().is_some_and(|o| {
                            o.spec != self.vms[&id].spec || o.datastore != self.vms[&id].datastore
                        });
                    if relink {
                        self.unlink_vm(id, old.and_then(|o| o.host));
                        if let Some(h) = new_host {
                            self.vms_by_host.entry(h).or_default().push(id);
                            self.sort_host(h);
                        }
                    }
                }
            },
            InventoryChange::Remove { kind, id } => match kind {
                ObjectKind::Datacenter => {
                    self.datacenters.remove(&id);
                }
                ObjectKind::Cluster => {
                    self.clusters.remove(&id);
                }
                ObjectKind::Host => {
                    self.hosts.remove(&id);
                }
                ObjectKind::Datastore => {
                    self.datastores.remove(&id);
                }
                ObjectKind::Vm => {
                    if let Some(old) = self.vms.remove(&id) {
                        self.unlink_vm(id, old.host);
                    }
                }
                ObjectKind::Pool => {
                    self.pools.remove(&id);
                    layout = false;
                }
                ObjectKind::User => layout = false,
            },
        }
        if layout {
            self.layout_generation += 1;
        }
    }

    /// VMs on a host, sorted by name.
    pub fn vms_on_host(&self, host: Uuid) -> &[Uuid] {
        self.vms_by_host
            .get(&host)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Hosts of a cluster, sorted by name.
    pub fn hosts_in_cluster(&self, cluster: Uuid) -> Vec<&HostInfo> {
        let mut v: Vec<&HostInfo> = self
            .hosts
            .values()
            .filter(|h| h.cluster == Some(cluster))
            .collect();
        v.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        v
    }

    /// Hosts of a datacenter outside any cluster, sorted by name.
    pub fn standalone_hosts(&self, datacenter: Uuid) -> Vec<&HostInfo> {
        let mut v: Vec<&HostInfo> = self
            .hosts
            .values()
            .filter(|h| h.datacenter == datacenter && h.cluster.is_none())
            .collect();
        v.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        v
    }

    /// Clusters of a datacenter, sorted by name.
    pub fn clusters_in(&self, datacenter: Uuid) -> Vec<&ClusterInfo> {
        let mut v: Vec<&ClusterInfo> = self
            .clusters
            .values()
            .filter(|c| c.datacenter == datacenter)
            .collect();
        v.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        v
    }

    /// The VMs under an object (a datacenter, cluster or host; a VM gives itself).
    pub fn vms_under(&self, sel: Selection) -> Vec<Uuid> {
        match sel {
            Selection::Vm(id) => vec![id],
            Selection::Host(h) => self.vms_on_host(h).to_vec(),
            Selection::Cluster(c) => self
                .hosts_in_cluster(c)
                .iter()
                .flat_map(|h| self.vms_on_host(h.id).iter().copied())
                .collect(),
            Selection::Datacenter(d) => self
                .hosts
                .values()
                .filter(|h| h.datacenter == d)
                .flat_map(|h| self.vms_on_host(h.id).iter().copied())
                .collect(),
        }
    }

    /// The display name of a selected object, when it still exists.
    pub fn name_of(&self, sel: Selection) -> Option<&str> {
        match sel {
            Selection::Datacenter(id) => self.datacenters.get(&id).map(|o| o.name.as_str()),
            Selection::Cluster(id) => self.clusters.get(&id).map(|o| o.name.as_str()),
            Selection::Host(id) => self.hosts.get(&id).map(|o| o.name.as_str()),
            Selection::Vm(id) => self.vms.get(&id).map(|o| o.name.as_str()),
        }
    }

    /// Whether the selected object still exists.
    pub fn contains(&self, sel: Selection) -> bool {
        self.name_of(sel).is_some()
    }

    /// Counts of powered-on and all VMs under an object.
    pub fn power_counts(&self, sel: Selection) -> (usize, usize) {
        let vms = self.vms_under(sel);
        let on = vms
            .iter()
            .filter(|id| {
                self.vms
                    .get(id)
                    .is_some_and(|v| v.power_state == PowerState::PoweredOn)
            })
            .count();
        (on, vms.len())
    }
}

/// One selected inventory object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Selection {
    /// A datacenter.
    Datacenter(Uuid),
    /// A cluster.
    Cluster(Uuid),
    /// A host.
    Host(Uuid),
    /// A VM.
    Vm(Uuid),
}

impl Selection {
    /// The object's id.
    pub fn id(self) -> Uuid {
        match self {
            Selection::Datacenter(id)
            | Selection::Cluster(id)
            | Selection::Host(id)
            | Selection::Vm(id) => id,
        }
    }
}

/// Recent tasks, newest first, updated in place from `task.progress` / `task.done`.
#[derive(Debug, Default, Clone)]
pub struct TaskLog {
    tasks: VecDeque<TaskInfo>,
}

impl TaskLog {
    /// Replaces the list (newest first, as `task.list` returns it).
    pub fn reset(&mut self, tasks: Vec<TaskInfo>) {
        self.tasks = tasks.into_iter().take(MAX_TASKS).collect();
    }

    /// Adds or updates a task; a finished task is never replaced by an older running state.
    pub fn upsert(&mut self, task: TaskInfo) {
        if let Some(t) = self.tasks.iter_mut().find(|t| t.id == task.id) {
            if t.state.is_done() && !task.state.is_done() {
                return;
            }
            *t = task;
            return;
        }
        self.tasks.push_front(task);
        self.tasks.truncate(MAX_TASKS);
    }

    /// All tasks, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &TaskInfo> {
        self.tasks.iter()
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The `i`-th newest task.
    pub fn get(&self, i: usize) -> Option<&TaskInfo> {
        self.tasks.get(i)
    }
}

/// Recent events, newest first.
#[derive(Debug, Default, Clone)]
pub struct EventLog {
    events: VecDeque<EventInfo>,
}

impl EventLog {
    /// Replaces the list (newest first).
    pub fn reset(&mut self, events: Vec<EventInfo>) {
        self.events = events.into_iter().take(MAX_EVENTS).collect();
    }

    /// Adds a new event (ignored when already known).
    pub fn push(&mut self, ev: EventInfo) {
        let maybe_known = self.events.front().is_some_and(|f| f.id >= ev.id);
        if maybe_known && self.events.iter().any(|e| e.id == ev.id) {
            return;
        }
        self.events.push_front(ev);
        self.events.truncate(MAX_EVENTS);
    }

    /// All events, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &EventInfo> {
        self.events.iter()
    }
}

/// Everything the client knows about the connected manager.
#[derive(Debug, Default, Clone)]
pub struct DataModel {
    /// The inventory.
    pub inventory: InventoryModel,
    /// Recent tasks.
    pub tasks: TaskLog,
    /// Recent events.
    pub events: EventLog,
}

/// Compares names so that `vm2` sorts before `vm10` (ASCII case-insensitive, no allocation).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering::Equal;
    fn digits(s: &[u8], mut i: usize) -> usize {
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        i
    }
    fn trim_zeros(s: &[u8]) -> &[u8] {
        let n = s.iter().take_while(|c| **c == b'0').count();
        &s[n..]
    }
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i].is_ascii_digit() && y[j].is_ascii_digit() {
            let (ei, ej) = (digits(x, i), digits(y, j));
            let (na, nb) = (trim_zeros(&x[i..ei]), trim_zeros(&y[j..ej]));
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != Equal {
                return ord;
            }
            (i, j) = (ei, ej);
        } else {
            let ord = x[i].to_ascii_lowercase().cmp(&y[j].to_ascii_lowercase());
            if ord != Equal {
                return ord;
            }
            i += 1;
            j += 1;
        }
    }
    (x.len() - i).cmp(&(y.len() - j))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_shared::model::{BootSpec, ConnectionState, Engine, Machine, TaskState, VmSpec};

    fn vm(name: &str, host: Uuid) -> VmInfo {
        VmInfo {
            id: Uuid::new_v4(),
            name: name.into(),
            host: Some(host),
            pool: None,
            datastore: "datastore1".into(),
            spec: VmSpec {
                vcpus: 1,
                memory_mib: 128,
                engine: Engine::Qemu,
                machine: Machine::Microvm,
                boot: BootSpec {
                    kernel: "k".into(),
                    initrd: None,
                    cmdline: String::new(),
                },
                allocation: Default::default(),
                disks: Vec::new(),
                template: false,
                nics: Vec::new(),
            },
            power_state: PowerState::PoweredOff,
            running_engine: None,
            pid: None,
            created_ms: 0,
        }
    }

    fn host(dc: Uuid) -> HostInfo {
        HostInfo {
            id: Uuid::new_v4(),
            name: "host1".into(),
            address: "127.0.0.1:9443".into(),
            datacenter: dc,
            cluster: None,
            thumbprint: String::new(),
            connection_state: ConnectionState::Connected,
            state_reason: None,
            facts: None,
        }
    }

    fn upsert(o: InventoryObject) -> InventoryChange {
        InventoryChange::Upsert {
            object: Box::new(o),
        }
    }

    #[test]
    fn deltas_update_the_inventory_in_place() {
        let dc = Uuid::new_v4();
        let h = host(dc);
        let a = vm("vm10", h.id);
        let b = vm("vm2", h.id);
        let mut m = InventoryModel::from_snapshot(Inventory {
            datacenters: vec![DatacenterInfo {
                id: dc,
                name: "dc".into(),
            }],
            hosts: vec![h.clone()],
            vms: vec![a.clone()],
            ..Default::default()
        });
        assert_eq!(m.vms_on_host(h.id), &[a.id]);

        m.apply(upsert(InventoryObject::Vm(b.clone())));
        assert_eq!(m.vms_on_host(h.id), &[b.id, a.id], "natural order");

        let mut on = a.clone();
        on.power_state = PowerState::PoweredOn;
        let layout = m.layout_generation;
        m.apply(upsert(InventoryObject::Vm(on)));
        assert_eq!(m.vms[&a.id].power_state, PowerState::PoweredOn);
        assert_eq!(m.layout_generation, layout, "a power change moves no row");
        assert_eq!(
            m.vms_on_host(h.id).len(),
            2,
            "an update is not a second entry"
        );
        assert_eq!(m.power_counts(Selection::Datacenter(dc)), (1, 2));

        m.apply(InventoryChange::Remove {
            kind: ObjectKind::Vm,
            id: b.id,
        });
        assert_eq!(m.vms_on_host(h.id), &[a.id]);
        assert!(!m.contains(Selection::Vm(b.id)));
    }

    #[test]
    fn a_finished_task_is_not_reopened_by_a_late_progress_update() {
        let mut log = TaskLog::default();
        let mut t = TaskInfo {
            id: Uuid::new_v4(),
            operation: "vm.powerOn".into(),
            description: "Power on".into(),
            target: None,
            state: TaskState::Running,
            progress: 50,
            step: None,
            error: None,
            result: None,
            user: "admin".into(),
            queued_ms: 0,
            completed_ms: None,
        };
        log.upsert(t.clone());
        t.state = TaskState::Success;
        t.progress = 100;
        log.upsert(t.clone());
        t.state = TaskState::Running;
        log.upsert(t);
        assert_eq!(log.len(), 1);
        assert_eq!(log.get(0).map(|t| t.state), Some(TaskState::Success));
    }

    #[test]
    fn names_sort_naturally() {
        let mut v = vec!["vm10", "vm2", "VM1", "web", "vm02a", "vm"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["vm", "VM1", "vm2", "vm02a", "vm10", "web"]);
    }
}
