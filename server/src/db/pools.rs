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
        sqlx::query("INSERT INTO pools (id, name, owner_id, parent_id, allocation, created_ms) VALUES (?, ?, ?, ?, ?, ?)")
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
            "SELECT id, name, owner_id, parent_id, allocation FROM pools WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_one(&self.pool)
        .await?;
        row(t)
    }

    /// Pools, optionally of one owner.
    pub async fn pools(&self, owner: Option<Uuid>) -> Result<Vec<PoolInfo>, DbError> {
        let rows: Vec<PoolTuple> = sqlx::query_as(
            "SELECT id, name, owner_id, parent_id, allocation FROM pools WHERE (? IS NULL OR owner_id = ?) ORDER BY name",
        )
        .bind(owner.map(|o| o.to_string()))
        .bind(owner.map(|o| o.to_string()))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(row).collect()
    }

    /// Writes a pool's name, parent and allocation.
    pub async fn update_pool(&self, p: &PoolInfo) -> Result<(), DbError> {
        sqlx::query("UPDATE pools SET name = ?, parent_id = ?, allocation = ? WHERE id = ?")
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
        sqlx::query("UPDATE pools SET parent_id = ? WHERE parent_id = ?")
            .bind(&np)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE vms SET pool_id = ? WHERE pool_id = ?")
            .bind(&np)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM pools WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The pool a VM is in.
    pub async fn vm_pool(&self, vm: Uuid) -> Result<Option<Uuid>, DbError> {
        let (p,): (Option<String>,) = sqlx::query_as("SELECT pool_id FROM vms WHERE id = ?")
            .bind(vm.to_string())
            .fetch_one(&self.pool)
            .await?;
        p.as_deref().map(uuid).transpose()
    }

    /// Puts a VM into a pool (none = the root).
    pub async fn set_vm_pool(&self, vm: Uuid, pool: Option<Uuid>) -> Result<(), DbError> {
        sqlx::query("UPDATE vms SET pool_id = ? WHERE id = ?")
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
