//! Resource pool rows and VM placement in pools.

use strata_shared::model::{PoolInfo, ResourceAllocation};
use uuid::Uuid;

use super::{uuid, Db, DbError};

type PoolTuple = (String, String, String, Option<String>, String);

fn row(t: PoolTuple) -> Result<PoolInfo, DbError> {
    let (id, name, owner, parent, allocation) = t;
    let allocation: ResourceAllocation =
        serde_json::from_str(&allocation).map_err(|e| DbError::Corrupt(e.to_string()))?;
    Ok(PoolInfo {
        id: uuid(&id)?,
        name,
        owner: uuid(&owner)?,
        parent: parent.as_deref().map(uuid).transpose()?,
        allocation,
    })
}

fn json(a: &ResourceAllocation) -> Result<String, DbError> {
    serde_json::to_string(a).map_err(|e| DbError::Corrupt(e.to_string()))
}

impl Db {
    /// Adds a pool.
    pub async fn insert_pool(&self, p: &PoolInfo) -> Result<(), DbError> {
        sqlx::query("INSERT INTO pools (id, name, owner_id, parent_id, allocation, created_ms) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(p.id.to_string())
            .bind(&p.name)
            .bind(p.owner.to_string())
            .bind(p.parent.map(|x| x.to_string()))
            .bind(json(&p.allocation)?)
            .bind(strata_shared::now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// One pool.
    pub async fn pool(&self, id: Uuid) -> Result<PoolInfo, DbError> {
        let t: PoolTuple = sqlx::query_as(
            "SELECT id, name, owner_id, parent_id, allocation FROM pools WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_one(&self.pool)
        .await?;
        row(t)
    }

    /// Pools, optionally of one owner.
    pub async fn pools(&self, owner: Option<Uuid>) -> Result<Vec<PoolInfo>, DbError> {
        let rows: Vec<PoolTuple> = sqlx::query_as(
            "SELECT id, name, owner_id, parent_id, allocation FROM pools WHERE ($1 IS NULL OR owner_id = $2) ORDER BY name",
        )
        .bind(owner.map(|o| o.to_string()))
        .bind(owner.map(|o| o.to_string()))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(row).collect()
    }

    /// Writes a pool's name, parent and allocation.
    pub async fn update_pool(&self, p: &PoolInfo) -> Result<(), DbError> {
        sqlx::query("UPDATE pools SET name = $1, parent_id = $2, allocation = $3 WHERE id = $4")
            .bind(&p.name)
            .bind(p.parent.map(|x| x.to_string()))
            .bind(json(&p.allocation)?)
            .bind(p.id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a pool, first moving its child pools and VMs to `new_parent`, in one transaction.
    pub async fn delete_pool(&self, id: Uuid, new_parent: Option<Uuid>) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        let np = new_parent.map(|x| x.to_string());
        sqlx::query("UPDATE pools SET parent_id = $1 WHERE parent_id = $2")
            .bind(&np)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE vms SET pool_id = $1 WHERE pool_id = $2")
            .bind(&np)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM pools WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The pool a VM is in.
    pub async fn vm_pool(&self, vm: Uuid) -> Result<Option<Uuid>, DbError> {
        let (p,): (Option<String>,) = sqlx::query_as("SELECT pool_id FROM vms WHERE id = $1")
            .bind(vm.to_string())
            .fetch_one(&self.pool)
            .await?;
        p.as_deref().map(uuid).transpose()
    }

    /// Puts a VM into a pool (none = the root).
    pub async fn set_vm_pool(&self, vm: Uuid, pool: Option<Uuid>) -> Result<(), DbError> {
        sqlx::query("UPDATE vms SET pool_id = $1 WHERE id = $2")
            .bind(pool.map(|x| x.to_string()))
            .bind(vm.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a VM's allocation (inside its spec).
    pub async fn set_vm_allocation(
        &self,
        vm: Uuid,
        allocation: &ResourceAllocation,
    ) -> Result<(), DbError> {
        self.update_vm_spec(vm, |spec| spec.allocation = *allocation)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::inventory::tests::{host_row, vm_info};
    use super::super::testing::{on_both_backends, TestDb};
    use super::*;

    fn pool(name: &str, owner: Uuid, parent: Option<Uuid>) -> PoolInfo {
        PoolInfo {
            id: Uuid::new_v4(),
            name: name.into(),
            owner,
            parent,
            allocation: ResourceAllocation::default(),
        }
    }

    on_both_backends!(pools_round_trip);

    async fn pools_round_trip(db: TestDb) {
        let dc = db.default_datacenter().await.unwrap().id;
        let owner = Uuid::new_v4();
        db.insert_host(&host_row(owner, "h", dc)).await.unwrap();
        let top = pool("Prod", owner, None);
        db.insert_pool(&top).await.unwrap();
        // Sibling names are unique, also among top-level pools (no parent).
        assert!(matches!(
            db.insert_pool(&pool("Prod", owner, None)).await,
            Err(DbError::Duplicate)
        ));
        let child = pool("Web", owner, Some(top.id));
        db.insert_pool(&child).await.unwrap();
        db.insert_pool(&pool("Prod", owner, Some(top.id)))
            .await
            .unwrap();
        db.insert_pool(&pool("Other", Uuid::new_v4(), None))
            .await
            .unwrap();
        assert_eq!(db.pool(child.id).await.unwrap(), child);
        assert_eq!(db.pools(Some(owner)).await.unwrap().len(), 3);
        assert_eq!(db.pools(None).await.unwrap().len(), 4);
        let mut renamed = child.clone();
        renamed.name = "Web2".into();
        renamed.allocation.cpu.shares.level = strata_shared::model::SharesLevel::High;
        db.update_pool(&renamed).await.unwrap();
        assert_eq!(db.pool(child.id).await.unwrap(), renamed);

        let vm = vm_info("v", owner);
        db.insert_vm(dc, &vm).await.unwrap();
        db.set_vm_pool(vm.id, Some(child.id)).await.unwrap();
        assert_eq!(db.vm_pool(vm.id).await.unwrap(), Some(child.id));
        let grandchild = pool("Leaf", owner, Some(child.id));
        db.insert_pool(&grandchild).await.unwrap();
        // Deleting a pool moves its children and VMs up.
        db.delete_pool(child.id, Some(top.id)).await.unwrap();
        assert!(matches!(db.pool(child.id).await, Err(DbError::NotFound)));
        assert_eq!(db.vm_pool(vm.id).await.unwrap(), Some(top.id));
        assert_eq!(db.pool(grandchild.id).await.unwrap().parent, Some(top.id));
        let mut alloc = ResourceAllocation::default();
        alloc.memory.reservation = 64;
        db.set_vm_allocation(vm.id, &alloc).await.unwrap();
        assert_eq!(db.vm(vm.id).await.unwrap().spec.allocation, alloc);
    }
}
