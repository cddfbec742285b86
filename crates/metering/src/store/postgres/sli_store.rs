//! SLI reads on Postgres: per-minute counts and latency histograms (written by the ledger's
//! transactions), gateway heartbeats and black-box probers' minutes. Same queries and meaning
//! as the SQLite store's; the differences are sums cast back to `BIGINT`, text sorted bytewise
//! (`COLLATE "C"`, SQLite's `BINARY`) whatever the database's collation, and writes that
//! several replicas may make at once (heartbeats, probe minutes) as idempotent upserts.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::incident::ScopedCounts;
use crate::sli::{
    minute_of, BucketLatency, FleetMinute, LatencyCount, Metric, MinuteCounts, ProbeMinute,
    ScopeCounts,
};
use crate::store::rows::to_u64;
use crate::store::{Heartbeats, Result, SliStore, StoreError, UsageQuery};

mod reads;
mod window;

#[async_trait]
impl SliStore for PgStore {
    async fn sli_minutes(&self, query: &UsageQuery) -> Result<Vec<MinuteCounts>> {
        reads::minutes(&self.pool, query).await
    }

    async fn sli_latency(&self, query: &UsageQuery) -> Result<Vec<LatencyCount>> {
        reads::latency(&self.pool, query).await
    }

    async fn sli_fleet_minutes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<FleetMinute>> {
        reads::fleet_minutes(&self.pool, from_ms, to_ms).await
    }

    async fn sli_fleet_latency(
        &self,
        from_ms: i64,
        to_ms: i64,
        metric: Metric,
        bucket_minutes: i64,
    ) -> Result<Vec<BucketLatency>> {
        reads::fleet_latency(&self.pool, from_ms, to_ms, metric, bucket_minutes).await
    }

    async fn sli_scopes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ScopeCounts>> {
        reads::scopes(&self.pool, from_ms, to_ms).await
    }

    async fn sli_window(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ScopedCounts>> {
        window::window(&self.pool, from_ms, to_ms).await
    }

    async fn record_heartbeat(&self, instance: &str, minute: i64) -> Result<()> {
        // Every replica beats every minute, and a beat may be retried: the first row of an
        // (instance, minute) stands, the rest are no-ops, never a unique violation.
        sqlx::query(
            "INSERT INTO gateway_heartbeats (minute, instance) VALUES ($1, $2) \
             ON CONFLICT (minute, instance) DO NOTHING",
        )
        .bind(minute)
        .bind(instance)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn heartbeats(&self, from_ms: i64, to_ms: i64) -> Result<Heartbeats> {
        // A minute counts as alive if any instance beat in it: DISTINCT over instances.
        let minutes: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT minute FROM gateway_heartbeats WHERE minute >= $1 AND minute < $2",
        )
        .bind(minute_of(from_ms))
        .bind(minute_of(to_ms))
        .fetch_all(&self.pool)
        .await?;
        let since_minute: Option<i64> =
            sqlx::query_scalar("SELECT MIN(minute) FROM gateway_heartbeats")
                .fetch_one(&self.pool)
                .await?;
        Ok(Heartbeats {
            minutes: minutes.into_iter().collect(),
            since_minute,
        })
    }

    async fn put_probe_minutes(&self, minutes: &[ProbeMinute]) -> Result<()> {
        // As on SQLite, a key pushed twice in one batch keeps its last counts. Postgres refuses
        // to update one row twice in a statement, so the batch is folded first; and sorted by
        // key, so that replicas upserting overlapping batches lock rows in the same order and
        // wait for each other instead of deadlocking.
        let mut latest: BTreeMap<(i64, &str), &ProbeMinute> = BTreeMap::new();
        for m in minutes {
            latest.insert((m.minute, m.prober.as_str()), m);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let count =
            |v: u64| i64::try_from(v).map_err(|_| StoreError::Invalid(format!("probe count {v}")));
        let (mut minute, mut prober, mut region, mut probes, mut failed) =
            (vec![], vec![], vec![], vec![], vec![]);
        for m in latest.values() {
            minute.push(m.minute);
            prober.push(m.prober.clone());
            region.push(m.region.clone());
            probes.push(count(m.probes)?);
            failed.push(count(m.failed)?);
        }
        // One statement, so the batch is stored whole or not at all (SQLite's transaction);
        // `WITH ORDINALITY ... ORDER BY` keeps the rows in the sorted order above.
        sqlx::query(
            "INSERT INTO probe_minutes (minute, prober, region, probes, failed) \
             SELECT minute, prober, region, probes, failed \
             FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[]) \
                 WITH ORDINALITY AS b (minute, prober, region, probes, failed, n) \
             ORDER BY n \
             ON CONFLICT (minute, prober) DO UPDATE SET region = excluded.region, \
                 probes = excluded.probes, failed = excluded.failed",
        )
        .bind(minute)
        .bind(prober)
        .bind(region)
        .bind(probes)
        .bind(failed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn probe_minutes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ProbeMinute>> {
        let rows = sqlx::query(
            "SELECT minute, prober, region, probes, failed FROM probe_minutes \
             WHERE minute >= $1 AND minute < $2 ORDER BY minute, prober COLLATE \"C\"",
        )
        .bind(minute_of(from_ms))
        .bind(minute_of(to_ms))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ProbeMinute {
                    minute: row.try_get("minute")?,
                    prober: row.try_get("prober")?,
                    region: row.try_get("region")?,
                    probes: to_u64(row.try_get("probes")?, "probes")?,
                    failed: to_u64(row.try_get("failed")?, "failed")?,
                })
            })
            .collect()
    }
}
