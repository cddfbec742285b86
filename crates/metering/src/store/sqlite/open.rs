//! Open requests and gateway processes' signs of life on SQLite (see [`crate::open`]).

use serde_json::{json, Value};
use sqlx::sqlite::SqlitePool;
use sqlx::SqliteConnection;

use super::{insert_usage_in, CheckedUsage};
use crate::open::{interrupted, Checkpoint, OpenRequest, OpenRow};
use crate::store::rows::open_from_row;
use crate::store::{Result, StoreError};

fn count(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} = {v} does not fit in i64")))
}

/// Records requests as open, unless their final record is there already (a usage row, a
/// refusal or a dead letter that overtook the opening through the writer's overflow path) or
/// they are open already.
pub(super) async fn insert(pool: &SqlitePool, batch: &[OpenRequest]) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    insert_in(&mut tx, batch).await?;
    tx.commit().await?;
    Ok(())
}

/// [`insert`] in the caller's transaction: one statement for the whole batch, its rows passed
/// as one JSON array (a statement per row would be a round trip to SQLite's thread each).
pub(super) async fn insert_in(conn: &mut SqliteConnection, batch: &[OpenRequest]) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let rows = batch
        .iter()
        .map(|o| {
            Ok(json!([
                o.request_id,
                o.instance,
                o.started_at_ms,
                o.tenant_id,
                o.key_id,
                o.model,
                o.endpoint,
                i64::from(o.stream),
                count(o.prompt_estimate, "prompt_estimate")?,
                o.price_in_nanos,
                o.price_out_nanos
            ]))
        })
        .collect::<Result<Vec<Value>>>()?;
    sqlx::query(
        "INSERT INTO usage_open (request_id, instance, started_at_ms, tenant_id, key_id, \
             model, endpoint, stream, prompt_estimate, price_in_nanos, price_out_nanos) \
         SELECT o.value ->> 0, o.value ->> 1, o.value ->> 2, o.value ->> 3, o.value ->> 4, \
             o.value ->> 5, o.value ->> 6, o.value ->> 7, o.value ->> 8, o.value ->> 9, \
             o.value ->> 10 \
         FROM json_each(?1) AS o \
         WHERE NOT EXISTS (SELECT 1 FROM usage WHERE request_id = o.value ->> 0) \
           AND NOT EXISTS (SELECT 1 FROM sli_refusals WHERE request_id = o.value ->> 0) \
           AND NOT EXISTS (SELECT 1 FROM ledger_dead_letters \
                           WHERE request_id = o.value ->> 0 AND kind IN ('usage', 'refusal')) \
         ON CONFLICT (request_id) DO NOTHING",
    )
    .bind(Value::Array(rows).to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Updates open requests with their latest checkpoint; a request already closed is left closed.
pub(super) async fn checkpoint(pool: &SqlitePool, batch: &[Checkpoint]) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    checkpoint_in(&mut tx, batch).await?;
    tx.commit().await?;
    Ok(())
}

/// [`checkpoint`] in the caller's transaction, one statement for the batch (as [`insert_in`]).
/// A request should appear once in a batch (the ledger writer keeps only its latest).
pub(super) async fn checkpoint_in(conn: &mut SqliteConnection, batch: &[Checkpoint]) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let rows = batch
        .iter()
        .map(|c| {
            Ok(json!([
                c.request_id,
                c.worker,
                c.provider,
                c.region,
                c.worker_price_nanos,
                i64::from(c.worker_slots),
                count(c.relayed_tokens, "relayed_tokens")?,
                c.ttft_ms.map(|t| count(t, "ttft_ms")).transpose()?,
                c.at_ms
            ]))
        })
        .collect::<Result<Vec<Value>>>()?;
    sqlx::query(
        "UPDATE usage_open SET worker = c.value ->> 1, provider = c.value ->> 2, \
             region = c.value ->> 3, worker_price_nanos = c.value ->> 4, \
             worker_slots = c.value ->> 5, relayed_tokens = c.value ->> 6, \
             ttft_ms = c.value ->> 7, checkpoint_at_ms = c.value ->> 8 \
         FROM json_each(?1) AS c \
         WHERE usage_open.request_id = c.value ->> 0",
    )
    .bind(Value::Array(rows).to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes the open rows of requests whose final record is being written (in the caller's
/// transaction).
pub(super) async fn close<'a>(
    conn: &mut SqliteConnection,
    ids: impl Iterator<Item = &'a str>,
) -> Result<()> {
    let json = serde_json::to_string(&ids.collect::<Vec<_>>())
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    sqlx::query("DELETE FROM usage_open WHERE request_id IN (SELECT value FROM json_each(?1))")
        .bind(json)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Renews `instance`'s sign of life and the lease it promises.
pub(super) async fn alive(
    pool: &SqlitePool,
    instance: &str,
    started_at_ms: i64,
    now_ms: i64,
    lease_ms: i64,
) -> Result<()> {
    if lease_ms <= 0 {
        return Err(StoreError::Invalid(format!("lease_ms = {lease_ms}")));
    }
    sqlx::query(
        "INSERT INTO gateway_instances (instance, started_at_ms, last_seen_ms, lease_ms) \
         VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (instance) DO UPDATE SET \
             last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms), lease_ms = excluded.lease_ms",
    )
    .bind(instance)
    .bind(started_at_ms)
    .bind(now_ms)
    .bind(lease_ms)
    .execute(pool)
    .await?;
    Ok(())
}

/// Processes whose last sign of life is within its lease at `now_ms`.
pub(super) async fn live(pool: &SqlitePool, now_ms: i64) -> Result<u32> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM gateway_instances WHERE last_seen_ms + lease_ms >= ?1",
    )
    .bind(now_ms)
    .fetch_one(pool)
    .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Turns the open requests of dead processes (other than `own`: past their own lease at
/// `now_ms`, or never seen and opened more than `unseen_lease_ms` ago) into `interrupted` usage
/// rows, in one transaction.
pub(super) async fn reconcile(
    pool: &SqlitePool,
    own: &str,
    now_ms: i64,
    unseen_lease_ms: i64,
) -> Result<u64> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // A process never seen alive may be one whose first sign of life has not landed yet (its
    // store write failed, or is queued): its requests are left alone for a lease too.
    let rows = sqlx::query(
        "SELECT o.* FROM usage_open AS o \
         LEFT JOIN gateway_instances AS i ON i.instance = o.instance \
         WHERE o.instance <> ?1 \
           AND CASE WHEN i.instance IS NULL THEN o.started_at_ms + ?3 < ?2 \
                    ELSE i.last_seen_ms + i.lease_ms < ?2 END \
         ORDER BY o.started_at_ms LIMIT 10000",
    )
    .bind(own)
    .bind(now_ms)
    .bind(unseen_lease_ms)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let open: Vec<OpenRow> = rows.iter().map(open_from_row).collect::<Result<_>>()?;
    let records: Vec<_> = open.iter().map(interrupted).collect();
    let checked = records
        .iter()
        .map(CheckedUsage::new)
        .collect::<Result<Vec<_>>>()?;
    // Idempotent by request id, and deletes the open rows it settles.
    insert_usage_in(&mut tx, &checked).await?;
    tx.commit().await?;
    Ok(u64::try_from(records.len()).unwrap_or(u64::MAX))
}
