//! The client's data model: the inventory kept current from `inventory.changed` deltas, and
//! the recent tasks and events. Plain structs, no UI and no networking.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use strata_shared::model::{
    ClusterInfo, DatacenterInfo, DatastoreInfo, EventInfo, HostInfo, Inventory, InventoryChange,
    InventoryObject, ObjectKind, PoolInfo, PoolUsage, PowerState, TaskInfo, VmInfo,
};
use uuid::Uuid;

use super::id_map::IdMap;

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
    pub vms: IdMap<VmInfo>,
    /// Resource pools by id.
    pub pools: BTreeMap<Uuid, PoolInfo>,
    /// Every VM id, sorted by VM name (then id): kept in order as VMs come, go and are
    /// renamed, so views listing VMs by name need no sort.
    vms_by_name: Vec<Uuid>,
    /// VM ids per host, sorted by VM name.
    vms_by_host: IdMap<Vec<Uuid>>,
    /// VM ids per resource pool, sorted by VM name.
    vms_by_pool: IdMap<Vec<Uuid>>,
    /// Child pool ids per parent (a pool, or the owning host or cluster for top-level
    /// pools), sorted by pool name.
    pool_children: IdMap<Vec<Uuid>>,
    /// Connected straight to one host agent: no clusters, resource pools or history.
    pub direct: bool,
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
            vms_by_name: Vec::new(),
            vms_by_host: IdMap::default(),
            vms_by_pool: IdMap::default(),
            pool_children: IdMap::default(),
            direct: false,
            generation: 1,
            layout_generation: 1,
        };
        m.reindex_all();
        m
    }

    fn reindex_all(&mut self) {
        let mut all: Vec<&VmInfo> = self.vms.values().collect();
        all.sort_by(|a, b| natural_cmp(&a.name, &b.name).then(a.id.cmp(&b.id)));
        self.vms_by_name = all.into_iter().map(|v| v.id).collect();
        self.vms_by_host.clear();
        self.vms_by_pool.clear();
        for vm in self.vms.values() {
            if let Some(h) = vm.host {
                self.vms_by_host.entry(h).or_default().push(vm.id);
            }
            if let Some(p) = vm.pool {
                self.vms_by_pool.entry(p).or_default().push(vm.id);
            }
        }
        let vms = &self.vms;
        for list in self
            .vms_by_host
            .values_mut()
            .chain(self.vms_by_pool.values_mut())
        {
            sort_vms(vms, list);
        }
        self.reindex_pools();
    }

    fn reindex_pools(&mut self) {
        self.pool_children.clear();
        for p in self.pools.values() {
            self.pool_children
                .entry(p.parent.unwrap_or(p.owner))
                .or_default()
                .push(p.id);
        }
        let pools = &self.pools;
        for list in self.pool_children.values_mut() {
            list.sort_by(|a, b| {
                let na = pools.get(a).map(|p| p.name.as_str()).unwrap_or("");
                let nb = pools.get(b).map(|p| p.name.as_str()).unwrap_or("");
                natural_cmp(na, nb)
            });
        }
    }

    /// Where VM `id` named `name` sits (or would sit) in [`Self::vms_by_name`]; every other
    /// entry's name is read from [`Self::vms`].
    fn name_slot(&self, name: &str, id: Uuid) -> Result<usize, usize> {
        self.vms_by_name.binary_search_by(|x| {
            let xn = if *x == id {
                name
            } else {
                self.vms.get(x).map(|v| v.name.as_str()).unwrap_or("")
            };
            natural_cmp(xn, name).then(x.cmp(&id))
        })
    }

    /// Takes VM `id` (whose indexed name is `name`) out of the name order.
    fn unindex_name(&mut self, name: &str, id: Uuid) {
        let at = match self.name_slot(name, id) {
            Ok(i) => Some(i),
            // Never expected; a linear search keeps the index right regardless.
            Err(_) => self.vms_by_name.iter().position(|x| *x == id),
        };
        if let Some(i) = at {
            self.vms_by_name.remove(i);
        }
    }

    /// Puts VM `id` named `name` into the name order.
    fn index_name(&mut self, name: &str, id: Uuid) {
        if let Err(i) = self.name_slot(name, id) {
            self.vms_by_name.insert(i, id);
        }
    }

    fn unlink_vm(&mut self, vm: Uuid, host: Option<Uuid>, pool: Option<Uuid>) {
        if let Some(list) = host.and_then(|h| self.vms_by_host.get_mut(&h)) {
            list.retain(|v| *v != vm);
        }
        if let Some(list) = pool.and_then(|p| self.vms_by_pool.get_mut(&p)) {
            list.retain(|v| *v != vm);
        }
    }

    fn link_vm(&mut self, vm: Uuid, host: Option<Uuid>, pool: Option<Uuid>) {
        let vms = &self.vms;
        if let Some(h) = host {
            let list = self.vms_by_host.entry(h).or_default();
            list.push(vm);
            sort_vms(vms, list);
        }
        if let Some(p) = pool {
            let list = self.vms_by_pool.entry(p).or_default();
            list.push(vm);
            sort_vms(vms, list);
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
                    let (name, owner, parent) = (p.name.clone(), p.owner, p.parent);
                    let old = self.pools.insert(p.id, p);
                    layout = old
                        .is_none_or(|o| o.name != name || o.owner != owner || o.parent != parent);
                    if layout {
                        self.reindex_pools();
                    }
                }
                InventoryObject::Vm(vm) => {
                    let id = vm.id;
                    let (new_host, new_pool) = (vm.host, vm.pool);
                    let new_name = vm.name.clone();
                    let old_name = self.vms.get(&id).map(|o| o.name.clone());
                    if old_name.as_deref() != Some(new_name.as_str()) {
                        if let Some(n) = &old_name {
                            self.unindex_name(n, id);
                        }
                    }
                    let old = self.vms.insert(id, vm);
                    if old_name.as_deref() != Some(new_name.as_str()) {
                        self.index_name(&new_name, id);
                    }
                    let relink = match &old {
                        Some(o) => {
                            o.host != new_host || o.pool != new_pool || o.name != self.vms[&id].name
                        }
                        None => true,
                    };
                    layout = relink
                        || old.as_ref().is_some_and(|o| {
                            o.spec != self.vms[&id].spec || o.datastore != self.vms[&id].datastore
                        });
                    if relink {
                        if let Some(o) = &old {
                            self.unlink_vm(id, o.host, o.pool);
                        }
                        self.link_vm(id, new_host, new_pool);
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
                    if let Some(name) = self.vms.get(&id).map(|v| v.name.clone()) {
                        self.unindex_name(&name, id);
                    }
                    if let Some(old) = self.vms.remove(&id) {
                        self.unlink_vm(id, old.host, old.pool);
                    }
                }
                ObjectKind::Pool => {
                    if let Some(old) = self.pools.remove(&id) {
                        // The server moves a deleted pool's child pools to its parent but
                        // announces only the VMs it moved: do the same for the pools here.
                        for p in self.pools.values_mut() {
                            if p.parent == Some(id) {
                                p.parent = old.parent;
                            }
                        }
                        self.vms_by_pool.remove(&id);
                        self.reindex_pools();
                    }
                }
                ObjectKind::User => layout = false,
            },
        }
        if layout {
            self.layout_generation += 1;
        }
    }

    /// Every VM, sorted by name.
    pub fn vms_by_name(&self) -> &[Uuid] {
        &self.vms_by_name
    }

    /// VMs on a host, sorted by name.
    pub fn vms_on_host(&self, host: Uuid) -> &[Uuid] {
        self.vms_by_host
            .get(&host)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// VMs directly in a resource pool, sorted by name.
    pub fn vms_in_pool(&self, pool: Uuid) -> &[Uuid] {
        self.vms_by_pool
            .get(&pool)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The pools directly under a pool, or the top-level pools of a standalone host or
    /// cluster, sorted by name.
    pub fn child_pools(&self, parent: Uuid) -> &[Uuid] {
        self.pool_children
            .get(&parent)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether a VM sits in the root of its host's or cluster's pool tree (no pool, or a
    /// pool this client does not know).
    pub fn vm_in_root(&self, vm: &VmInfo) -> bool {
        vm.pool.is_none_or(|p| !self.pools.contains_key(&p))
    }

    /// VMs of a host that are in no resource pool, sorted by name.
    pub fn root_vms_on_host(&self, host: Uuid) -> impl Iterator<Item = &VmInfo> + '_ {
        self.vms_on_host(host)
            .iter()
            .filter_map(|id| self.vms.get(id))
            .filter(|v| self.vm_in_root(v))
    }

    /// The VMs whose directory is on a datastore (a VM on one of the hosts that mount it,
    /// on a datastore of that name), sorted by name.
    pub fn vms_on_datastore(&self, datastore: Uuid) -> Vec<Uuid> {
        let Some(ds) = self.datastores.get(&datastore) else {
            return Vec::new();
        };
        let mut v: Vec<&VmInfo> = ds
            .hosts
            .iter()
            .flat_map(|h| self.vms_on_host(*h))
            .filter_map(|id| self.vms.get(id))
            .filter(|v| v.datastore == ds.name)
            .collect();
        v.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        v.into_iter().map(|v| v.id).collect()
    }

    /// The datastores a host mounts, sorted by name.
    pub fn datastores_of_host(&self, host: Uuid) -> Vec<&DatastoreInfo> {
        let mut v: Vec<&DatastoreInfo> = self
            .datastores
            .values()
            .filter(|d| d.hosts.contains(&host))
            .collect();
        v.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        v
    }

    /// Datastores of a datacenter, sorted by name.
    pub fn datastores_in(&self, datacenter: Uuid) -> Vec<&DatastoreInfo> {
        let mut v: Vec<&DatastoreInfo> = self
            .datastores
            .values()
            .filter(|d| d.datacenter == datacenter)
            .collect();
        v.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        v
    }

    /// The datacenter an object is in.
    pub fn datacenter_of(&self, sel: Selection) -> Option<Uuid> {
        match sel {
            Selection::Datacenter(d) => Some(d),
            Selection::Cluster(c) => self.clusters.get(&c).map(|c| c.datacenter),
            Selection::Host(h) => self.hosts.get(&h).map(|h| h.datacenter),
            Selection::Pool(p) => {
                let owner = self.pools.get(&p)?.owner;
                self.datacenter_of(Selection::Cluster(owner))
                    .or_else(|| self.datacenter_of(Selection::Host(owner)))
            }
            Selection::Vm(v) => self
                .vms
                .get(&v)
                .and_then(|v| v.host)
                .and_then(|h| self.datacenter_of(Selection::Host(h))),
            Selection::Datastore(d) => self.datastores.get(&d).map(|d| d.datacenter),
        }
    }

    /// Whether a VM of this name is in the datacenter (`except` itself).
    pub fn vm_name_taken(&self, datacenter: Uuid, name: &str, except: Option<Uuid>) -> bool {
        self.vms.values().any(|v| {
            v.name == name
                && Some(v.id) != except
                && v.host
                    .and_then(|h| self.hosts.get(&h))
                    .is_some_and(|h| h.datacenter == datacenter)
        })
    }

    /// The standalone host or cluster whose resource-pool tree holds an object (a host in a
    /// cluster gives its cluster; a datacenter or datastore gives none).
    pub fn pool_owner(&self, sel: Selection) -> Option<Uuid> {
        match sel {
            Selection::Datacenter(_) | Selection::Datastore(_) => None,
            Selection::Cluster(c) => Some(c),
            Selection::Host(h) => self.hosts.get(&h).map(|h| h.cluster.unwrap_or(h.id)),
            Selection::Pool(p) => self.pools.get(&p).map(|p| p.owner),
            Selection::Vm(v) => self
                .vms
                .get(&v)
                .and_then(|v| v.host)
                .and_then(|h| self.pool_owner(Selection::Host(h))),
        }
    }

    /// The direct children of a resource-pool tree node (a standalone host, a cluster or a
    /// pool): its pools, then its VMs, each sorted by name.
    pub fn allocation_children(&self, sel: Selection) -> (Vec<Uuid>, Vec<Uuid>) {
        let pools = self.child_pools(sel.id()).to_vec();
        let vms: Vec<Uuid> = match sel {
            Selection::Pool(p) => self.vms_in_pool(p).to_vec(),
            Selection::Host(h) => self.root_vms_on_host(h).map(|v| v.id).collect(),
            Selection::Cluster(c) => {
                let mut v: Vec<&VmInfo> = self
                    .hosts_in_cluster(c)
                    .iter()
                    .flat_map(|h| self.root_vms_on_host(h.id))
                    .collect();
                v.sort_by(|a, b| natural_cmp(&a.name, &b.name));
                v.into_iter().map(|v| v.id).collect()
            }
            _ => Vec::new(),
        };
        (pools, vms)
    }

    /// The parent of a pool in words: its parent pool's name, or the host or cluster.
    pub fn pool_parent_name(&self, owner: Uuid, parent: Option<Uuid>) -> String {
        match parent {
            Some(p) => self
                .pools
                .get(&p)
                .map(|p| format!("resource pool {}", p.name))
                .unwrap_or_else(|| "its parent pool".into()),
            None => {
                if let Some(c) = self.clusters.get(&owner) {
                    format!("cluster {}", c.name)
                } else if let Some(h) = self.hosts.get(&owner) {
                    format!("host {}", h.name)
                } else {
                    "the root".into()
                }
            }
        }
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

    /// The objects whose events and tasks an object's tabs show: itself, the VMs under it
    /// and, for a cluster, its hosts; `None` for a datacenter (everything).
    pub fn scope_of(&self, sel: Selection) -> Option<std::collections::HashSet<Uuid>> {
        if matches!(sel, Selection::Datacenter(_)) {
            return None;
        }
        let mut ids: std::collections::HashSet<Uuid> = self.vms_under(sel).into_iter().collect();
        ids.insert(sel.id());
        if let Selection::Cluster(c) = sel {
            ids.extend(self.hosts_in_cluster(c).iter().map(|h| h.id));
        }
        Some(ids)
    }

    /// The VMs under an object (a datacenter, cluster, host, pool or datastore; a VM gives
    /// itself).
    pub fn vms_under(&self, sel: Selection) -> Vec<Uuid> {
        match sel {
            Selection::Vm(id) => vec![id],
            Selection::Datastore(d) => self.vms_on_datastore(d),
            Selection::Pool(p) => {
                let mut out = Vec::new();
                let mut stack = vec![p];
                // Bounded walk: a corrupt parent cycle cannot loop forever.
                let mut seen = std::collections::HashSet::new();
                while let Some(at) = stack.pop() {
                    if !seen.insert(at) {
                        continue;
                    }
                    out.extend_from_slice(self.vms_in_pool(at));
                    stack.extend_from_slice(self.child_pools(at));
                }
                out
            }
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
            Selection::Pool(id) => self.pools.get(&id).map(|o| o.name.as_str()),
            Selection::Vm(id) => self.vms.get(&id).map(|o| o.name.as_str()),
            Selection::Datastore(id) => self.datastores.get(&id).map(|o| o.name.as_str()),
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
    /// A resource pool.
    Pool(Uuid),
    /// A VM.
    Vm(Uuid),
    /// A datastore.
    Datastore(Uuid),
}

impl Selection {
    /// The object's id.
    pub fn id(self) -> Uuid {
        match self {
            Selection::Datacenter(id)
            | Selection::Cluster(id)
            | Selection::Host(id)
            | Selection::Pool(id)
            | Selection::Vm(id)
            | Selection::Datastore(id) => id,
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
    /// Active alarms.
    pub alarms: crate::app::alarms::AlarmSet,
    /// Resource-pool usage per standalone host or cluster.
    pub usage: UsageCache,
    /// Performance samples per VM or host.
    pub stats: crate::app::stats_cache::StatsCache,
}

/// How often usage shown on screen is fetched again while the inventory keeps changing.
pub const USAGE_REFRESH: Duration = Duration::from_millis(1000);
/// After this long without an answer a usage request counts as lost.
const USAGE_LOST: Duration = Duration::from_secs(15);

/// One owner's `pool.usage`, with when it was asked for.
#[derive(Debug, Clone)]
struct UsageEntry {
    result: Option<Result<Vec<PoolUsage>, String>>,
    /// Inventory generation when last asked.
    generation: u64,
    asked_at: Instant,
    in_flight: bool,
    stale: bool,
}

/// `pool.usage` answers per standalone host or cluster. Views say what they show with
/// [`UsageCache::wants_refresh`]; the app fetches on a tokio task and stores the answer.
#[derive(Debug, Default, Clone)]
pub struct UsageCache {
    entries: HashMap<Uuid, UsageEntry>,
}

impl UsageCache {
    /// Whether the usage of `owner` should be fetched (again) now: never fetched, the
    /// inventory changed since (at most once per [`USAGE_REFRESH`]), or marked stale.
    pub fn wants_refresh(&self, owner: Uuid, generation: u64, now: Instant) -> bool {
        match self.entries.get(&owner) {
            None => true,
            Some(e) if e.in_flight => now.duration_since(e.asked_at) > USAGE_LOST,
            Some(e) => {
                e.stale
                    || (e.generation != generation
                        && now.duration_since(e.asked_at) >= USAGE_REFRESH)
            }
        }
    }

    /// Notes that a fetch of `owner` started.
    pub fn asked(&mut self, owner: Uuid, generation: u64, now: Instant) {
        let e = self.entries.entry(owner).or_insert(UsageEntry {
            result: None,
            generation,
            asked_at: now,
            in_flight: true,
            stale: false,
        });
        e.generation = generation;
        e.asked_at = now;
        e.in_flight = true;
        e.stale = false;
    }

    /// Stores an answer.
    pub fn store(&mut self, owner: Uuid, result: Result<Vec<PoolUsage>, String>) {
        if let Some(e) = self.entries.get_mut(&owner) {
            e.in_flight = false;
            // Keep the last good figures when a refresh fails.
            if result.is_ok() || !matches!(e.result, Some(Ok(_))) {
                e.result = Some(result);
            }
        }
    }

    /// Marks everything for a fetch at the next chance (after a change this client made).
    pub fn invalidate(&mut self) {
        for e in self.entries.values_mut() {
            e.stale = true;
        }
    }

    /// The last answer for `owner`: `None` while loading, else the figures or why not.
    pub fn get(&self, owner: Uuid) -> Option<&Result<Vec<PoolUsage>, String>> {
        self.entries.get(&owner).and_then(|e| e.result.as_ref())
    }

    /// One node's figures: a pool, or the owner's root (`node == owner`).
    pub fn node(&self, owner: Uuid, node: Uuid) -> Option<&PoolUsage> {
        match self.get(owner) {
            Some(Ok(v)) => v.iter().find(|u| u.id == node),
            _ => None,
        }
    }
}

fn sort_vms(vms: &IdMap<VmInfo>, list: &mut [Uuid]) {
    list.sort_by(|a, b| {
        let na = vms.get(a).map(|v| v.name.as_str()).unwrap_or("");
        let nb = vms.get(b).map(|v| v.name.as_str()).unwrap_or("");
        natural_cmp(na, nb)
    });
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
    use crate::app::test_fixtures::{host, vm};
    use strata_shared::model::TaskState;

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
    fn an_objects_event_and_task_scope_is_itself_its_vms_and_a_clusters_hosts() {
        let dc = Uuid::new_v4();
        let cl = strata_shared::model::ClusterInfo {
            id: Uuid::new_v4(),
            name: "c".into(),
            datacenter: dc,
        };
        let mut h = host(dc);
        h.cluster = Some(cl.id);
        let other = host(dc);
        let a = vm("a", h.id);
        let b = vm("b", other.id);
        let m = InventoryModel::from_snapshot(Inventory {
            datacenters: vec![DatacenterInfo {
                id: dc,
                name: "dc".into(),
            }],
            clusters: vec![cl.clone()],
            hosts: vec![h.clone(), other.clone()],
            vms: vec![a.clone(), b.clone()],
            ..Default::default()
        });
        assert_eq!(m.scope_of(Selection::Datacenter(dc)), None, "everything");
        let cluster = m.scope_of(Selection::Cluster(cl.id)).unwrap();
        assert_eq!(
            cluster,
            [cl.id, h.id, a.id].into_iter().collect(),
            "the cluster, its host and that host's VM"
        );
        let host_scope = m.scope_of(Selection::Host(other.id)).unwrap();
        assert_eq!(host_scope, [other.id, b.id].into_iter().collect());
        assert_eq!(
            m.scope_of(Selection::Vm(a.id)).unwrap(),
            [a.id].into_iter().collect()
        );
    }

    #[test]
    fn the_name_order_follows_creations_renames_and_removals() {
        let dc = Uuid::new_v4();
        let h = host(dc);
        let vms: Vec<VmInfo> = ["b", "a10", "a2", "B"]
            .iter()
            .map(|n| vm(n, h.id))
            .collect();
        let mut m = InventoryModel::from_snapshot(Inventory {
            hosts: vec![h.clone()],
            vms: vms[..3].to_vec(),
            ..Default::default()
        });
        let names = |m: &InventoryModel| -> Vec<String> {
            m.vms_by_name()
                .iter()
                .map(|id| m.vms[id].name.clone())
                .collect()
        };
        assert_eq!(names(&m), ["a2", "a10", "b"]);
        m.apply(upsert(InventoryObject::Vm(vms[3].clone())));
        assert_eq!(names(&m).len(), 4);
        let mut renamed = vms[0].clone();
        renamed.name = "a1".into();
        m.apply(upsert(InventoryObject::Vm(renamed)));
        assert_eq!(names(&m), ["a1", "a2", "a10", "B"]);
        let mut on = vms[2].clone();
        on.power_state = PowerState::PoweredOn;
        m.apply(upsert(InventoryObject::Vm(on)));
        assert_eq!(
            names(&m),
            ["a1", "a2", "a10", "B"],
            "a state change keeps the order"
        );
        m.apply(InventoryChange::Remove {
            kind: ObjectKind::Vm,
            id: vms[1].id,
        });
        assert_eq!(names(&m), ["a1", "a2", "B"]);
        let mut rebuilt = m.clone();
        rebuilt.reindex_all();
        assert_eq!(rebuilt.vms_by_name(), m.vms_by_name());
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
