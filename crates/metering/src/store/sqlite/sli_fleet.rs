//! Fleet-wide reads of the SLI rollups for the public status page: every tenant summed in
//! SQL, so the page never sees a tenant id and a month is a few thousand rows, not one per
//! tenant and minute. The rollups' primary keys start with `minute`, so each query is a range
//! scan.

use sqlx::sqlite::SqlitePool;
use sqlx::Row;

use super::sli::counts_from_row;
use super::to_u64;
use crate::sli::{minute_of, BucketLatency, FleetMinute, Metric, ScopeCounts};
use crate::store::{Result, StoreError};

const SUMS: &str = "SUM(requests) AS requests, SUM(ok) AS ok, SUM(errors_5xx) AS errors_5xx, \
                    SUM(errors_429) AS errors_429, SUM(ttft_slow) AS ttft_slow, SUM(bad) AS bad, \
                    SUM(throttled) AS throttled";

pub(super) async fn minutes(
    reader: &SqlitePool,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<FleetMinute>> {
    let sql = format!(
        "SELECT minute, {SUMS} FROM sli_minutes WHERE minute >= ?1 AND minute < ?2 \
         GROUP BY minute ORDER BY minute"
    );
    let rows = sqlx::query(&sql)
        .bind(minute_of(from_ms))
        .bind(minute_of(to_ms))
        .fetch_all(reader)
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

pub(super) async fn latency(
    reader: &SqlitePool,
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
    // `minute >= ?1`, so `minute - ?1` is never negative and integer division floors.
    let rows = sqlx::query(
        "SELECT (minute - ?1) / ?3 AS bucket, le_ms, SUM(count) AS count FROM sli_latency \
         WHERE minute >= ?1 AND minute < ?2 AND metric = ?4 \
         GROUP BY bucket, le_ms ORDER BY bucket, le_ms",
    )
    .bind(minute_of(from_ms))
    .bind(minute_of(to_ms))
    .bind(bucket_minutes)
    .bind(metric.as_str())
    .fetch_all(reader)
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

pub(super) async fn scopes(
    reader: &SqlitePool,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<ScopeCounts>> {
    let sql = format!(
        "SELECT model, region, {SUMS} FROM sli_minutes WHERE minute >= ?1 AND minute < ?2 \
         GROUP BY model, region ORDER BY model, region"
    );
    let rows = sqlx::query(&sql)
        .bind(minute_of(from_ms))
        .bind(minute_of(to_ms))
        .fetch_all(reader)
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
