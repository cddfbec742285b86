//! Opt-in content logs on PostgreSQL, with the SQLite store's semantics
//! (`sqlite/content.rs`): insert (one transaction per batch, idempotent per request id), read,
//! erase per tenant, and delete what has expired.
//!
//! Erasure: SQLite runs with `secure_delete`, so an erased or expired record's bytes are
//! overwritten with zeros at once. Postgres has no such setting: a deleted row stays in its
//! table page until `VACUUM` (autovacuum, normally) reclaims the space, and its bytes until a
//! later write reuses it; the WAL and backups hold it too. `VACUUM FULL content_logs` rewrites
//! the table without the dead rows, where an erasure must leave the table files promptly.

use std::borrow::Cow;

use async_trait::async_trait;
use sqlx::{Postgres, QueryBuilder};

use super::PgStore;
use crate::content::ContentRecord;
use crate::store::rows::content_from_row;
use crate::store::{ContentStore, Result, StoreError};

const COLUMNS: &str = "request_id, tenant_id, model, endpoint, stream, status, created_at_ms, \
     expires_at_ms, prompt, prompt_truncated, completion, completion_truncated";

/// 12 columns per row: 500 rows bind 6,000 parameters, well under Postgres's 65,535 per
/// statement, so a usual batch is one statement (one round trip).
const INSERT_CHUNK: usize = 500;

#[async_trait]
impl ContentStore for PgStore {
    async fn insert_content(&self, batch: &[ContentRecord]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        for r in batch {
            check_no_nul(r)?;
        }
        // Rows are inserted, and their request ids locked, in this order. Two replicas
        // inserting overlapping batches in different orders could each wait for a row the
        // other holds (a deadlock, and a failed batch); in one global order they cannot. The
        // sort is stable, so of an id repeated in the batch the first copy is kept, as on
        // SQLite.
        let mut rows: Vec<&ContentRecord> = batch.iter().collect();
        rows.sort_by(|a, b| a.request_id.cmp(&b.request_id));

        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut qb =
                QueryBuilder::<Postgres>::new(format!("INSERT INTO content_logs ({COLUMNS}) "));
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(&r.request_id)
                    .push_bind(&r.tenant_id)
                    .push_bind(&r.model)
                    .push_bind(&r.endpoint)
                    .push_bind(r.stream)
                    .push_bind(&r.status)
                    .push_bind(r.created_at_ms)
                    .push_bind(r.expires_at_ms)
                    .push_bind(without_nul(&r.prompt))
                    .push_bind(r.prompt_truncated)
                    .push_bind(without_nul(&r.completion))
                    .push_bind(r.completion_truncated);
            });
            // Skips ids stored before (a retried batch), stored by another replica meanwhile
            // (Postgres waits for that transaction, then skips), and repeated in this batch.
            qb.push(" ON CONFLICT (request_id) DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn content_records(
        &self,
        tenant_id: &str,
        request_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ContentRecord>> {
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {COLUMNS} FROM content_logs WHERE tenant_id = "
        ));
        qb.push_bind(tenant_id);
        if let Some(id) = request_id {
            qb.push(" AND request_id = ").push_bind(id);
        }
        // Ties broken in byte order, as SQLite's BINARY collation does, whatever the
        // database's locale.
        qb.push(" ORDER BY created_at_ms DESC, request_id COLLATE \"C\" LIMIT ")
            .push_bind(i64::from(limit));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(content_from_row).collect()
    }

    async fn erase_content(&self, tenant_id: &str) -> Result<u64> {
        // The rows' bytes remain on disk until VACUUM reclaims them (see the module doc).
        let done = sqlx::query("DELETE FROM content_logs WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn delete_expired_content(&self, now_ms: i64) -> Result<u64> {
        // As for erasure, VACUUM reclaims the space. Replicas running this at once are safe:
        // a row deleted by one is not counted by the other.
        let done = sqlx::query("DELETE FROM content_logs WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Postgres `TEXT` cannot hold U+0000 (SQLite's can). A prompt or completion is what a client
/// or a worker sent, and one NUL in it must not cost the batch (every tenant's logs in it):
/// there it is stored as U+FFFD, the replacement character. The gateway's own fields never
/// hold one; if one did, it is refused up front, naming the record and field, rather than by
/// the server mid-batch with only "invalid byte sequence".
fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

fn check_no_nul(r: &ContentRecord) -> Result<()> {
    let fields = [
        ("request_id", &r.request_id),
        ("tenant_id", &r.tenant_id),
        ("model", &r.model),
        ("endpoint", &r.endpoint),
        ("status", &r.status),
    ];
    match fields.iter().find(|(_, text)| text.contains('\0')) {
        Some((field, _)) => Err(StoreError::Invalid(format!(
            "content {:?}: {field} contains a NUL character, which Postgres text cannot store",
            r.request_id
        ))),
        None => Ok(()),
    }
}
