//! Usage rows on PostgreSQL: checking a batch's integers before anything is written, and the
//! idempotent multi-row insert that reports which rows it stored.

use std::collections::HashSet;

use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::{open, MAX_BINDS, ROWS_PER_STATEMENT};
use crate::model::UsageRecord;
use crate::store::rows::CheckedUsage;
use crate::store::Result;

/// The usage table's columns, in the order [`insert_in`] binds them.
pub(super) const USAGE_COLUMNS: &str = "request_id, started_at_ms, tenant_id, key_id, model, \
     endpoint, stream, worker, provider, region, prompt_tokens, completion_tokens, \
     usage_estimated, usage_source, usage_note, ttft_ms, ttft_exempt, total_ms, status, \
     http_status, finish_reason, cost_nanos, cogs_nanos";

const USAGE_WIDTH: usize = 23;

// A full statement of usage rows stays within Postgres's bind limit.
const _: () = assert!(ROWS_PER_STATEMENT * USAGE_WIDTH <= MAX_BINDS);

/// Checks every record of a batch; the first that does not fit fails it (`Invalid`), so a bad
/// record never leaves half a batch written.
pub(super) fn check(batch: &[UsageRecord]) -> Result<Vec<CheckedUsage<'_>>> {
    batch.iter().map(CheckedUsage::new).collect()
}

/// Inserts checked records in the caller's transaction, skipping request ids stored already
/// (by an earlier batch, or by another replica), deletes their open-request rows, and returns
/// the records this insert stored: the ones to add to the rollups.
pub(super) async fn insert_in<'r>(
    conn: &mut PgConnection,
    checked: &[CheckedUsage<'r>],
) -> Result<Vec<&'r UsageRecord>> {
    if checked.is_empty() {
        return Ok(Vec::new());
    }
    // Sorted by id (stably: of an id sent twice, the first copy still comes first and is the
    // one stored), so replicas inserting overlapping batches lock rows in the same order and
    // wait for each other instead of deadlocking.
    let mut sorted: Vec<&CheckedUsage<'r>> = checked.iter().collect();
    sorted.sort_by(|a, b| a.rec.request_id.cmp(&b.rec.request_id));
    let mut stored: HashSet<String> = HashSet::new();
    for chunk in sorted.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Postgres>::new(format!("INSERT INTO usage ({USAGE_COLUMNS}) "));
        qb.push_values(chunk, |mut b, c| {
            let r = c.rec;
            b.push_bind(r.request_id.as_str())
                .push_bind(r.started_at_ms)
                .push_bind(r.tenant_id.as_str())
                .push_bind(r.key_id.as_str())
                .push_bind(r.model.as_str())
                .push_bind(r.endpoint.as_str())
                .push_bind(r.stream)
                .push_bind(r.worker.as_str())
                .push_bind(r.provider.as_str())
                .push_bind(r.region.as_str())
                .push_bind(c.prompt_tokens)
                .push_bind(c.completion_tokens)
                .push_bind(r.usage_estimated)
                .push_bind(r.usage_source.as_str())
                .push_bind(r.usage_note.as_deref())
                .push_bind(c.ttft_ms)
                .push_bind(r.ttft_exempt)
                .push_bind(c.total_ms)
                .push_bind(r.status.as_str())
                .push_bind(i64::from(r.http_status))
                .push_bind(r.finish_reason.as_deref())
                .push_bind(r.cost)
                .push_bind(r.cogs);
        });
        // RETURNING lists only rows this statement inserted: not those another transaction
        // committed first, nor a second copy of an id within the batch.
        qb.push(" ON CONFLICT (request_id) DO NOTHING RETURNING request_id");
        let ids: Vec<String> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
        stored.extend(ids);
    }
    let ids: Vec<&str> = sorted.iter().map(|c| c.rec.request_id.as_str()).collect();
    open::close(&mut *conn, &ids).await?;
    // `remove`: an id counts once, with the first copy (the one the insert kept).
    Ok(sorted
        .iter()
        .filter(|c| stored.remove(c.rec.request_id.as_str()))
        .map(|c| c.rec)
        .collect())
}
