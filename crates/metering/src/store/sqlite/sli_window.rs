//! SLI counts over an arbitrary window `[from_ms, to_ms)`, per tenant, tier, model, region and
//! provider, for the
//! gateway's burn-rate alerts: whole minutes from the per-minute rollups (cheap over 6 hours
//! of traffic), and the ragged edges (the current, unfinished minute above all) from the raw
//! usage rows and refusals, so a window is exact to the millisecond and a 5-minute window is
//! not up to a minute stale. Windows shorter than a minute are read from raw rows alone.

use std::collections::BTreeMap;

use sqlx::sqlite::SqlitePool;
use sqlx::Row;

use crate::incident::ScopedCounts;
use crate::sli::{SliCounts, MS_PER_MINUTE, TTFT_SLOW_MS};
use crate::store::Result;

/// (tenant, tier, model, region, provider) → counts.
type Acc = BTreeMap<(String, String, String, String, String), SliCounts>;

pub(super) async fn window(
    reader: &SqlitePool,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<ScopedCounts>> {
    let mut acc = Acc::new();
    if from_ms < to_ms {
        // The first minute wholly inside the window, and the minute the window ends in.
        let first_whole =
            from_ms.div_euclid(MS_PER_MINUTE) + i64::from(from_ms.rem_euclid(MS_PER_MINUTE) != 0);
        let end_minute = to_ms.div_euclid(MS_PER_MINUTE);
        if first_whole < end_minute {
            rollups(reader, first_whole, end_minute, &mut acc).await?;
            raw(reader, from_ms, first_whole * MS_PER_MINUTE, &mut acc).await?;
            raw(reader, end_minute * MS_PER_MINUTE, to_ms, &mut acc).await?;
        } else {
            raw(reader, from_ms, to_ms, &mut acc).await?;
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

fn add_rows(rows: Vec<sqlx::sqlite::SqliteRow>, acc: &mut Acc) -> Result<()> {
    for row in rows {
        let c = super::sli::counts_from_row(&row)?;
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
async fn rollups(
    reader: &SqlitePool,
    from_minute: i64,
    to_minute: i64,
    acc: &mut Acc,
) -> Result<()> {
    let rows = sqlx::query(
        "SELECT tenant_id, tier, model, region, provider, SUM(requests) AS requests, \
             SUM(ok) AS ok, SUM(errors_5xx) AS errors_5xx, SUM(errors_429) AS errors_429, \
             SUM(ttft_slow) AS ttft_slow, SUM(bad) AS bad, SUM(throttled) AS throttled \
         FROM sli_minutes WHERE minute >= ?1 AND minute < ?2 \
         GROUP BY tenant_id, tier, model, region, provider",
    )
    .bind(from_minute)
    .bind(to_minute)
    .fetch_all(reader)
    .await?;
    add_rows(rows, acc)
}

/// `[from_ms, to_ms)` from the raw rows, counted exactly as [`crate::sli::fold`] counts them
/// (the tier is the tenant's current one: the rollups take it at write time, the same thing
/// for the minutes just written).
async fn raw(reader: &SqlitePool, from_ms: i64, to_ms: i64, acc: &mut Acc) -> Result<()> {
    if from_ms >= to_ms {
        return Ok(());
    }
    // A 5xx as `SliCounts::of_record` counts it: the status the client got, a stream cut
    // after its 200, a request its gateway died under.
    const FIVE_XX: &str =
        "u.http_status >= 500 OR u.status IN ('failed_mid_stream', 'interrupted')";
    // A slow first token, unless the prompt was over its tier's cap.
    const SLOW: &str = "(u.ttft_exempt = 0 AND COALESCE(u.ttft_ms, 0) >= ?3)";
    let sql = format!(
        "SELECT u.tenant_id AS tenant_id, \
             COALESCE((SELECT tier FROM tenants WHERE id = u.tenant_id), '') AS tier, \
             u.model AS model, u.region AS region, u.provider AS provider, COUNT(*) AS requests, \
             SUM(u.status = 'completed') AS ok, \
             SUM({FIVE_XX}) AS errors_5xx, \
             SUM(u.http_status = 429) AS errors_429, \
             SUM({SLOW}) AS ttft_slow, \
             SUM(u.http_status <> 429 AND (({FIVE_XX}) OR {SLOW})) AS bad, \
             0 AS throttled \
         FROM usage u WHERE u.started_at_ms >= ?1 AND u.started_at_ms < ?2 \
         GROUP BY 1, 2, 3, 4, 5"
    );
    let usage = sqlx::query(&sql)
        .bind(from_ms)
        .bind(to_ms)
        .bind(i64::try_from(TTFT_SLOW_MS).unwrap_or(i64::MAX))
        .fetch_all(reader)
        .await?;
    add_rows(usage, acc)?;
    let refusals = sqlx::query(
        "SELECT r.tenant_id AS tenant_id, \
             COALESCE((SELECT tier FROM tenants WHERE id = r.tenant_id), '') AS tier, \
             r.model AS model, '' AS region, '' AS provider, COUNT(*) AS requests, 0 AS ok, \
             SUM(r.http_status >= 500) AS errors_5xx, \
             SUM(r.http_status = 429) AS errors_429, 0 AS ttft_slow, \
             SUM(r.http_status >= 500) AS bad, SUM(r.throttled) AS throttled \
         FROM sli_refusals r WHERE r.at_ms >= ?1 AND r.at_ms < ?2 \
         GROUP BY 1, 2, 3, 4, 5",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(reader)
    .await?;
    add_rows(refusals, acc)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::model::{UsageRecord, UsageStatus};
    use crate::sli::Refusal;
    use crate::store::prelude::*;
    use crate::store::sqlite::SqliteStore;

    fn record(id: &str, at_ms: i64, http: u16) -> UsageRecord {
        UsageRecord {
            request_id: id.into(),
            started_at_ms: at_ms,
            tenant_id: "acme".into(),
            key_id: "k".into(),
            model: "m".into(),
            endpoint: "/v1/chat/completions".into(),
            stream: true,
            worker: "w".into(),
            provider: "p".into(),
            region: "eu".into(),
            prompt_tokens: 1,
            completion_tokens: 1,
            usage_estimated: false,
            usage_source: Default::default(),
            usage_note: None,
            ttft_ms: Some(100),
            ttft_exempt: false,
            total_ms: 200,
            status: if http == 200 {
                UsageStatus::Completed
            } else {
                UsageStatus::Failed
            },
            http_status: http,
            finish_reason: None,
            cost: 0,
            cogs: 0,
        }
    }

    #[tokio::test]
    async fn whole_minutes_from_rollups_and_edges_from_raw_rows_to_the_millisecond() {
        let store = SqliteStore::in_memory().await.unwrap();
        store
            .insert_usage(&[
                record("before", 29_999, 502),
                record("edge-1", 30_000, 200),
                record("whole", 90_000, 502),
                record("edge-2", 149_999, 200),
                record("after", 150_000, 502),
            ])
            .await
            .unwrap();
        store
            .insert_refusals(&[Refusal {
                request_id: "r".into(),
                at_ms: 140_000,
                tenant_id: "acme".into(),
                model: "m".into(),
                http_status: 503,
                throttled: false,
            }])
            .await
            .unwrap();
        // [30 s, 150 s): minute 1 whole, then half of minute 0 and of minute 2.
        let total = |w: &[crate::incident::ScopedCounts]| {
            let mut sum = crate::sli::SliCounts::default();
            w.iter().for_each(|r| sum.add(&r.counts));
            sum
        };
        let w = store.sli_window(30_000, 150_000).await.unwrap();
        // Two rows: the worker's traffic (eu, p) and the refusal, which reached no worker.
        assert_eq!(w.len(), 2);
        let served = w.iter().find(|r| r.region == "eu").unwrap();
        assert_eq!(
            (
                served.tenant_id.as_str(),
                served.tier.as_str(),
                served.model.as_str(),
                served.provider.as_str()
            ),
            ("acme", "", "m", "p")
        );
        assert_eq!(served.counts.requests, 3);
        assert_eq!(total(&w).requests, 4);
        assert_eq!(total(&w).ok, 2);
        assert_eq!(total(&w).errors_5xx, 2);
        // Shorter than a minute: raw rows only.
        let w = store.sli_window(140_000, 150_000).await.unwrap();
        assert_eq!(total(&w).requests, 2);
        assert!(store.sli_window(10, 10).await.unwrap().is_empty());
    }
}
