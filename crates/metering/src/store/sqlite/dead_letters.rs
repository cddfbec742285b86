//! Records the ledger could not write, kept whole with the reason (see `ledger::writer`).

use sqlx::sqlite::SqlitePool;
use sqlx::Row;

use crate::model::DeadLetter;
use crate::store::Result;

pub(super) async fn insert(pool: &SqlitePool, letters: &[DeadLetter]) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for l in letters {
        sqlx::query(
            "INSERT INTO ledger_dead_letters (request_id, kind, record, error, at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&l.request_id)
        .bind(&l.kind)
        .bind(&l.record)
        .bind(&l.error)
        .bind(l.at_ms)
        .execute(&mut *tx)
        .await?;
    }
    // A final record kept here is the request's record: it is not left open to be settled
    // later as interrupted, which would bill an estimate beside it.
    let finals = letters
        .iter()
        .filter(|l| matches!(l.kind.as_str(), "usage" | "refusal"))
        .map(|l| l.request_id.as_str());
    super::open::close(&mut tx, finals).await?;
    tx.commit().await?;
    Ok(())
}

/// The newest `limit` dead letters, newest first.
pub(super) async fn list(pool: &SqlitePool, limit: u32) -> Result<Vec<DeadLetter>> {
    let rows = sqlx::query(
        "SELECT request_id, kind, record, error, at_ms FROM ledger_dead_letters \
         ORDER BY id DESC LIMIT ?1",
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
