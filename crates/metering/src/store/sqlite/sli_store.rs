//! SLI rollups on SQLite: per-minute counts and latency histograms, gateway heartbeats and
//! black-box probers' minutes.

use super::*;
use crate::store::SliStore;

#[async_trait]
impl SliStore for SqliteStore {
    async fn sli_minutes(&self, query: &UsageQuery) -> Result<Vec<MinuteCounts>> {
        sli::minutes(&self.reader, query).await
    }

    async fn sli_latency(&self, query: &UsageQuery) -> Result<Vec<LatencyCount>> {
        sli::latency(&self.reader, query).await
    }

    async fn sli_fleet_minutes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<FleetMinute>> {
        sli_fleet::minutes(&self.reader, from_ms, to_ms).await
    }

    async fn sli_fleet_latency(
        &self,
        from_ms: i64,
        to_ms: i64,
        metric: Metric,
        bucket_minutes: i64,
    ) -> Result<Vec<BucketLatency>> {
        sli_fleet::latency(&self.reader, from_ms, to_ms, metric, bucket_minutes).await
    }

    async fn sli_scopes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ScopeCounts>> {
        sli_fleet::scopes(&self.reader, from_ms, to_ms).await
    }

    async fn record_heartbeat(&self, instance: &str, minute: i64) -> Result<()> {
        sqlx::query("INSERT OR IGNORE INTO gateway_heartbeats (minute, instance) VALUES (?1, ?2)")
            .bind(minute)
            .bind(instance)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn heartbeats(&self, from_ms: i64, to_ms: i64) -> Result<Heartbeats> {
        let minutes: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT minute FROM gateway_heartbeats WHERE minute >= ?1 AND minute < ?2",
        )
        .bind(crate::sli::minute_of(from_ms))
        .bind(crate::sli::minute_of(to_ms))
        .fetch_all(&self.reader)
        .await?;
        let since_minute: Option<i64> =
            sqlx::query_scalar("SELECT MIN(minute) FROM gateway_heartbeats")
                .fetch_one(&self.reader)
                .await?;
        Ok(Heartbeats {
            minutes: minutes.into_iter().collect(),
            since_minute,
        })
    }

    async fn put_probe_minutes(&self, minutes: &[ProbeMinute]) -> Result<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        for m in minutes {
            let count = |v: u64| {
                i64::try_from(v).map_err(|_| StoreError::Invalid(format!("probe count {v}")))
            };
            sqlx::query(
                "INSERT INTO probe_minutes (minute, prober, region, probes, failed) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (minute, prober) DO UPDATE SET region = excluded.region, \
                     probes = excluded.probes, failed = excluded.failed",
            )
            .bind(m.minute)
            .bind(&m.prober)
            .bind(&m.region)
            .bind(count(m.probes)?)
            .bind(count(m.failed)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn probe_minutes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ProbeMinute>> {
        let rows = sqlx::query(
            "SELECT minute, prober, region, probes, failed FROM probe_minutes \
             WHERE minute >= ?1 AND minute < ?2 ORDER BY minute, prober",
        )
        .bind(crate::sli::minute_of(from_ms))
        .bind(crate::sli::minute_of(to_ms))
        .fetch_all(&self.reader)
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

    async fn sli_window(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ScopedCounts>> {
        sli_window::window(&self.reader, from_ms, to_ms).await
    }
}
