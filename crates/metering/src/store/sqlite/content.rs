//! Content logs on SQLite: insert (idempotent per request id), read, erase per tenant, and
//! delete what has expired.

use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Sqlite};

use crate::content::ContentRecord;
use crate::store::rows::content_from_row;
use crate::store::Result;

const COLUMNS: &str = "request_id, tenant_id, model, endpoint, stream, status, created_at_ms, \
     expires_at_ms, prompt, prompt_truncated, completion, completion_truncated";

/// 12 columns per row: 50 rows bind 600 parameters, well under SQLite's limit.
const INSERT_CHUNK: usize = 50;

pub(super) async fn insert(writer: &SqlitePool, batch: &[ContentRecord]) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in batch.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("INSERT INTO content_logs ({COLUMNS}) "));
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(&r.request_id)
                .push_bind(&r.tenant_id)
                .push_bind(&r.model)
                .push_bind(&r.endpoint)
                .push_bind(r.stream)
                .push_bind(&r.status)
                .push_bind(r.created_at_ms)
                .push_bind(r.expires_at_ms)
                .push_bind(&r.prompt)
                .push_bind(r.prompt_truncated)
                .push_bind(&r.completion)
                .push_bind(r.completion_truncated);
        });
        qb.push(" ON CONFLICT (request_id) DO NOTHING");
        qb.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn list(
    reader: &SqlitePool,
    tenant_id: &str,
    request_id: Option<&str>,
    limit: u32,
) -> Result<Vec<ContentRecord>> {
    let mut qb = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {COLUMNS} FROM content_logs WHERE tenant_id = "
    ));
    qb.push_bind(tenant_id);
    if let Some(id) = request_id {
        qb.push(" AND request_id = ").push_bind(id);
    }
    qb.push(" ORDER BY created_at_ms DESC, request_id LIMIT ")
        .push_bind(i64::from(limit));
    let rows = qb.build().fetch_all(reader).await?;
    rows.iter().map(content_from_row).collect()
}

pub(super) async fn erase(writer: &SqlitePool, tenant_id: &str) -> Result<u64> {
    let done = sqlx::query("DELETE FROM content_logs WHERE tenant_id = ?1")
        .bind(tenant_id)
        .execute(writer)
        .await?;
    Ok(done.rows_affected())
}

pub(super) async fn delete_expired(writer: &SqlitePool, now_ms: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM content_logs WHERE expires_at_ms <= ?1")
        .bind(now_ms)
        .execute(writer)
        .await?;
    Ok(done.rows_affected())
}
