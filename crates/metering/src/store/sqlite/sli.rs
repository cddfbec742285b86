//! The SLA ledger's tables on SQLite: per-minute SLI rollups (updated inside the usage and
//! refusal transactions), their report queries, and maintenance windows.

use std::collections::BTreeMap;

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::{batch, to_u64, INSERT_CHUNK};
use crate::maintenance::{Maintenance, NewMaintenance};
use crate::sli::{
    fold, minute_of, LatencyCount, Metric, MinuteCounts, Refusal, SliCounts, SliDelta, SliKey,
};
use crate::store::rows::maintenance_from_row;
use crate::store::{Result, StoreError, UsageQuery};

/// The tenant's tier as of this write; '' for a tenant the store does not know (the dev
/// tenant of a throwaway run, a since-deleted one): its minutes still count.
const TIER: &str = "COALESCE((SELECT tier FROM tenants WHERE id = ?2), '')";

fn count(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} = {v} does not fit in i64")))
}

/// Adds a batch's deltas to the rollups. Runs inside the caller's transaction, after the rows
/// they come from were inserted, so both commit or neither does.
pub(super) async fn apply(
    conn: &mut SqliteConnection,
    deltas: &BTreeMap<SliKey, SliDelta>,
) -> Result<()> {
    let minutes_sql = format!(
        "INSERT INTO sli_minutes (minute, tenant_id, tier, model, region, provider, \
             requests, ok, errors_5xx, errors_429, ttft_slow, bad, throttled) \
         VALUES (?1, ?2, {TIER}, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (minute, tenant_id, tier, model, region, provider) DO UPDATE SET \
             requests = requests + excluded.requests, \
             ok = ok + excluded.ok, \
             errors_5xx = errors_5xx + excluded.errors_5xx, \
             errors_429 = errors_429 + excluded.errors_429, \
             ttft_slow = ttft_slow + excluded.ttft_slow, \
             bad = bad + excluded.bad, \
             throttled = throttled + excluded.throttled"
    );
    let latency_sql = format!(
        "INSERT INTO sli_latency (minute, tenant_id, tier, model, region, provider, metric, \
             le_ms, count) \
         VALUES (?1, ?2, {TIER}, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (minute, tenant_id, tier, model, region, provider, metric, le_ms) \
         DO UPDATE SET count = count + excluded.count"
    );
    for (key, delta) in deltas {
        let c = &delta.counts;
        sqlx::query(&minutes_sql)
            .bind(key.minute)
            .bind(&key.tenant_id)
            .bind(&key.model)
            .bind(&key.region)
            .bind(&key.provider)
            .bind(count(c.requests, "requests")?)
            .bind(count(c.ok, "ok")?)
            .bind(count(c.errors_5xx, "errors_5xx")?)
            .bind(count(c.errors_429, "errors_429")?)
            .bind(count(c.ttft_slow, "ttft_slow")?)
            .bind(count(c.bad, "bad")?)
            .bind(count(c.throttled, "throttled")?)
            .execute(&mut *conn)
            .await?;
        for ((metric, le_ms), n) in &delta.latency {
            sqlx::query(&latency_sql)
                .bind(key.minute)
                .bind(&key.tenant_id)
                .bind(&key.model)
                .bind(&key.region)
                .bind(&key.provider)
                .bind(metric.as_str())
                .bind(*le_ms)
                .bind(count(*n, "latency count")?)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

const REFUSAL_COLUMNS: &str = "request_id, at_ms, tenant_id, model, http_status, throttled";

pub(super) async fn insert_refusals(writer: &SqlitePool, batch: &[Refusal]) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    insert_refusals_in(&mut tx, batch).await?;
    tx.commit().await?;
    Ok(())
}

/// [`insert_refusals`] in the caller's transaction.
pub(super) async fn insert_refusals_in(
    conn: &mut SqliteConnection,
    batch: &[Refusal],
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let stored = batch::stored_ids(
        &mut *conn,
        &batch::REFUSALS,
        batch.iter().map(|r| r.request_id.as_str()),
    )
    .await?;
    for chunk in batch.chunks(INSERT_CHUNK) {
        let sql = batch::insert_sql(&batch::REFUSALS, REFUSAL_COLUMNS, chunk.len());
        let mut query = sqlx::query(&sql);
        for r in chunk {
            query = query
                .bind(r.request_id.as_str())
                .bind(r.at_ms)
                .bind(r.tenant_id.as_str())
                .bind(r.model.as_str())
                .bind(i64::from(r.http_status))
                .bind(r.throttled);
        }
        query.execute(&mut *conn).await?;
    }
    let new = batch::unstored(batch, |r| r.request_id.as_str(), &stored);
    apply(&mut *conn, &fold([], new)).await?;
    // A request refused after it was admitted (no worker for it after all) was opened.
    super::open::close(&mut *conn, batch.iter().map(|r| r.request_id.as_str())).await?;
    Ok(())
}

fn push_filter(qb: &mut QueryBuilder<'_, Sqlite>, q: &UsageQuery) {
    qb.push(" WHERE 1 = 1");
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

pub(super) fn counts_from_row(row: &SqliteRow) -> Result<SliCounts> {
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

pub(super) async fn minutes(reader: &SqlitePool, q: &UsageQuery) -> Result<Vec<MinuteCounts>> {
    let mut qb = QueryBuilder::<Sqlite>::new(
        "SELECT tenant_id, minute, SUM(requests) AS requests, SUM(ok) AS ok, \
             SUM(errors_5xx) AS errors_5xx, SUM(errors_429) AS errors_429, \
             SUM(ttft_slow) AS ttft_slow, SUM(bad) AS bad, SUM(throttled) AS throttled \
         FROM sli_minutes",
    );
    push_filter(&mut qb, q);
    qb.push(" GROUP BY tenant_id, minute ORDER BY tenant_id, minute");
    let rows = qb.build().fetch_all(reader).await?;
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

pub(super) async fn latency(reader: &SqlitePool, q: &UsageQuery) -> Result<Vec<LatencyCount>> {
    let mut qb = QueryBuilder::<Sqlite>::new(
        "SELECT tenant_id, minute / 60 AS hour, metric, le_ms, SUM(count) AS count \
         FROM sli_latency",
    );
    push_filter(&mut qb, q);
    qb.push(" GROUP BY tenant_id, hour, metric, le_ms ORDER BY tenant_id, hour, metric, le_ms");
    let rows = qb.build().fetch_all(reader).await?;
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

const MAINTENANCE_COLUMNS: &str =
    "id, start_ms, end_ms, scope, note, announced_at_ms, created_at_ms";

pub(super) async fn add_maintenance(
    writer: &SqlitePool,
    w: &NewMaintenance,
) -> Result<Maintenance> {
    if w.end_ms <= w.start_ms {
        return Err(StoreError::Invalid(
            "a maintenance window must end after it starts".into(),
        ));
    }
    let sql = format!(
        "INSERT INTO maintenance (start_ms, end_ms, scope, note, announced_at_ms, created_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING {MAINTENANCE_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(w.start_ms)
        .bind(w.end_ms)
        .bind(w.scope.to_string())
        .bind(&w.note)
        .bind(w.created_at_ms)
        .bind(w.created_at_ms)
        .fetch_one(writer)
        .await?;
    maintenance_from_row(&row)
}

pub(super) async fn list_maintenance(
    reader: &SqlitePool,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<Vec<Maintenance>> {
    let mut qb = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {MAINTENANCE_COLUMNS} FROM maintenance WHERE 1 = 1"
    ));
    if let Some(from) = from_ms {
        qb.push(" AND end_ms > ").push_bind(from);
    }
    if let Some(to) = to_ms {
        qb.push(" AND start_ms < ").push_bind(to);
    }
    qb.push(" ORDER BY start_ms, id");
    let rows = qb.build().fetch_all(reader).await?;
    rows.iter().map(maintenance_from_row).collect()
}

pub(super) async fn delete_maintenance(writer: &SqlitePool, id: i64, now_ms: i64) -> Result<()> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let start: Option<i64> = sqlx::query_scalar("SELECT start_ms FROM maintenance WHERE id = ?1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    match start {
        None => return Err(StoreError::NotFound(format!("maintenance window {id}"))),
        Some(start) if start <= now_ms => {
            return Err(StoreError::Conflict(format!(
                "maintenance window {id} has started; it was announced and stays on record"
            )))
        }
        Some(_) => {}
    }
    sqlx::query("DELETE FROM maintenance WHERE id = ?1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
