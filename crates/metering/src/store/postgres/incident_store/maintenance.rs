//! Maintenance windows on PostgreSQL, as on SQLite: declared, listed, and deleted only
//! before they start (once started, a window was announced and the SLA report's exclusions
//! must not change after the fact).

use sqlx::postgres::PgPool;
use sqlx::{Postgres, QueryBuilder};

use crate::maintenance::{Maintenance, NewMaintenance};
use crate::store::rows::maintenance_from_row;
use crate::store::{Result, StoreError};

const COLUMNS: &str = "id, start_ms, end_ms, scope, note, announced_at_ms, created_at_ms";

pub(super) async fn add(pool: &PgPool, w: &NewMaintenance) -> Result<Maintenance> {
    // Checked here too (the table's CHECK would say `Invalid` with a less helpful message).
    if w.end_ms <= w.start_ms {
        return Err(StoreError::Invalid(
            "a maintenance window must end after it starts".into(),
        ));
    }
    let sql = format!(
        "INSERT INTO maintenance (start_ms, end_ms, scope, note, announced_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    );
    // The notice is the gateway's clock at creation (see `crate::maintenance`).
    let row = sqlx::query(&sql)
        .bind(w.start_ms)
        .bind(w.end_ms)
        .bind(w.scope.to_string())
        .bind(&w.note)
        .bind(w.created_at_ms)
        .bind(w.created_at_ms)
        .fetch_one(pool)
        .await?;
    maintenance_from_row(&row)
}

/// Windows overlapping `[from_ms, to_ms)` (unbounded where `None`), by start.
pub(super) async fn list(
    pool: &PgPool,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<Vec<Maintenance>> {
    let mut qb =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM maintenance WHERE TRUE"));
    if let Some(from) = from_ms {
        qb.push(" AND end_ms > ").push_bind(from);
    }
    if let Some(to) = to_ms {
        qb.push(" AND start_ms < ").push_bind(to);
    }
    qb.push(" ORDER BY start_ms, id");
    let rows = qb.build().fetch_all(pool).await?;
    rows.iter().map(maintenance_from_row).collect()
}

/// Deletes a window that has not started by `now_ms`; `Conflict` if it has, `NotFound` if
/// there is none.
///
/// The check is in the `DELETE` itself, so no replica can delete a window between another's
/// check and delete. Only when it deleted nothing is the row looked up, to say why: a window's
/// start never changes, so a row still there is one that has started; a row gone was deleted
/// (by another replica, perhaps) and is not found.
pub(super) async fn delete(pool: &PgPool, id: i64, now_ms: i64) -> Result<()> {
    let deleted = sqlx::query("DELETE FROM maintenance WHERE id = $1 AND start_ms > $2")
        .bind(id)
        .bind(now_ms)
        .execute(pool)
        .await?;
    if deleted.rows_affected() > 0 {
        return Ok(());
    }
    let start: Option<i64> = sqlx::query_scalar("SELECT start_ms FROM maintenance WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    match start {
        None => Err(StoreError::NotFound(format!("maintenance window {id}"))),
        Some(_) => Err(StoreError::Conflict(format!(
            "maintenance window {id} has started; it was announced and stays on record"
        ))),
    }
}
