//! Records the ledger could not write, kept whole with the reason (see `ledger::writer`), on
//! PostgreSQL.

use sqlx::postgres::{PgPool, Postgres};
use sqlx::{QueryBuilder, Row};

use super::{open, ROWS_PER_STATEMENT};
use crate::model::DeadLetter;
use crate::store::Result;

pub(super) async fn insert(pool: &PgPool, letters: &[DeadLetter]) -> Result<()> {
    if letters.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    // One multi-row statement per chunk; ids are drawn in row order, so "newest first" in
    // [`list`] is the order the letters came in, reversed, as with one insert per letter.
    for chunk in letters.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Postgres>::new(
            "INSERT INTO ledger_dead_letters (request_id, kind, record, error, at_ms) ",
        );
        qb.push_values(chunk, |mut b, l| {
            b.push_bind(l.request_id.as_str())
                .push_bind(l.kind.as_str())
                .push_bind(l.record.as_str())
                .push_bind(l.error.as_str())
                .push_bind(l.at_ms);
        });
        qb.build().execute(&mut *tx).await?;
    }
    // A final record kept here is the request's record: it is not left open to be settled
    // later as interrupted, which would bill an estimate beside it.
    let finals: Vec<&str> = letters
        .iter()
        .filter(|l| matches!(l.kind.as_str(), "usage" | "refusal"))
        .map(|l| l.request_id.as_str())
        .collect();
    open::close(&mut tx, &finals).await?;
    tx.commit().await?;
    Ok(())
}

/// The newest `limit` dead letters, newest first.
pub(super) async fn list(pool: &PgPool, limit: u32) -> Result<Vec<DeadLetter>> {
    let rows = sqlx::query(
        "SELECT request_id, kind, record, error, at_ms FROM ledger_dead_letters \
         ORDER BY id DESC LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DeadLetter {
                request_id: row.try_get("request_id")?,
                kind: row.try_get("kind")?,
                record: row.try_get("record")?,
                error: row.try_get("error")?,
                at_ms: row.try_get("at_ms")?,
            })
        })
        .collect()
}
