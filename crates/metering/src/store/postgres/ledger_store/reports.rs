//! The usage reports on PostgreSQL: usage per tenant, period and model, the raw records,
//! margin per model and provider, and tokens per key for restoring quotas.
//!
//! Two differences from SQLite that the SQL spells out:
//! - `SUM(bigint)` is `NUMERIC` in Postgres: sums are cast back to `BIGINT` (a sum past its
//!   range is then an error, as SQLite's integer overflow is).
//! - Text sorts by the database's collation (say `en_US`, where `"Zeta"` follows `"acme"`),
//!   SQLite's by bytes: `ORDER BY` names `COLLATE "C"`, so both stores list rows in one order.

use sqlx::postgres::{PgPool, Postgres};
use sqlx::{QueryBuilder, Row};

use super::to_u64;
use super::usage::USAGE_COLUMNS;
use crate::model::UsageRecord;
use crate::store::rows::usage_from_row;
use crate::store::{KeyTokens, MarginRow, Period, Result, UsageQuery, UsageRow};

/// Appends ` WHERE ...` for a usage query. Only the filters that are set are written, so the
/// planner can use the (tenant_id, started_at_ms) and (started_at_ms) indexes.
fn push_usage_filter(qb: &mut QueryBuilder<'_, Postgres>, q: &UsageQuery) {
    qb.push(" WHERE TRUE");
    if let Some(t) = &q.tenant_id {
        qb.push(" AND tenant_id = ").push_bind(t.clone());
    }
    if let Some(from) = q.from_ms {
        qb.push(" AND started_at_ms >= ").push_bind(from);
    }
    if let Some(to) = q.to_ms {
        qb.push(" AND started_at_ms < ").push_bind(to);
    }
}

pub(super) async fn usage(
    pool: &PgPool,
    query: &UsageQuery,
    period: Period,
) -> Result<Vec<UsageRow>> {
    let format = match period {
        Period::Day => "YYYY-MM-DD",
        Period::Month => "YYYY-MM",
    };
    // As SQLite's `strftime(.., started_at_ms / 1000, 'unixepoch')`: whole seconds by integer
    // division (truncating, as SQLite's does, for times before 1970 too), then the UTC calendar
    // day or month, whatever the session's time zone.
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT tenant_id, \
             to_char(to_timestamp(started_at_ms / 1000) AT TIME ZONE 'UTC', '{format}') \
                 COLLATE \"C\" AS period, \
             model, \
             COUNT(*) AS requests, \
             SUM(prompt_tokens)::BIGINT AS prompt_tokens, \
             SUM(completion_tokens)::BIGINT AS completion_tokens, \
             SUM(cost_nanos)::BIGINT AS cost, \
             SUM(cogs_nanos)::BIGINT AS cogs \
         FROM usage"
    ));
    push_usage_filter(&mut qb, query);
    qb.push(
        " GROUP BY tenant_id, period, model \
         ORDER BY tenant_id COLLATE \"C\", period, model COLLATE \"C\"",
    );
    let rows = qb.build().fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(UsageRow {
                tenant_id: row.try_get("tenant_id")?,
                period: row.try_get("period")?,
                model: row.try_get("model")?,
                requests: to_u64(row.try_get("requests")?, "requests")?,
                prompt_tokens: to_u64(row.try_get("prompt_tokens")?, "prompt_tokens")?,
                completion_tokens: to_u64(row.try_get("completion_tokens")?, "completion_tokens")?,
                cost: row.try_get("cost")?,
                cogs: row.try_get("cogs")?,
            })
        })
        .collect()
}

pub(super) async fn usage_records(pool: &PgPool, query: &UsageQuery) -> Result<Vec<UsageRecord>> {
    let mut qb = QueryBuilder::<Postgres>::new(format!("SELECT {USAGE_COLUMNS} FROM usage"));
    push_usage_filter(&mut qb, query);
    qb.push(" ORDER BY started_at_ms, request_id COLLATE \"C\"");
    let rows = qb.build().fetch_all(pool).await?;
    rows.iter().map(usage_from_row).collect()
}

pub(super) async fn margin(pool: &PgPool, query: &UsageQuery) -> Result<Vec<MarginRow>> {
    let mut qb = QueryBuilder::<Postgres>::new(
        "SELECT model, provider, \
             COUNT(*) AS requests, \
             SUM(prompt_tokens)::BIGINT AS prompt_tokens, \
             SUM(completion_tokens)::BIGINT AS completion_tokens, \
             SUM(cost_nanos)::BIGINT AS revenue, \
             SUM(cogs_nanos)::BIGINT AS cogs \
         FROM usage",
    );
    push_usage_filter(&mut qb, query);
    qb.push(" GROUP BY model, provider ORDER BY model COLLATE \"C\", provider COLLATE \"C\"");
    let rows = qb.build().fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(MarginRow {
                model: row.try_get("model")?,
                provider: row.try_get("provider")?,
                requests: to_u64(row.try_get("requests")?, "requests")?,
                prompt_tokens: to_u64(row.try_get("prompt_tokens")?, "prompt_tokens")?,
                completion_tokens: to_u64(row.try_get("completion_tokens")?, "completion_tokens")?,
                revenue: row.try_get("revenue")?,
                cogs: row.try_get("cogs")?,
            })
        })
        .collect()
}

pub(super) async fn tokens_by_key_since(pool: &PgPool, from_ms: i64) -> Result<Vec<KeyTokens>> {
    // The two sums are NUMERIC, so adding them cannot overflow before the cast; the order is
    // SQLite's (its GROUP BY hands groups out sorted), so callers see the same list.
    let rows = sqlx::query(
        "SELECT tenant_id, key_id, \
             (SUM(prompt_tokens) + SUM(completion_tokens))::BIGINT AS tokens \
         FROM usage WHERE started_at_ms >= $1 \
         GROUP BY tenant_id, key_id \
         ORDER BY tenant_id COLLATE \"C\", key_id COLLATE \"C\"",
    )
    .bind(from_ms)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(KeyTokens {
                tenant_id: row.try_get("tenant_id")?,
                key_id: row.try_get("key_id")?,
                tokens: to_u64(row.try_get("tokens")?, "tokens")?,
            })
        })
        .collect()
}
