//! The SLI rollups' write side on PostgreSQL: per-minute counts and latency histograms, added
//! to inside the ledger's transactions, and the refusals (requests turned away before any
//! worker) that count in them.

use std::collections::{BTreeMap, HashSet};

use sqlx::postgres::Postgres;
use sqlx::query_builder::Separated;
use sqlx::{PgConnection, QueryBuilder};

use super::{fit, open, MAX_BINDS, ROWS_PER_STATEMENT};
use crate::sli::{Refusal, SliDelta, SliKey};
use crate::store::Result;

/// Bind parameters per row: `sli_minutes` binds the tenant twice (for its tier), 13 in all;
/// `sli_latency` 9; refusals 6.
const _: () = assert!(ROWS_PER_STATEMENT * 13 <= MAX_BINDS);

/// Adds a batch's deltas to the rollups, in the caller's transaction after the rows they come
/// from were inserted, so both commit or neither does.
///
/// `ON CONFLICT DO UPDATE` adds to a row atomically even when replicas write the same minute at
/// once (Postgres locks the row and adds to its latest version). Keys go in the map's order,
/// the same in every replica, so two of them never hold each other's rows. Each key appears
/// once per statement, as `DO UPDATE` requires.
pub(super) async fn apply(
    conn: &mut PgConnection,
    deltas: &BTreeMap<SliKey, SliDelta>,
) -> Result<()> {
    if deltas.is_empty() {
        return Ok(());
    }
    // Converted before the first statement: a count that does not fit fails the batch whole.
    let minutes = deltas
        .iter()
        .map(|(key, d)| {
            let c = &d.counts;
            Ok((
                key,
                [
                    fit(c.requests, "requests")?,
                    fit(c.ok, "ok")?,
                    fit(c.errors_5xx, "errors_5xx")?,
                    fit(c.errors_429, "errors_429")?,
                    fit(c.ttft_slow, "ttft_slow")?,
                    fit(c.bad, "bad")?,
                    fit(c.throttled, "throttled")?,
                ],
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let latency = deltas
        .iter()
        .flat_map(|(key, d)| {
            d.latency.iter().map(move |((metric, le_ms), n)| {
                Ok((key, metric.as_str(), *le_ms, fit(*n, "latency count")?))
            })
        })
        .collect::<Result<Vec<_>>>()?;

    for chunk in minutes.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Postgres>::new(
            "INSERT INTO sli_minutes (minute, tenant_id, tier, model, region, provider, \
                 requests, ok, errors_5xx, errors_429, ttft_slow, bad, throttled) ",
        );
        qb.push_values(chunk, |mut b, (key, counts)| {
            push_key(&mut b, key);
            for n in counts {
                b.push_bind(*n);
            }
        });
        qb.push(
            " ON CONFLICT (minute, tenant_id, tier, model, region, provider) DO UPDATE SET \
                 requests = sli_minutes.requests + excluded.requests, \
                 ok = sli_minutes.ok + excluded.ok, \
                 errors_5xx = sli_minutes.errors_5xx + excluded.errors_5xx, \
                 errors_429 = sli_minutes.errors_429 + excluded.errors_429, \
                 ttft_slow = sli_minutes.ttft_slow + excluded.ttft_slow, \
                 bad = sli_minutes.bad + excluded.bad, \
                 throttled = sli_minutes.throttled + excluded.throttled",
        );
        qb.build().execute(&mut *conn).await?;
    }
    for chunk in latency.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::<Postgres>::new(
            "INSERT INTO sli_latency (minute, tenant_id, tier, model, region, provider, metric, \
                 le_ms, count) ",
        );
        qb.push_values(chunk, |mut b, (key, metric, le_ms, n)| {
            push_key(&mut b, key);
            b.push_bind(*metric).push_bind(*le_ms).push_bind(*n);
        });
        qb.push(
            " ON CONFLICT (minute, tenant_id, tier, model, region, provider, metric, le_ms) \
             DO UPDATE SET count = sli_latency.count + excluded.count",
        );
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// A rollup row's key columns: minute, tenant, tier, model, region, provider. The tier is the
/// tenant's as of this write; '' for a tenant the store does not know (the dev tenant of a
/// throwaway run, a since-deleted one): its minutes still count.
fn push_key<'q>(b: &mut Separated<'_, 'q, Postgres, &'static str>, key: &'q SliKey) {
    b.push_bind(key.minute)
        .push_bind(key.tenant_id.as_str())
        .push("COALESCE((SELECT tier FROM tenants WHERE id = ")
        .push_bind_unseparated(key.tenant_id.as_str())
        .push_unseparated("), '')")
        .push_bind(key.model.as_str())
        .push_bind(key.region.as_str())
        .push_bind(key.provider.as_str());
}

const REFUSAL_COLUMNS: &str = "request_id, at_ms, tenant_id, model, http_status, throttled";

/// Records refusals in the caller's transaction, skipping request ids stored already (as
/// [`super::usage::insert_in`] does for usage rows, and for the same reasons), closes their
/// open rows (a request refused after it was admitted, with no worker for it after all, was
/// opened), and returns the refusals this insert stored.
pub(super) async fn insert_refusals_in<'r>(
    conn: &mut PgConnection,
    batch: &'r [Refusal],
) -> Result<Vec<&'r Refusal>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<&Refusal> = batch.iter().collect();
    sorted.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    let mut stored: HashSet<String> = HashSet::new();
    for chunk in sorted.chunks(ROWS_PER_STATEMENT) {
        let mut qb =
            QueryBuilder::<Postgres>::new(format!("INSERT INTO sli_refusals ({REFUSAL_COLUMNS}) "));
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(r.request_id.as_str())
                .push_bind(r.at_ms)
                .push_bind(r.tenant_id.as_str())
                .push_bind(r.model.as_str())
                .push_bind(i64::from(r.http_status))
                .push_bind(r.throttled);
        });
        qb.push(" ON CONFLICT (request_id) DO NOTHING RETURNING request_id");
        let ids: Vec<String> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
        stored.extend(ids);
    }
    let ids: Vec<&str> = sorted.iter().map(|r| r.request_id.as_str()).collect();
    open::close(&mut *conn, &ids).await?;
    Ok(sorted
        .into_iter()
        .filter(|r| stored.remove(r.request_id.as_str()))
        .collect())
}
