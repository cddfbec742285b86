//! SLI counts over an arbitrary window `[from_ms, to_ms)`, per tenant, tier, model, region and
//! provider, for the gateway's burn-rate alerts: whole minutes from the per-minute rollups
//! (cheap over 6 hours of traffic), and the ragged edges (the current, unfinished minute above
//! all) from the raw usage rows and refusals, so a window is exact to the millisecond and a
//! 5-minute window is not up to a minute stale. Windows shorter than a minute are read from raw
//! rows alone. The same split and the same counting as the SQLite store's.

use std::collections::BTreeMap;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

use super::reads::{counts_from_row, SUMS};
use crate::incident::ScopedCounts;
use crate::sli::{SliCounts, MS_PER_MINUTE, TTFT_SLOW_MS};
use crate::store::Result;

/// (tenant, tier, model, region, provider) → counts. Summed here rather than in SQL, since the
/// rollups and the two raw tables are three queries.
type Acc = BTreeMap<(String, String, String, String, String), SliCounts>;

pub(super) async fn window(pool: &PgPool, from_ms: i64, to_ms: i64) -> Result<Vec<ScopedCounts>> {
    let mut acc = Acc::new();
    if from_ms < to_ms {
        // The first minute wholly inside the window, and the minute the window ends in.
        let first_whole =
            from_ms.div_euclid(MS_PER_MINUTE) + i64::from(from_ms.rem_euclid(MS_PER_MINUTE) != 0);
        let end_minute = to_ms.div_euclid(MS_PER_MINUTE);
        if first_whole < end_minute {
            rollups(pool, first_whole, end_minute, &mut acc).await?;
            raw(pool, from_ms, first_whole * MS_PER_MINUTE, &mut acc).await?;
            raw(pool, end_minute * MS_PER_MINUTE, to_ms, &mut acc).await?;
        } else {
            raw(pool, from_ms, to_ms, &mut acc).await?;
        }
    }
    Ok(acc
        .into_iter()
        .map(
            |((tenant_id, tier, model, region, provider), counts)| ScopedCounts {
                tenant_id,
                tier,
                model,
                region,
                provider,
                counts,
            },
        )
        .collect())
}

fn add_rows(rows: Vec<PgRow>, acc: &mut Acc) -> Result<()> {
    for row in rows {
        let c = counts_from_row(&row)?;
        acc.entry((
            row.try_get("tenant_id")?,
            row.try_get("tier")?,
            row.try_get("model")?,
            row.try_get("region")?,
            row.try_get("provider")?,
        ))
        .or_default()
        .add(&c);
    }
    Ok(())
}

/// Minutes `[from_minute, to_minute)` from `sli_minutes` (its primary key leads with the
/// minute, so this is a range scan).
async fn rollups(pool: &PgPool, from_minute: i64, to_minute: i64, acc: &mut Acc) -> Result<()> {
    let sql = format!(
        "SELECT tenant_id, tier, model, region, provider, {SUMS} \
         FROM sli_minutes WHERE minute >= $1 AND minute < $2 \
         GROUP BY tenant_id, tier, model, region, provider"
    );
    let rows = sqlx::query(&sql)
        .bind(from_minute)
        .bind(to_minute)
        .fetch_all(pool)
        .await?;
    add_rows(rows, acc)
}

/// `[from_ms, to_ms)` from the raw rows, counted exactly as [`crate::sli::fold`] counts them
/// (the tier is the tenant's current one: the rollups take it at write time, the same thing
/// for the minutes just written). SQLite sums booleans; here `COUNT(*) FILTER` counts them,
/// which is `BIGINT` already.
async fn raw(pool: &PgPool, from_ms: i64, to_ms: i64, acc: &mut Acc) -> Result<()> {
    if from_ms >= to_ms {
        return Ok(());
    }
    // A 5xx as `SliCounts::of_record` counts it: the status the client got, a stream cut
    // after its 200, a request its gateway died under.
    const FIVE_XX: &str =
        "u.http_status >= 500 OR u.status IN ('failed_mid_stream', 'interrupted')";
    // A slow first token, unless the prompt was over its tier's cap.
    const SLOW: &str = "(NOT u.ttft_exempt AND COALESCE(u.ttft_ms, 0) >= $3)";
    // `tenants.id` is the primary key, so the join adds no rows; a tenant the store does not
    // know has tier ''.
    let sql = format!(
        "SELECT u.tenant_id AS tenant_id, COALESCE(t.tier, '') AS tier, \
             u.model AS model, u.region AS region, u.provider AS provider, \
             COUNT(*) AS requests, \
             COUNT(*) FILTER (WHERE u.status = 'completed') AS ok, \
             COUNT(*) FILTER (WHERE {FIVE_XX}) AS errors_5xx, \
             COUNT(*) FILTER (WHERE u.http_status = 429) AS errors_429, \
             COUNT(*) FILTER (WHERE {SLOW}) AS ttft_slow, \
             COUNT(*) FILTER (WHERE u.http_status <> 429 AND (({FIVE_XX}) OR {SLOW})) AS bad, \
             0::BIGINT AS throttled \
         FROM usage u LEFT JOIN tenants t ON t.id = u.tenant_id \
         WHERE u.started_at_ms >= $1 AND u.started_at_ms < $2 \
         GROUP BY 1, 2, 3, 4, 5"
    );
    let usage = sqlx::query(&sql)
        .bind(from_ms)
        .bind(to_ms)
        .bind(i64::try_from(TTFT_SLOW_MS).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    add_rows(usage, acc)?;
    // Refused before any worker: no region, no provider, no first token.
    let refusals = sqlx::query(
        "SELECT r.tenant_id AS tenant_id, COALESCE(t.tier, '') AS tier, r.model AS model, \
             ''::TEXT AS region, ''::TEXT AS provider, COUNT(*) AS requests, 0::BIGINT AS ok, \
             COUNT(*) FILTER (WHERE r.http_status >= 500) AS errors_5xx, \
             COUNT(*) FILTER (WHERE r.http_status = 429) AS errors_429, \
             0::BIGINT AS ttft_slow, \
             COUNT(*) FILTER (WHERE r.http_status >= 500) AS bad, \
             COUNT(*) FILTER (WHERE r.throttled) AS throttled \
         FROM sli_refusals r LEFT JOIN tenants t ON t.id = r.tenant_id \
         WHERE r.at_ms >= $1 AND r.at_ms < $2 \
         GROUP BY 1, 2, 3",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(pool)
    .await?;
    add_rows(refusals, acc)
}
