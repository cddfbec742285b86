//! Report reads of the SLI rollups: per tenant (the SLA report) and fleet-wide (the public
//! status page, every tenant summed in SQL so it never sees a tenant id and a month is a few
//! thousand rows). The rollups' primary keys start with `minute`, so each query is a range
//! scan.

use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};

use super::to_u64;
use crate::sli::{
    minute_of, BucketLatency, FleetMinute, LatencyCount, Metric, MinuteCounts, ScopeCounts,
    SliCounts,
};
use crate::store::{Result, StoreError, UsageQuery};

/// The rollup counts summed. `SUM(bigint)` is `NUMERIC` in Postgres, which sqlx will not decode
/// as `i64`: each sum is cast back (a sum past `i64` fails the query, as it does on SQLite).
pub(super) const SUMS: &str = "COALESCE(SUM(requests), 0)::BIGINT AS requests, \
     COALESCE(SUM(ok), 0)::BIGINT AS ok, \
     COALESCE(SUM(errors_5xx), 0)::BIGINT AS errors_5xx, \
     COALESCE(SUM(errors_429), 0)::BIGINT AS errors_429, \
     COALESCE(SUM(ttft_slow), 0)::BIGINT AS ttft_slow, \
     COALESCE(SUM(bad), 0)::BIGINT AS bad, \
     COALESCE(SUM(throttled), 0)::BIGINT AS throttled";

/// A [`UsageQuery`]'s bounds, in ms, applied to the rollups' minutes (rounded down).
fn push_filter(qb: &mut QueryBuilder<'_, Postgres>, q: &UsageQuery) {
    qb.push(" WHERE TRUE");
    if let Some(t) = &q.tenant_id {
        qb.push(" AND tenant_id = ").push_bind(t.clone());
    }
    if let Some(from) = q.from_ms {
        qb.push(" AND minute >= ").push_bind(minute_of(from));
    }
    if let Some(to) = q.to_ms {
        qb.push(" AND minute < ").push_bind(minute_of(to));
    }
}

pub(super) fn counts_from_row(row: &PgRow) -> Result<SliCounts> {
    Ok(SliCounts {
        requests: to_u64(row.try_get("requests")?, "requests")?,
        ok: to_u64(row.try_get("ok")?, "ok")?,
        errors_5xx: to_u64(row.try_get("errors_5xx")?, "errors_5xx")?,
        errors_429: to_u64(row.try_get("errors_429")?, "errors_429")?,
        ttft_slow: to_u64(row.try_get("ttft_slow")?, "ttft_slow")?,
        bad: to_u64(row.try_get("bad")?, "bad")?,
        throttled: to_u64(row.try_get("throttled")?, "throttled")?,
    })
}

pub(super) async fn minutes(pool: &PgPool, q: &UsageQuery) -> Result<Vec<MinuteCounts>> {
    let mut qb =
        QueryBuilder::<Postgres>::new(format!("SELECT tenant_id, minute, {SUMS} FROM sli_minutes"));
    push_filter(&mut qb, q);
    // Bytewise, as SQLite's BINARY collation sorts, whatever the database's collation.
    qb.push(" GROUP BY tenant_id, minute ORDER BY tenant_id COLLATE \"C\", minute");
    let rows = qb.build().fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(MinuteCounts {
                tenant_id: row.try_get("tenant_id")?,
                minute: row.try_get("minute")?,
                counts: counts_from_row(row)?,
            })
        })
        .collect()
}

pub(super) async fn latency(pool: &PgPool, q: &UsageQuery) -> Result<Vec<LatencyCount>> {
    // `minute / 60` truncates toward zero, as SQLite's integer division does.
    let mut qb = QueryBuilder::<Postgres>::new(
        "SELECT tenant_id, minute / 60 AS hour, metric, le_ms, \
             COALESCE(SUM(count), 0)::BIGINT AS count \
         FROM sli_latency",
    );
    push_filter(&mut qb, q);
    qb.push(
        " GROUP BY tenant_id, hour, metric, le_ms \
         ORDER BY tenant_id COLLATE \"C\", hour, metric COLLATE \"C\", le_ms",
    );
    let rows = qb.build().fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            let metric: String = row.try_get("metric")?;
            Ok(LatencyCount {
                tenant_id: row.try_get("tenant_id")?,
                hour: row.try_get("hour")?,
                metric: Metric::parse(&metric)
                    .ok_or_else(|| StoreError::Database(format!("unknown metric {metric:?}")))?,
                le_ms: row.try_get("le_ms")?,
                count: to_u64(row.try_get("count")?, "count")?,
            })
        })
        .collect()
}

pub(super) async fn fleet_minutes(
    pool: &PgPool,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<FleetMinute>> {
    let sql = format!(
        "SELECT minute, {SUMS} FROM sli_minutes WHERE minute >= $1 AND minute < $2 \
         GROUP BY minute ORDER BY minute"
    );
    let rows = sqlx::query(&sql)
        .bind(minute_of(from_ms))
        .bind(minute_of(to_ms))
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(FleetMinute {
                minute: row.try_get("minute")?,
                counts: counts_from_row(row)?,
            })
        })
        .collect()
}

pub(super) async fn fleet_latency(
    pool: &PgPool,
    from_ms: i64,
    to_ms: i64,
    metric: Metric,
    bucket_minutes: i64,
) -> Result<Vec<BucketLatency>> {
    if bucket_minutes < 1 {
        return Err(StoreError::Invalid(format!(
            "bucket_minutes = {bucket_minutes}: must be at least 1"
        )));
    }
    // `minute >= $1`, so `minute - $1` is never negative and integer division floors.
    let rows = sqlx::query(
        "SELECT (minute - $1) / $3 AS bucket, le_ms, COALESCE(SUM(count), 0)::BIGINT AS count \
         FROM sli_latency \
         WHERE minute >= $1 AND minute < $2 AND metric = $4 \
         GROUP BY bucket, le_ms ORDER BY bucket, le_ms",
    )
    .bind(minute_of(from_ms))
    .bind(minute_of(to_ms))
    .bind(bucket_minutes)
    .bind(metric.as_str())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(BucketLatency {
                bucket: row.try_get("bucket")?,
                le_ms: row.try_get("le_ms")?,
                count: to_u64(row.try_get("count")?, "count")?,
            })
        })
        .collect()
}

pub(super) async fn scopes(pool: &PgPool, from_ms: i64, to_ms: i64) -> Result<Vec<ScopeCounts>> {
    let sql = format!(
        "SELECT model, region, {SUMS} FROM sli_minutes WHERE minute >= $1 AND minute < $2 \
         GROUP BY model, region ORDER BY model COLLATE \"C\", region COLLATE \"C\""
    );
    let rows = sqlx::query(&sql)
        .bind(minute_of(from_ms))
        .bind(minute_of(to_ms))
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ScopeCounts {
                model: row.try_get("model")?,
                region: row.try_get("region")?,
                counts: counts_from_row(row)?,
            })
        })
        .collect()
}
