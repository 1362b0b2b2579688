//! Datacenters, clusters, hosts, datastores and VMs.

use strata_shared::model::{
    ClusterInfo, ConnectionState, DatacenterInfo, DatastoreFacts, DatastoreInfo, DatastoreProblem,
    HostFacts, HostInfo, PowerState, VmInfo, VmSpec,
};
use uuid::Uuid;

use super::{uuid, Db, DbError};

/// A host with the credential the manager uses on it.
#[derive(Clone)]
pub struct HostRow {
    /// The host.
    pub info: HostInfo,
    /// User name on the agent.
    pub agent_username: String,
    /// Key on the agent.
    pub agent_key: String,
}

impl std::fmt::Debug for HostRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRow")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn conn_state(s: &str) -> ConnectionState {
    match s {
        "connected" => ConnectionState::Connected,
        "notTrusted" => ConnectionState::NotTrusted,
        _ => ConnectionState::Disconnected,
    }
}

/// Stored power state name.
pub fn power_str(p: PowerState) -> &'static str {
    match p {
        PowerState::PoweredOn => "poweredOn",
        PowerState::PoweredOff => "poweredOff",
        PowerState::Paused => "paused",
        PowerState::Suspended => "suspended",
        PowerState::Unknown => "unknown",
    }
}

fn power(s: &str) -> PowerState {
    match s {
        "poweredOn" => PowerState::PoweredOn,
        "poweredOff" => PowerState::PoweredOff,
        "paused" => PowerState::Paused,
        "suspended" => PowerState::Suspended,
        _ => PowerState::Unknown,
    }
}

type HostTuple = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);
const HOST_COLS: &str = "id, name, address, datacenter_id, cluster_id, thumbprint, agent_username, agent_key, connection_state, state_reason, facts";

fn host_row(t: HostTuple) -> Result<HostRow, DbError> {
    let (
        id,
        name,
        address,
        dc,
        cluster,
        thumbprint,
        agent_username,
        agent_key,
        state,
        reason,
        facts,
    ) = t;
    let facts: Option<HostFacts> = match facts {
        Some(f) => Some(serde_json::from_str(&f).map_err(|e| DbError::Corrupt(e.to_string()))?),
        None => None,
    };
    Ok(HostRow {
        info: HostInfo {
            id: uuid(&id)?,
            name,
            address,
            datacenter: uuid(&dc)?,
            cluster: cluster.as_deref().map(uuid).transpose()?,
            thumbprint,
            connection_state: conn_state(&state),
            state_reason: reason,
            facts,
        },
        agent_username,
        agent_key,
    })
}

type VmTuple = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
);
const VM_COLS: &str = "id, name, host_id, datastore, spec, power_state, created_ms, pool_id";

fn vm_row(t: VmTuple) -> Result<VmInfo, DbError> {
    let (id, name, host, datastore, spec, state, created_ms, pool) = t;
    let spec: VmSpec = serde_json::from_str(&spec).map_err(|e| DbError::Corrupt(e.to_string()))?;
    Ok(VmInfo {
        id: uuid(&id)?,
        name,
        host: Some(uuid(&host)?),
        pool: pool.as_deref().map(uuid).transpose()?,
        datastore,
        spec,
        power_state: power(&state),
        running_engine: None,
        pid: None,
        created_ms,
    })
}

impl Db {
    /// The datacenter new objects go to, created on first use.
    pub async fn default_datacenter(&self) -> Result<DatacenterInfo, DbError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT id, name FROM datacenters ORDER BY rowid LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        if let Some((id, name)) = row {
            return Ok(DatacenterInfo {
                id: uuid(&id)?,
                name,
            });
        }
        let dc = DatacenterInfo {
            id: Uuid::new_v4(),
            name: "Datacenter".into(),
        };
        sqlx::query("INSERT INTO datacenters (id, name) VALUES ($1, $2)")
            .bind(dc.id.to_string())
            .bind(&dc.name)
            .execute(&self.pool)
            .await?;
        Ok(dc)
    }

    /// All datacenters.
    pub async fn datacenters(&self) -> Result<Vec<DatacenterInfo>, DbError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, name FROM datacenters ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(id, name)| {
                Ok(DatacenterInfo {
                    id: uuid(&id)?,
                    name,
                })
            })
            .collect()
    }

    /// Adds a cluster.
    pub async fn insert_cluster(&self, c: &ClusterInfo) -> Result<(), DbError> {
        sqlx::query("INSERT INTO clusters (id, name, datacenter_id) VALUES ($1, $2, $3)")
            .bind(c.id.to_string())
            .bind(&c.name)
            .bind(c.datacenter.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// All clusters.
    pub async fn clusters(&self) -> Result<Vec<ClusterInfo>, DbError> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT id, name, datacenter_id FROM clusters ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(id, name, dc)| {
                Ok(ClusterInfo {
                    id: uuid(&id)?,
                    name,
                    datacenter: uuid(&dc)?,
                })
            })
            .collect()
    }

    /// Adds a host.
    pub async fn insert_host(&self, h: &HostRow) -> Result<(), DbError> {
        let facts = h
            .info
            .facts
            .as_ref()
            .map(|f| serde_json::to_string(f).unwrap_or_default());
        sqlx::query(&format!(
            "INSERT INTO hosts ({HOST_COLS}, added_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(h.info.id.to_string())
        .bind(&h.info.name)
        .bind(&h.info.address)
        .bind(h.info.datacenter.to_string())
        .bind(h.info.cluster.map(|c| c.to_string()))
        .bind(&h.info.thumbprint)
        .bind(&h.agent_username)
        .bind(&h.agent_key)
        .bind(h.info.connection_state.to_string())
        .bind(&h.info.state_reason)
        .bind(facts)
        .bind(strata_shared::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One host.
    pub async fn host(&self, id: Uuid) -> Result<HostRow, DbError> {
        let t: HostTuple = sqlx::query_as(&format!("SELECT {HOST_COLS} FROM hosts WHERE id = $1"))
            .bind(id.to_string())
            .fetch_one(&self.pool)
            .await?;
        host_row(t)
    }

    /// All hosts.
    pub async fn hosts(&self) -> Result<Vec<HostRow>, DbError> {
        let rows: Vec<HostTuple> =
            sqlx::query_as(&format!("SELECT {HOST_COLS} FROM hosts ORDER BY name"))
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(host_row).collect()
    }

    /// Records a host's connection state; true when it changed.
    pub async fn set_host_state(
        &self,
        id: Uuid,
        state: ConnectionState,
        reason: Option<&str>,
    ) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE hosts SET connection_state = $1, state_reason = $2 WHERE id = $3 AND (connection_state <> $4 OR COALESCE(state_reason, '') <> COALESCE($5, ''))",
        )
        .bind(state.to_string())
        .bind(reason)
        .bind(id.to_string())
        .bind(state.to_string())
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Marks every host disconnected (at start-up, before the links connect again).
    pub async fn reset_host_states(&self, reason: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE hosts SET connection_state = 'disconnected', state_reason = $1 WHERE connection_state = 'connected'")
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores what the agent reports and its datastores.
    pub async fn set_host_facts(
        &self,
        id: Uuid,
        datacenter: Uuid,
        facts: &HostFacts,
    ) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE hosts SET facts = $1, name = $2 WHERE id = $3")
            .bind(serde_json::to_string(facts).map_err(|e| DbError::Corrupt(e.to_string()))?)
            .bind(&facts.hostname)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        // What the host reports now replaces what it reported before.
        sqlx::query("DELETE FROM datastores WHERE host_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        for d in &facts.datastores {
            upsert_datastore(&mut tx, id, datacenter, d).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes a host (its datastores go with it).
    pub async fn delete_host(&self, id: Uuid) -> Result<(), DbError> {
        sqlx::query("DELETE FROM hosts WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// All datastores, one object per volume with the hosts that mount it.
    pub async fn datastores(&self) -> Result<Vec<DatastoreInfo>, DbError> {
        type Row = (String, String, String, String, i64, i64, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, name, host_id, datacenter_id, capacity_bytes, free_bytes, problem FROM datastores ORDER BY name, id, host_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<DatastoreInfo> = Vec::new();
        for (id, name, host, dc, cap, free, problem) in rows {
            let id = uuid(&id)?;
            let host = uuid(&host)?;
            let i = match out.iter().position(|d| d.id == id) {
                Some(i) => i,
                None => {
                    out.push(DatastoreInfo {
                        id,
                        name,
                        datacenter: uuid(&dc)?,
                        capacity_bytes: 0,
                        free_bytes: 0,
                        hosts: Vec::new(),
                        inaccessible_on: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            let d = &mut out[i];
            d.hosts.push(host);
            match problem {
                Some(problem) => d.inaccessible_on.push(DatastoreProblem { host, problem }),
                None => {
                    d.capacity_bytes = d.capacity_bytes.max(cap.max(0) as u64);
                    d.free_bytes = d.free_bytes.max(free.max(0) as u64);
                }
            }
        }
        Ok(out)
    }

    /// The hosts that mount a datastore (by volume id or name): (host, the host's name for
    /// it, its problem there).
    pub async fn datastore_mounts(
        &self,
        key: &str,
    ) -> Result<Vec<(Uuid, String, Option<String>)>, DbError> {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT host_id, name, problem FROM datastores WHERE id = $1 OR name = $2 ORDER BY host_id",
        )
        .bind(key)
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(h, n, p)| Ok((uuid(&h)?, n, p)))
            .collect()
    }

    /// Adds a VM.
    pub async fn insert_vm(&self, datacenter: Uuid, vm: &VmInfo) -> Result<(), DbError> {
        let host = vm
            .host
            .ok_or_else(|| DbError::Corrupt("VM without host".into()))?;
        sqlx::query(&format!(
            "INSERT INTO vms ({VM_COLS}, datacenter_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(vm.id.to_string())
        .bind(&vm.name)
        .bind(host.to_string())
        .bind(&vm.datastore)
        .bind(serde_json::to_string(&vm.spec).map_err(|e| DbError::Corrupt(e.to_string()))?)
        .bind(power_str(vm.power_state))
        .bind(vm.created_ms)
        .bind(vm.pool.map(|p| p.to_string()))
        .bind(datacenter.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One VM.
    pub async fn vm(&self, id: Uuid) -> Result<VmInfo, DbError> {
        let t: VmTuple = sqlx::query_as(&format!("SELECT {VM_COLS} FROM vms WHERE id = $1"))
            .bind(id.to_string())
            .fetch_one(&self.pool)
            .await?;
        vm_row(t)
    }

    /// True when a VM of this name exists in the datacenter.
    pub async fn vm_name_taken(&self, datacenter: Uuid, name: &str) -> Result<bool, DbError> {
        let n: Option<(String,)> =
            sqlx::query_as("SELECT id FROM vms WHERE datacenter_id = $1 AND name = $2")
                .bind(datacenter.to_string())
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(n.is_some())
    }

    /// VMs, optionally of one host.
    pub async fn vms(&self, host: Option<Uuid>) -> Result<Vec<VmInfo>, DbError> {
        let rows: Vec<VmTuple> = match host {
            Some(h) => {
                sqlx::query_as(&format!(
                    "SELECT {VM_COLS} FROM vms WHERE host_id = $1 ORDER BY name"
                ))
                .bind(h.to_string())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as(&format!("SELECT {VM_COLS} FROM vms ORDER BY name"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.into_iter().map(vm_row).collect()
    }

    /// Records a VM's power state; true when it changed.
    pub async fn set_vm_power(&self, id: Uuid, state: PowerState) -> Result<bool, DbError> {
        let r = sqlx::query("UPDATE vms SET power_state = $1 WHERE id = $2 AND power_state <> $3")
            .bind(power_str(state))
            .bind(id.to_string())
            .bind(power_str(state))
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Changes a VM's stored configuration with `f` (one transaction, so concurrent
    /// changes to different parts of the spec do not undo each other).
    pub async fn update_vm_spec(
        &self,
        id: Uuid,
        f: impl FnOnce(&mut VmSpec),
    ) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let (text,): (String,) = sqlx::query_as(&format!(
            "SELECT spec FROM vms WHERE id = $1{}",
            self.backend().for_update()
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(DbError::NotFound)?;
        let mut spec: VmSpec =
            serde_json::from_str(&text).map_err(|e| DbError::Corrupt(e.to_string()))?;
        f(&mut spec);
        sqlx::query("UPDATE vms SET spec = $1 WHERE id = $2")
            .bind(serde_json::to_string(&spec).map_err(|e| DbError::Corrupt(e.to_string()))?)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Names a VM `name` (unique in its datacenter: `Duplicate` otherwise) and changes its
    /// stored configuration with `f`, in one transaction.
    pub async fn reconfigure_vm(
        &self,
        id: Uuid,
        name: &str,
        f: impl FnOnce(&mut VmSpec),
    ) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let (text,): (String,) = sqlx::query_as(&format!(
            "SELECT spec FROM vms WHERE id = $1{}",
            self.backend().for_update()
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(DbError::NotFound)?;
        let mut spec: VmSpec =
            serde_json::from_str(&text).map_err(|e| DbError::Corrupt(e.to_string()))?;
        f(&mut spec);
        sqlx::query("UPDATE vms SET name = $1, spec = $2 WHERE id = $3")
            .bind(name)
            .bind(serde_json::to_string(&spec).map_err(|e| DbError::Corrupt(e.to_string()))?)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a VM.
    pub async fn delete_vm(&self, id: Uuid) -> Result<(), DbError> {
        sqlx::query("DELETE FROM vms WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

async fn upsert_datastore(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    host: Uuid,
    datacenter: Uuid,
    d: &DatastoreFacts,
) -> Result<(), DbError> {
    // An agent that reports no volume id gets one per host and name.
    let id = if d.id.is_nil() {
        Uuid::new_v5(&host, d.name.as_bytes())
    } else {
        d.id
    };
    sqlx::query(
        "INSERT INTO datastores (id, host_id, name, datacenter_id, capacity_bytes, free_bytes, problem) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id, host_id) DO UPDATE SET name = excluded.name, capacity_bytes = excluded.capacity_bytes,
           free_bytes = excluded.free_bytes, problem = excluded.problem",
    )
    .bind(id.to_string())
    .bind(host.to_string())
    .bind(&d.name)
    .bind(datacenter.to_string())
    .bind(i64::try_from(d.capacity_bytes).unwrap_or(i64::MAX))
    .bind(i64::try_from(d.free_bytes).unwrap_or(i64::MAX))
    .bind(if d.accessible {
        None
    } else {
        Some(d.problem.clone().unwrap_or_else(|| "not accessible".into()))
    })
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use strata_shared::model::{BootSpec, Engine, Machine};

    use super::super::testing::{on_both_backends, TestDb};
    use super::*;

    pub(crate) fn facts(id: Uuid, hostname: &str, datastores: Vec<DatastoreFacts>) -> HostFacts {
        HostFacts {
            id,
            hostname: hostname.into(),
            cpu_count: 2,
            cpu_mhz: 1000,
            memory_mib: 1000,
            hardware_virtualization: false,
            engines: vec![Engine::Qemu],
            default_engine: Engine::Qemu,
            qemu_version: None,
            agent_version: "t".into(),
            datastores,
            managed_by: None,
        }
    }

    pub(crate) fn host_row(id: Uuid, name: &str, dc: Uuid) -> HostRow {
        HostRow {
            info: HostInfo {
                id,
                name: name.into(),
                address: format!("{name}:8444"),
                datacenter: dc,
                cluster: None,
                thumbprint: "AA:BB".into(),
                connection_state: ConnectionState::Connected,
                state_reason: None,
                facts: None,
            },
            agent_username: "root".into(),
            agent_key: "k".into(),
        }
    }

    pub(crate) fn vm_info(name: &str, host: Uuid) -> VmInfo {
        VmInfo {
            id: Uuid::new_v4(),
            name: name.into(),
            host: Some(host),
            pool: None,
            datastore: "datastore1".into(),
            spec: VmSpec {
                vcpus: 1,
                memory_mib: 256,
                engine: Engine::Qemu,
                machine: Machine::Microvm,
                boot: BootSpec {
                    kernel: "/k".into(),
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
            created_ms: 1_234,
        }
    }

    fn ds(id: Uuid, name: &str, cap: u64, accessible: bool) -> DatastoreFacts {
        DatastoreFacts {
            id,
            name: name.into(),
            path: format!("/ds/{name}"),
            capacity_bytes: cap,
            free_bytes: cap / 2,
            accessible,
            problem: (!accessible).then(|| "I/O error".into()),
        }
    }

    on_both_backends!(inventory_round_trip, concurrent_spec_changes_are_all_kept);

    async fn inventory_round_trip(db: TestDb) {
        let dc = db.default_datacenter().await.unwrap();
        assert_eq!(db.default_datacenter().await.unwrap(), dc, "created once");
        assert_eq!(db.datacenters().await.unwrap(), vec![dc.clone()]);
        let cl = ClusterInfo {
            id: Uuid::new_v4(),
            name: "Prod".into(),
            datacenter: dc.id,
        };
        db.insert_cluster(&cl).await.unwrap();
        assert!(matches!(
            db.insert_cluster(&ClusterInfo {
                id: Uuid::new_v4(),
                ..cl.clone()
            })
            .await,
            Err(DbError::Duplicate)
        ));
        assert_eq!(db.clusters().await.unwrap(), vec![cl.clone()]);

        // Names sort bytewise on both backends ("B" before "a").
        let (ha, hb) = (Uuid::new_v4(), Uuid::new_v4());
        db.insert_host(&host_row(ha, "a-host", dc.id))
            .await
            .unwrap();
        let mut b = host_row(hb, "B-host", dc.id);
        b.info.cluster = Some(cl.id);
        db.insert_host(&b).await.unwrap();
        let names: Vec<String> = db
            .hosts()
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.info.name)
            .collect();
        assert_eq!(names, ["B-host", "a-host"]);
        let got = db.host(hb).await.unwrap();
        assert_eq!((got.info, got.agent_key), (b.info.clone(), "k".into()));
        assert!(matches!(
            db.host(Uuid::new_v4()).await,
            Err(DbError::NotFound)
        ));

        assert!(db
            .set_host_state(ha, ConnectionState::Disconnected, Some("gone"))
            .await
            .unwrap());
        assert!(!db
            .set_host_state(ha, ConnectionState::Disconnected, Some("gone"))
            .await
            .unwrap());
        assert!(db
            .set_host_state(ha, ConnectionState::Disconnected, None)
            .await
            .unwrap());
        db.reset_host_states("restart").await.unwrap();
        let hb_now = db.host(hb).await.unwrap().info;
        assert_eq!(
            (hb_now.connection_state, hb_now.state_reason.as_deref()),
            (ConnectionState::Disconnected, Some("restart"))
        );

        // A shared datastore: one object, both hosts; one cannot reach it.
        let shared = Uuid::new_v4();
        let fa = facts(ha, "a-host", vec![ds(shared, "shared", 1000, true)]);
        db.set_host_facts(ha, dc.id, &fa).await.unwrap();
        let fb = facts(
            hb,
            "B-host",
            vec![
                ds(shared, "shared", 1000, false),
                ds(Uuid::nil(), "local", u64::MAX, true),
            ],
        );
        db.set_host_facts(hb, dc.id, &fb).await.unwrap();
        assert_eq!(db.host(ha).await.unwrap().info.facts, Some(fa.clone()));
        let all = db.datastores().await.unwrap();
        assert_eq!(all.len(), 2);
        let local = all.iter().find(|d| d.name == "local").unwrap();
        assert_eq!(local.capacity_bytes, i64::MAX as u64, "clamped to i64");
        let sh = all.iter().find(|d| d.id == shared).unwrap();
        assert_eq!(sh.hosts.len(), 2);
        assert_eq!(sh.capacity_bytes, 1000);
        assert_eq!(sh.inaccessible_on.len(), 1);
        assert_eq!(sh.inaccessible_on[0].host, hb);
        let mounts = db.datastore_mounts("shared").await.unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(
            db.datastore_mounts(&shared.to_string()).await.unwrap(),
            mounts
        );
        // Facts replace what the host reported before.
        db.set_host_facts(hb, dc.id, &facts(hb, "B-host", vec![]))
            .await
            .unwrap();
        assert_eq!(db.datastore_mounts("shared").await.unwrap().len(), 1);

        // VMs.
        let v1 = vm_info("web", ha);
        db.insert_vm(dc.id, &v1).await.unwrap();
        assert!(matches!(
            db.insert_vm(
                dc.id,
                &VmInfo {
                    id: Uuid::new_v4(),
                    ..v1.clone()
                }
            )
            .await,
            Err(DbError::Duplicate)
        ));
        // Foreign keys are enforced (a VM on no known host).
        assert!(db
            .insert_vm(dc.id, &vm_info("orphan", Uuid::new_v4()))
            .await
            .is_err());
        let v2 = vm_info("Db", hb);
        db.insert_vm(dc.id, &v2).await.unwrap();
        assert_eq!(db.vm(v1.id).await.unwrap(), v1);
        assert!(db.vm_name_taken(dc.id, "web").await.unwrap());
        assert!(!db.vm_name_taken(dc.id, "WEB").await.unwrap());
        let names: Vec<String> = db
            .vms(None)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["Db", "web"]);
        assert_eq!(db.vms(Some(hb)).await.unwrap(), vec![v2.clone()]);
        assert!(db.set_vm_power(v1.id, PowerState::PoweredOn).await.unwrap());
        assert!(!db.set_vm_power(v1.id, PowerState::PoweredOn).await.unwrap());
        db.update_vm_spec(v1.id, |s| s.vcpus = 4).await.unwrap();
        assert!(matches!(
            db.update_vm_spec(Uuid::new_v4(), |s| s.vcpus = 4).await,
            Err(DbError::NotFound)
        ));
        db.reconfigure_vm(v1.id, "web2", |s| s.memory_mib = 512)
            .await
            .unwrap();
        let v = db.vm(v1.id).await.unwrap();
        assert_eq!(
            (
                v.name.as_str(),
                v.spec.vcpus,
                v.spec.memory_mib,
                v.power_state
            ),
            ("web2", 4, 512, PowerState::PoweredOn)
        );
        assert!(matches!(
            db.reconfigure_vm(v1.id, "Db", |_| {}).await,
            Err(DbError::Duplicate)
        ));
        db.delete_vm(v2.id).await.unwrap();
        assert!(matches!(db.vm(v2.id).await, Err(DbError::NotFound)));
        db.delete_host(hb).await.unwrap();
        assert_eq!(db.hosts().await.unwrap().len(), 1);
    }

    async fn concurrent_spec_changes_are_all_kept(db: TestDb) {
        let dc = db.default_datacenter().await.unwrap();
        let h = Uuid::new_v4();
        db.insert_host(&host_row(h, "h", dc.id)).await.unwrap();
        let vm = vm_info("v", h);
        db.insert_vm(dc.id, &vm).await.unwrap();
        // Read-modify-write from many tasks at once: none may undo another. SQLite lets one
        // writer in at a time and may refuse the others (busy); PostgreSQL makes them wait.
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let db = db.db.clone();
            set.spawn(async move { db.update_vm_spec(vm.id, |s| s.memory_mib += 1).await });
        }
        let mut done = 0;
        while let Some(r) = set.join_next().await {
            if r.unwrap().is_ok() {
                done += 1;
            }
        }
        if db.backend() == super::super::Backend::Postgres {
            assert_eq!(done, 16, "PostgreSQL waits, it does not fail");
        }
        assert!(done >= 1);
        assert_eq!(db.vm(vm.id).await.unwrap().spec.memory_mib, 256 + done);
    }
}
