//! Performance samples.

use strata_shared::model::StatSample;
use uuid::Uuid;

use super::{Db, DbError};

impl Db {
    /// Stores one sampling round of a host: (VM, CPU MHz, memory MiB) at `time_ms`.
    pub async fn insert_stats(
        &self,
        host: Uuid,
        time_ms: i64,
        samples: &[(Uuid, f64, f64)],
    ) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        for (vm, cpu, mem) in samples {
            sqlx::query(
                "INSERT INTO stats (vm_id, host_id, time_ms, cpu_mhz, memory_mib) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(vm.to_string())
            .bind(host.to_string())
            .bind(time_ms)
            .bind(cpu)
            .bind(mem)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A VM's samples after `since_ms`, oldest first.
    pub async fn vm_stats(&self, vm: Uuid, since_ms: i64) -> Result<Vec<StatSample>, DbError> {
        let rows: Vec<(i64, f64, f64)> = sqlx::query_as(
            "SELECT time_ms, cpu_mhz, memory_mib FROM stats WHERE vm_id = $1 AND time_ms > $2 ORDER BY time_ms",
        )
        .bind(vm.to_string())
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(sample).collect())
    }

    /// A host's samples after `since_ms` (sums over its VMs per round), oldest first.
    pub async fn host_stats(&self, host: Uuid, since_ms: i64) -> Result<Vec<StatSample>, DbError> {
        let rows: Vec<(i64, f64, f64)> = sqlx::query_as(
            "SELECT time_ms, SUM(cpu_mhz), SUM(memory_mib) FROM stats WHERE host_id = $1 AND time_ms > $2 GROUP BY time_ms ORDER BY time_ms",
        )
        .bind(host.to_string())
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(sample).collect())
    }

    /// Deletes samples older than `before_ms`.
    pub async fn prune_stats(&self, before_ms: i64) -> Result<u64, DbError> {
        let r = sqlx::query("DELETE FROM stats WHERE time_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }
}

fn sample((time_ms, cpu_mhz, memory_mib): (i64, f64, f64)) -> StatSample {
    StatSample {
        time_ms,
        cpu_mhz,
        memory_mib,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{on_both_backends, TestDb};
    use super::*;

    on_both_backends!(stats_round_trip);

    async fn stats_round_trip(db: TestDb) {
        let (host, v1, v2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        db.insert_stats(host, 1_000, &[(v1, 100.5, 64.0), (v2, 50.0, 128.25)])
            .await
            .unwrap();
        db.insert_stats(host, 2_000, &[(v1, 200.0, 64.0)])
            .await
            .unwrap();
        let s = db.vm_stats(v1, 0).await.unwrap();
        assert_eq!(
            s.iter()
                .map(|x| (x.time_ms, x.cpu_mhz, x.memory_mib))
                .collect::<Vec<_>>(),
            [(1_000, 100.5, 64.0), (2_000, 200.0, 64.0)]
        );
        assert_eq!(db.vm_stats(v1, 1_000).await.unwrap().len(), 1);
        let h = db.host_stats(host, 0).await.unwrap();
        assert_eq!(
            h.iter()
                .map(|x| (x.time_ms, x.cpu_mhz, x.memory_mib))
                .collect::<Vec<_>>(),
            [(1_000, 150.5, 192.25), (2_000, 200.0, 64.0)]
        );
        assert_eq!(db.prune_stats(1_500).await.unwrap(), 2);
        assert_eq!(db.host_stats(host, 0).await.unwrap().len(), 1);
    }
}
