//! Open requests and gateway processes' signs of life on PostgreSQL (see [`crate::open`]):
//! opening, checkpointing and closing requests, and settling those of dead processes as
//! `interrupted` usage rows, once, however many replicas reconcile at the same time.

use sqlx::postgres::{PgPool, Postgres};
use sqlx::{PgConnection, QueryBuilder};

use super::{fit, rollups, usage, MAX_BINDS, ROWS_PER_STATEMENT};
use crate::open::{interrupted, Checkpoint, OpenRequest, OpenRow};
use crate::sli::fold;
use crate::store::rows::open_from_row;
use crate::store::{Result, StoreError};

// 11 parameters per opening, 9 per checkpoint.
const _: () = assert!(ROWS_PER_STATEMENT * 11 <= MAX_BINDS);

/// Open rows settled per reconciliation; the rest wait for the next one (as on SQLite).
const RECONCILE_LIMIT: i64 = 10_000;

/// Records requests as open in the caller's transaction, unless their final record is there
/// already (a usage row, a refusal or a dead letter that overtook the opening through the
/// writer's overflow path) or they are open already.
pub(super) async fn insert_in(conn: &mut PgConnection, batch: &[OpenRequest]) -> Result<()> {
    // Checked before the first statement, so a value that does not fit writes nothing.
    let estimates = batch
        .iter()
        .map(|o| fit(o.prompt_estimate, "prompt_estimate"))
        .collect::<Result<Vec<_>>>()?;
    let mut rows: Vec<(&OpenRequest, i64)> = batch.iter().zip(estimates).collect();
    // In id order, as usage rows are inserted (see `usage::insert_in`), so two transactions
    // opening the same requests lock them in one order.
    rows.sort_by(|a, b| a.0.request_id.cmp(&b.0.request_id));
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Postgres>::new(
            "INSERT INTO usage_open (request_id, instance, started_at_ms, tenant_id, key_id, \
                 model, endpoint, stream, prompt_estimate, price_in_nanos, price_out_nanos) \
             SELECT o.* FROM (",
        );
        qb.push_values(chunk, |mut b, (o, estimate)| {
            b.push_bind(o.request_id.as_str())
                .push_bind(o.instance.as_str())
                .push_bind(o.started_at_ms)
                .push_bind(o.tenant_id.as_str())
                .push_bind(o.key_id.as_str())
                .push_bind(o.model.as_str())
                .push_bind(o.endpoint.as_str())
                .push_bind(o.stream)
                .push_bind(*estimate)
                .push_bind(o.price_in_nanos)
                .push_bind(o.price_out_nanos);
        });
        qb.push(
            ") AS o (request_id, instance, started_at_ms, tenant_id, key_id, model, endpoint, \
                 stream, prompt_estimate, price_in_nanos, price_out_nanos) \
             WHERE NOT EXISTS (SELECT 1 FROM usage AS u WHERE u.request_id = o.request_id) \
               AND NOT EXISTS (SELECT 1 FROM sli_refusals AS r WHERE r.request_id = o.request_id) \
               AND NOT EXISTS (SELECT 1 FROM ledger_dead_letters AS d \
                               WHERE d.request_id = o.request_id AND d.kind IN ('usage', 'refusal')) \
             ON CONFLICT (request_id) DO NOTHING",
        );
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Updates open requests with their latest checkpoint, in the caller's transaction; a request
/// already closed is left closed. A request should appear once in a batch (the ledger writer
/// keeps only its latest).
pub(super) async fn checkpoint_in(conn: &mut PgConnection, batch: &[Checkpoint]) -> Result<()> {
    let counts = batch
        .iter()
        .map(|c| {
            Ok((
                fit(c.relayed_tokens, "relayed_tokens")?,
                c.ttft_ms.map(|t| fit(t, "ttft_ms")).transpose()?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let rows: Vec<_> = batch.iter().zip(counts).collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Postgres>::new(
            "UPDATE usage_open AS o SET worker = c.worker, provider = c.provider, \
                 region = c.region, worker_price_nanos = c.worker_price_nanos, \
                 worker_slots = c.worker_slots, relayed_tokens = c.relayed_tokens, \
                 ttft_ms = c.ttft_ms, checkpoint_at_ms = c.checkpoint_at_ms \
             FROM (",
        );
        qb.push_values(chunk, |mut b, (c, (relayed, ttft_ms))| {
            b.push_bind(c.request_id.as_str())
                .push_bind(c.worker.as_str())
                .push_bind(c.provider.as_str())
                .push_bind(c.region.as_str())
                .push_bind(c.worker_price_nanos)
                .push_bind(i64::from(c.worker_slots))
                .push_bind(*relayed)
                .push_bind(*ttft_ms)
                .push_bind(c.at_ms);
        });
        qb.push(
            ") AS c (request_id, worker, provider, region, worker_price_nanos, worker_slots, \
                 relayed_tokens, ttft_ms, checkpoint_at_ms) \
             WHERE o.request_id = c.request_id",
        );
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes the open rows of requests whose final record is being written (in the caller's
/// transaction). One array parameter, whatever the batch size.
pub(super) async fn close(conn: &mut PgConnection, ids: &[&str]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM usage_open WHERE request_id = ANY($1)")
        .bind(ids)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Renews `instance`'s sign of life and the lease it promises. A late, older sign of life
/// never moves `last_seen_ms` back.
pub(super) async fn alive(
    pool: &PgPool,
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
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (instance) DO UPDATE SET \
             last_seen_ms = GREATEST(gateway_instances.last_seen_ms, excluded.last_seen_ms), \
             lease_ms = excluded.lease_ms",
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
pub(super) async fn live(pool: &PgPool, now_ms: i64) -> Result<u32> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM gateway_instances WHERE last_seen_ms + lease_ms >= $1",
    )
    .bind(now_ms)
    .fetch_one(pool)
    .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Turns the open requests of dead processes (other than `own`: past their own lease at
/// `now_ms`, or never seen and opened more than `unseen_lease_ms` ago) into `interrupted`
/// usage rows, in one transaction; returns how many usage rows it wrote.
///
/// Replicas reconcile at the same time: `FOR UPDATE OF o SKIP LOCKED` gives each the open rows
/// no other is settling, so they share the work instead of queueing on it, and the usage insert
/// (idempotent, counting only the rows it stored) keeps a request that still meets a second
/// settlement to one row, counted once.
pub(super) async fn reconcile(
    pool: &PgPool,
    own: &str,
    now_ms: i64,
    unseen_lease_ms: i64,
) -> Result<u64> {
    let mut tx = pool.begin().await?;
    // A process never seen alive may be one whose first sign of life has not landed yet (its
    // store write failed, or is queued): its requests are left alone for a lease too. The
    // sums are NUMERIC: a BIGINT sum past its range is an error in Postgres (SQLite goes to a
    // float), and no lease or clock value should make reconciliation fail.
    let rows = sqlx::query(
        "SELECT o.* FROM usage_open AS o \
         LEFT JOIN gateway_instances AS i ON i.instance = o.instance \
         WHERE o.instance <> $1 \
           AND CASE WHEN i.instance IS NULL THEN o.started_at_ms::NUMERIC + $3 < $2 \
                    ELSE i.last_seen_ms::NUMERIC + i.lease_ms < $2 END \
         ORDER BY o.started_at_ms, o.request_id LIMIT $4 \
         FOR UPDATE OF o SKIP LOCKED",
    )
    .bind(own)
    .bind(now_ms)
    .bind(unseen_lease_ms)
    .bind(RECONCILE_LIMIT)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let open: Vec<OpenRow> = rows.iter().map(open_from_row).collect::<Result<_>>()?;
    let records: Vec<_> = open.iter().map(interrupted).collect();
    let checked = usage::check(&records)?;
    // Idempotent by request id, and deletes the open rows it settles.
    let new = usage::insert_in(&mut tx, &checked).await?;
    let settled = new.len();
    rollups::apply(&mut tx, &fold(new, [])).await?;
    tx.commit().await?;
    Ok(u64::try_from(settled).unwrap_or(u64::MAX))
}
