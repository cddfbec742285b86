//! Idempotent batch inserts on SQLite, shared by the usage and refusal ledgers: which of a
//! batch's request ids are stored already, the multi-row `INSERT` text, and which records are
//! new (only those count in the SLI rollups).
//!
//! The stored ids are looked up before inserting rather than read back with `RETURNING`:
//! `RETURNING` made SQLite fill a scratch table with every inserted id and sqlx ship each one
//! back to the async side as a row (a channel message, a `String`, a hash insert per record),
//! to learn what is nearly always "all of them". Ids are minted per request, so the lookup
//! finds none unless a batch is retried after a commit that went through.

use std::collections::HashSet;

use sqlx::{Row, SqliteConnection};

use crate::store::{Result, StoreError};

/// A ledger table keyed by `request_id`.
pub(super) struct Table {
    name: &'static str,
    /// Its ids among those of a JSON array. One statement whatever the batch size, so SQLite
    /// prepares it once per connection. `CROSS JOIN` keeps the ids the outer loop: one
    /// primary-key probe each, never a scan of the table.
    stored: &'static str,
}

pub(super) const USAGE: Table = Table {
    name: "usage",
    stored: "SELECT t.request_id FROM json_each(?1) AS j \
             CROSS JOIN usage AS t ON t.request_id = j.value",
};

pub(super) const REFUSALS: Table = Table {
    name: "sli_refusals",
    stored: "SELECT t.request_id FROM json_each(?1) AS j \
             CROSS JOIN sli_refusals AS t ON t.request_id = j.value",
};

/// The ids of `ids` that `table` holds already.
pub(super) async fn stored_ids<'a>(
    conn: &mut SqliteConnection,
    table: &Table,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashSet<String>> {
    let json = serde_json::to_string(&ids.collect::<Vec<_>>())
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let rows = sqlx::query(table.stored)
        .bind(json)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<String, _>(0)?))
        .collect()
}

/// `INSERT INTO {table} ({columns}) VALUES (?, ..), .. ON CONFLICT (request_id) DO NOTHING`
/// for `rows` rows, one placeholder per comma-separated column. The same text for the same row
/// count, so sqlx's statement cache (100 per connection) can keep the sizes in use prepared.
pub(super) fn insert_sql(table: &Table, columns: &str, rows: usize) -> String {
    let width = columns.split(',').count();
    let row = format!("({})", vec!["?"; width].join(","));
    let mut sql = String::with_capacity(64 + columns.len() + rows * (row.len() + 1));
    sql.push_str("INSERT INTO ");
    sql.push_str(table.name);
    sql.push_str(" (");
    sql.push_str(columns);
    sql.push_str(") VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&row);
    }
    sql.push_str(" ON CONFLICT (request_id) DO NOTHING");
    sql
}

/// The items this batch stores for the first time: not stored before, and the first of any
/// id the batch holds twice (the insert keeps the first and skips the rest).
pub(super) fn unstored<'a, T>(
    items: impl IntoIterator<Item = &'a T>,
    id: impl Fn(&'a T) -> &'a str,
    stored: &HashSet<String>,
) -> Vec<&'a T>
where
    T: 'a,
{
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|item| {
            let id = id(item);
            !stored.contains(id) && seen.insert(id)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_insert_text_has_one_placeholder_group_per_row() {
        let sql = insert_sql(&REFUSALS, "a, b", 3);
        assert_eq!(
            sql,
            "INSERT INTO sli_refusals (a, b) VALUES (?,?),(?,?),(?,?) \
             ON CONFLICT (request_id) DO NOTHING"
        );
    }

    #[test]
    fn only_ids_not_stored_and_not_seen_before_in_the_batch_are_new() {
        let stored: HashSet<String> = ["b".to_string()].into();
        let items = ["a", "b", "c", "a", "d", "c"];
        let new = unstored(&items, |s: &&str| *s, &stored);
        assert_eq!(new, vec![&"a", &"c", &"d"]);
    }
}
