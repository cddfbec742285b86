//! `SliStore` on Postgres: every read against hand-computed counts, on rollups and raw rows
//! seeded with plain SQL (the ledger that writes them is tested on its own), and the writes
//! replicas share (heartbeats, probe minutes) from two stores on one schema at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pg;

use std::collections::BTreeSet;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use switchyard_metering::incident::ScopedCounts;
use switchyard_metering::model::{UsageRecord, UsageStatus};
use switchyard_metering::sli::{
    fold, BucketLatency, FleetMinute, LatencyCount, Metric, MinuteCounts, ProbeMinute, Refusal,
    ScopeCounts, SliCounts, OVERFLOW_LE_MS,
};
use switchyard_metering::store::postgres::PgStore;
use switchyard_metering::store::{SliStore, StoreError, UsageQuery};

/// A unix minute on an hour's boundary (2026-11-28 05:20 UTC), so hours are easy to count.
const M: i64 = 29_930_880;
const MIN: i64 = 60_000;

/// A store and a plain pool on the same fresh schema. `pg::fresh` does not say which schema it
/// made, and the rollups are seeded with SQL, so the schema is named here the same way.
async fn fresh() -> (PgStore, PgPool, String) {
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let store = PgStore::connect_in_schema(&pg::url(), &schema)
        .await
        .unwrap_or_else(|e| panic!("Postgres at {} ({}): {e}", pg::url(), pg::URL_ENV));
    let seed = seed_pool(&schema).await;
    (store, seed, schema)
}

async fn seed_pool(schema: &str) -> PgPool {
    let options = PgConnectOptions::from_str(&pg::url())
        .unwrap()
        .options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap()
}

/// Drops a passing test's schema (a failing one keeps it, to look at).
async fn drop_schema(seed: PgPool, schema: &str) {
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&seed)
        .await
        .unwrap();
    seed.close().await;
}

fn c(requests: u64, ok: u64, e5: u64, e429: u64, slow: u64, bad: u64, thr: u64) -> SliCounts {
    SliCounts {
        requests,
        ok,
        errors_5xx: e5,
        errors_429: e429,
        ttft_slow: slow,
        bad,
        throttled: thr,
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap()
}

async fn tenant(seed: &PgPool, id: &str, tier: &str) {
    sqlx::query("INSERT INTO tenants (id, tier, created_at) VALUES ($1, $2, 0)")
        .bind(id)
        .bind(tier)
        .execute(seed)
        .await
        .unwrap();
}

/// One `sli_minutes` row: (minute, tenant, tier, model, region, provider).
async fn minute_row(seed: &PgPool, key: (i64, &str, &str, &str, &str, &str), n: SliCounts) {
    sqlx::query(
        "INSERT INTO sli_minutes (minute, tenant_id, tier, model, region, provider, requests, \
             ok, errors_5xx, errors_429, ttft_slow, bad, throttled) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (minute, tenant_id, tier, model, region, provider) DO UPDATE SET \
             requests = sli_minutes.requests + excluded.requests, \
             ok = sli_minutes.ok + excluded.ok, \
             errors_5xx = sli_minutes.errors_5xx + excluded.errors_5xx, \
             errors_429 = sli_minutes.errors_429 + excluded.errors_429, \
             ttft_slow = sli_minutes.ttft_slow + excluded.ttft_slow, \
             bad = sli_minutes.bad + excluded.bad, \
             throttled = sli_minutes.throttled + excluded.throttled",
    )
    .bind(key.0)
    .bind(key.1)
    .bind(key.2)
    .bind(key.3)
    .bind(key.4)
    .bind(key.5)
    .bind(i(n.requests))
    .bind(i(n.ok))
    .bind(i(n.errors_5xx))
    .bind(i(n.errors_429))
    .bind(i(n.ttft_slow))
    .bind(i(n.bad))
    .bind(i(n.throttled))
    .execute(seed)
    .await
    .unwrap();
}

/// One `sli_latency` row: (minute, tenant, model), then metric, bucket and count.
async fn latency_row(seed: &PgPool, key: (i64, &str, &str), metric: &str, le_ms: i64, n: u64) {
    sqlx::query(
        "INSERT INTO sli_latency (minute, tenant_id, tier, model, region, provider, metric, \
             le_ms, count) VALUES ($1, $2, 'pro', $3, 'eu', 'p', $4, $5, $6)",
    )
    .bind(key.0)
    .bind(key.1)
    .bind(key.2)
    .bind(metric)
    .bind(le_ms)
    .bind(i(n))
    .execute(seed)
    .await
    .unwrap();
}

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

fn refusal(id: &str, at_ms: i64, http_status: u16, throttled: bool) -> Refusal {
    Refusal {
        request_id: id.into(),
        at_ms,
        tenant_id: "acme".into(),
        model: "m".into(),
        http_status,
        throttled,
    }
}

/// What the ledger would have stored for these: the raw rows, and their minutes' rollups as
/// `sli::fold` counts them, with the tenant's tier as of now ('' for an unknown tenant).
async fn ledger(seed: &PgPool, records: &[UsageRecord], refusals: &[Refusal]) {
    for r in records {
        sqlx::query(
            "INSERT INTO usage (request_id, started_at_ms, tenant_id, key_id, model, endpoint, \
                 stream, worker, provider, region, prompt_tokens, completion_tokens, \
                 usage_estimated, ttft_ms, ttft_exempt, total_ms, status, http_status, \
                 cost_nanos, cogs_nanos) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18, 0, 0)",
        )
        .bind(&r.request_id)
        .bind(r.started_at_ms)
        .bind(&r.tenant_id)
        .bind(&r.key_id)
        .bind(&r.model)
        .bind(&r.endpoint)
        .bind(r.stream)
        .bind(&r.worker)
        .bind(&r.provider)
        .bind(&r.region)
        .bind(i(r.prompt_tokens))
        .bind(i(r.completion_tokens))
        .bind(r.usage_estimated)
        .bind(r.ttft_ms.map(i))
        .bind(r.ttft_exempt)
        .bind(i(r.total_ms))
        .bind(r.status.as_str())
        .bind(i64::from(r.http_status))
        .execute(seed)
        .await
        .unwrap();
    }
    for r in refusals {
        sqlx::query(
            "INSERT INTO sli_refusals (request_id, at_ms, tenant_id, model, http_status, \
                 throttled) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.request_id)
        .bind(r.at_ms)
        .bind(&r.tenant_id)
        .bind(&r.model)
        .bind(i64::from(r.http_status))
        .bind(r.throttled)
        .execute(seed)
        .await
        .unwrap();
    }
    for (key, delta) in fold(records, refusals) {
        let tier: Option<String> = sqlx::query_scalar("SELECT tier FROM tenants WHERE id = $1")
            .bind(&key.tenant_id)
            .fetch_optional(seed)
            .await
            .unwrap();
        let tier = tier.unwrap_or_default();
        let k = (key.minute, key.tenant_id.as_str(), tier.as_str());
        minute_row(
            seed,
            (k.0, k.1, k.2, &key.model, &key.region, &key.provider),
            delta.counts,
        )
        .await;
    }
}

fn total(w: &[ScopedCounts]) -> SliCounts {
    let mut sum = SliCounts::default();
    w.iter().for_each(|r| sum.add(&r.counts));
    sum
}

fn scoped(key: (&str, &str, &str, &str, &str), counts: SliCounts) -> ScopedCounts {
    ScopedCounts {
        tenant_id: key.0.into(),
        tier: key.1.into(),
        model: key.2.into(),
        region: key.3.into(),
        provider: key.4.into(),
        counts,
    }
}

fn q(tenant: Option<&str>, from_ms: Option<i64>, to_ms: Option<i64>) -> UsageQuery {
    UsageQuery {
        tenant_id: tenant.map(String::from),
        from_ms,
        to_ms,
    }
}

/// Rollup rows for the per-tenant and fleet-wide minute reads. Two of acme's rows hold 3e9
/// requests each: their sum only fits a `BIGINT`.
async fn seed_minutes(seed: &PgPool) {
    let rows = [
        (
            (M, "acme", "pro", "m1", "eu", "p1"),
            c(3_000_000_000, 2_999_999_990, 4, 6, 1, 5, 0),
        ),
        (
            (M, "acme", "pro", "m2", "us", "p2"),
            c(3_000_000_000, 3_000_000_000, 0, 0, 0, 0, 0),
        ),
        // Refused before any worker, and written while acme had no tier yet.
        ((M, "acme", "", "m1", "", ""), c(2, 0, 1, 0, 0, 1, 1)),
        (
            (M + 1, "acme", "pro", "m1", "eu", "p1"),
            c(7, 7, 0, 0, 0, 0, 0),
        ),
        (
            (M + 2, "acme", "pro", "m1", "eu", "p1"),
            c(1, 1, 0, 0, 0, 0, 0),
        ),
        // Upper case sorts before lower case, bytewise (SQLite's BINARY order).
        (
            (M, "Zeta", "free", "m1", "eu", "p1"),
            c(4, 3, 0, 1, 0, 0, 0),
        ),
        (
            (M + 1, "beta", "free", "m1", "eu", "p1"),
            c(5, 5, 0, 0, 0, 0, 0),
        ),
    ];
    for (key, n) in rows {
        minute_row(seed, key, n).await;
    }
}

fn mc(tenant_id: &str, minute: i64, counts: SliCounts) -> MinuteCounts {
    MinuteCounts {
        tenant_id: tenant_id.into(),
        minute,
        counts,
    }
}

#[tokio::test]
async fn minutes_are_summed_per_tenant_and_minute_within_the_query() {
    let (store, seed, schema) = fresh().await;
    assert!(store
        .sli_minutes(&q(None, None, None))
        .await
        .unwrap()
        .is_empty());
    seed_minutes(&seed).await;
    let acme_m = c(6_000_000_002, 5_999_999_990, 5, 6, 1, 6, 1);
    let all = store.sli_minutes(&q(None, None, None)).await.unwrap();
    assert_eq!(
        all,
        vec![
            mc("Zeta", M, c(4, 3, 0, 1, 0, 0, 0)),
            mc("acme", M, acme_m),
            mc("acme", M + 1, c(7, 7, 0, 0, 0, 0, 0)),
            mc("acme", M + 2, c(1, 1, 0, 0, 0, 0, 0)),
            mc("beta", M + 1, c(5, 5, 0, 0, 0, 0, 0)),
        ]
    );
    // Bounds are rounded down to their minute: the last millisecond of M still takes M, and a
    // `to` inside M + 2 stops before it.
    let acme = q(
        Some("acme"),
        Some(M * MIN + 59_999),
        Some((M + 2) * MIN + 30_000),
    );
    assert_eq!(
        store.sli_minutes(&acme).await.unwrap(),
        vec![
            mc("acme", M, acme_m),
            mc("acme", M + 1, c(7, 7, 0, 0, 0, 0, 0))
        ]
    );
    let from = q(None, Some((M + 1) * MIN), None);
    let minutes: Vec<_> = store
        .sli_minutes(&from)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.tenant_id, m.minute))
        .collect();
    assert_eq!(
        minutes,
        [("acme", M + 1), ("acme", M + 2), ("beta", M + 1)].map(|(t, m)| (t.to_string(), m))
    );
    assert!(store
        .sli_minutes(&q(None, None, Some((M + 1) * MIN - 1)))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .sli_minutes(&q(None, None, Some((M + 1) * MIN)))
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(store
        .sli_minutes(&q(Some("nobody"), None, None))
        .await
        .unwrap()
        .is_empty());
    drop_schema(seed, &schema).await;
}

async fn seed_latency(seed: &PgPool) {
    let rows = [
        ((M - 1, "acme", "m1"), "ttft", 250, 1),
        ((M, "acme", "m1"), "ttft", 250, 2),
        ((M, "acme", "m2"), "ttft", 250, 3),
        ((M + 59, "acme", "m1"), "ttft", 250, 4),
        (
            (M + 59, "acme", "m1"),
            "ttft",
            OVERFLOW_LE_MS,
            5_000_000_000,
        ),
        ((M, "acme", "m1"), "ttlt_256", 1_000, 6),
        ((M, "acme", "m1"), "ttlt", 1_000, 7),
        ((M + 60, "acme", "m1"), "ttft", 5, 8),
        ((M, "beta", "m1"), "ttft", 100, 9),
    ];
    for (key, metric, le, n) in rows {
        latency_row(seed, key, metric, le, n).await;
    }
}

fn lc(tenant_id: &str, hour: i64, metric: Metric, le_ms: i64, count: u64) -> LatencyCount {
    LatencyCount {
        tenant_id: tenant_id.into(),
        hour,
        metric,
        le_ms,
        count,
    }
}

#[tokio::test]
async fn latency_is_summed_per_tenant_hour_metric_and_bucket() {
    let (store, seed, schema) = fresh().await;
    seed_latency(&seed).await;
    let h = M / 60;
    let hour_h = vec![
        lc("acme", h, Metric::Ttft, 250, 9),
        lc("acme", h, Metric::Ttft, OVERFLOW_LE_MS, 5_000_000_000),
        lc("acme", h, Metric::Ttlt, 1_000, 7),
        lc("acme", h, Metric::Ttlt256, 1_000, 6),
    ];
    let mut all = vec![lc("acme", h - 1, Metric::Ttft, 250, 1)];
    all.extend(hour_h.clone());
    all.push(lc("acme", h + 1, Metric::Ttft, 5, 8));
    all.push(lc("beta", h, Metric::Ttft, 100, 9));
    assert_eq!(store.sli_latency(&q(None, None, None)).await.unwrap(), all);
    let acme_h = q(Some("acme"), Some(M * MIN), Some((M + 60) * MIN));
    assert_eq!(store.sli_latency(&acme_h).await.unwrap(), hour_h);
    drop_schema(seed, &schema).await;
}

#[tokio::test]
async fn an_unknown_metric_is_a_database_error() {
    let (store, seed, schema) = fresh().await;
    latency_row(&seed, (M, "acme", "m1"), "bogus", 250, 1).await;
    let err = store.sli_latency(&q(None, None, None)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Database(ref e) if e.contains("bogus")),
        "{err:?}"
    );
    drop_schema(seed, &schema).await;
}

#[tokio::test]
async fn fleet_minutes_and_scopes_sum_every_tenant() {
    let (store, seed, schema) = fresh().await;
    seed_minutes(&seed).await;
    let (from, to) = (M * MIN + 1, (M + 2) * MIN + 59_999);
    assert_eq!(
        store.sli_fleet_minutes(from, to).await.unwrap(),
        vec![
            FleetMinute {
                minute: M,
                counts: c(6_000_000_006, 5_999_999_993, 5, 7, 1, 6, 1)
            },
            FleetMinute {
                minute: M + 1,
                counts: c(12, 12, 0, 0, 0, 0, 0)
            },
        ]
    );
    let scope = |model: &str, region: &str, counts| ScopeCounts {
        model: model.into(),
        region: region.into(),
        counts,
    };
    assert_eq!(
        store.sli_scopes(from, to).await.unwrap(),
        vec![
            scope("m1", "", c(2, 0, 1, 0, 0, 1, 1)),
            scope("m1", "eu", c(3_000_000_016, 3_000_000_005, 4, 7, 1, 5, 0)),
            scope("m2", "us", c(3_000_000_000, 3_000_000_000, 0, 0, 0, 0, 0)),
        ]
    );
    assert_eq!(
        store
            .sli_scopes((M + 2) * MIN, (M + 3) * MIN)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .sli_fleet_minutes((M + 3) * MIN, (M + 9) * MIN)
        .await
        .unwrap()
        .is_empty());
    assert!(store.sli_scopes(to, from).await.unwrap().is_empty());
    drop_schema(seed, &schema).await;
}

#[tokio::test]
async fn fleet_latency_is_summed_per_chart_bucket_from_the_first_minute() {
    let (store, seed, schema) = fresh().await;
    seed_latency(&seed).await;
    let b = |bucket, le_ms, count| BucketLatency {
        bucket,
        le_ms,
        count,
    };
    // From M - 1 (a `from` inside its minute counts from that minute), 30-minute buckets: M - 1
    // and M are bucket 0, M + 59 and M + 60 bucket 2; every tenant and model summed.
    let (from, to) = ((M - 1) * MIN + 5, (M + 61) * MIN);
    assert_eq!(
        store
            .sli_fleet_latency(from, to, Metric::Ttft, 30)
            .await
            .unwrap(),
        vec![
            b(0, 100, 9),
            b(0, 250, 6),
            b(2, 5, 8),
            b(2, 250, 4),
            b(2, OVERFLOW_LE_MS, 5_000_000_000),
        ]
    );
    assert_eq!(
        store
            .sli_fleet_latency(from, to, Metric::Ttlt, 1)
            .await
            .unwrap(),
        vec![b(1, 1_000, 7)]
    );
    // `to` is exclusive: M + 60 is out.
    assert_eq!(
        store
            .sli_fleet_latency(M * MIN, (M + 60) * MIN, Metric::Ttft, 60)
            .await
            .unwrap(),
        vec![
            b(0, 100, 9),
            b(0, 250, 9),
            b(0, OVERFLOW_LE_MS, 5_000_000_000)
        ]
    );
    for bad in [0, -5] {
        let err = store
            .sli_fleet_latency(from, to, Metric::Ttft, bad)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    }
    drop_schema(seed, &schema).await;
}

#[tokio::test]
async fn window_whole_minutes_from_rollups_and_edges_from_raw_rows_to_the_millisecond() {
    let (store, seed, schema) = fresh().await;
    ledger(
        &seed,
        &[
            record("before", 29_999, 502),
            record("edge-1", 30_000, 200),
            record("whole", 90_000, 502),
            record("edge-2", 149_999, 200),
            record("after", 150_000, 502),
        ],
        &[refusal("r", 140_000, 503, false)],
    )
    .await;
    // [30 s, 150 s): minute 1 whole, then half of minute 0 and of minute 2.
    let w = store.sli_window(30_000, 150_000).await.unwrap();
    // Two rows: the worker's traffic (eu, p) and the refusal, which reached no worker.
    assert_eq!(
        w,
        vec![
            scoped(("acme", "", "m", "", ""), c(1, 0, 1, 0, 0, 1, 0)),
            scoped(("acme", "", "m", "eu", "p"), c(3, 2, 1, 0, 0, 1, 0)),
        ]
    );
    assert_eq!(total(&w).requests, 4);
    assert_eq!(total(&w).ok, 2);
    assert_eq!(total(&w).errors_5xx, 2);
    // Shorter than a minute: raw rows only.
    let w = store.sli_window(140_000, 150_000).await.unwrap();
    assert_eq!(total(&w).requests, 2);
    assert!(store.sli_window(10, 10).await.unwrap().is_empty());
    assert!(store.sli_window(150_000, 30_000).await.unwrap().is_empty());
    drop_schema(seed, &schema).await;
}

/// Rollups that disagree with the raw rows on purpose show which part of a window each is
/// read for: whole minutes from the rollups, the edges from raw rows, nothing twice.
#[tokio::test]
async fn window_reads_each_part_from_its_own_source() {
    let (store, seed, schema) = fresh().await;
    tenant(&seed, "acme", "pro").await;
    // On the window's first millisecond, inside the whole minute, on the last minute's first
    // millisecond, on its last one.
    for (id, at) in [("a", 30_000), ("b", 90_000), ("c", 120_000), ("d", 149_999)] {
        ledger(&seed, &[record(id, at, 200)], &[]).await;
    }
    // What the rollups say instead: 100, 10 (as a tier acme had then) and 1000 requests.
    sqlx::query("DELETE FROM sli_minutes")
        .execute(&seed)
        .await
        .unwrap();
    let one = |n| c(n, n, 0, 0, 0, 0, 0);
    minute_row(&seed, (0, "acme", "pro", "m", "eu", "p"), one(100)).await;
    minute_row(&seed, (1, "acme", "free", "m", "eu", "p"), one(10)).await;
    minute_row(&seed, (2, "acme", "pro", "m", "eu", "p"), one(1_000)).await;
    let requests = |w: Vec<ScopedCounts>| -> Vec<(String, u64)> {
        w.into_iter().map(|r| (r.tier, r.counts.requests)).collect()
    };
    let tiers = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    };
    // Minute 1 from its rollup; 30 s of minute 0 and of minute 2 from raw rows (tier as now).
    assert_eq!(
        requests(store.sli_window(30_000, 150_000).await.unwrap()),
        tiers(&[("free", 10), ("pro", 3)])
    );
    // Whole minutes only: rollups only.
    assert_eq!(
        requests(store.sli_window(0, 180_000).await.unwrap()),
        tiers(&[("free", 10), ("pro", 1_100)])
    );
    assert_eq!(
        requests(store.sli_window(60_000, 150_000).await.unwrap()),
        tiers(&[("free", 10), ("pro", 2)])
    );
    // Within one minute, or across a boundary with no whole minute: raw rows only.
    assert_eq!(
        requests(store.sli_window(30_000, 60_000).await.unwrap()),
        tiers(&[("pro", 1)])
    );
    assert_eq!(
        requests(store.sli_window(89_999, 90_001).await.unwrap()),
        tiers(&[("pro", 1)])
    );
    assert_eq!(
        requests(store.sli_window(59_999, 119_999).await.unwrap()),
        tiers(&[("pro", 1)])
    );
    assert!(store.sli_window(89_999, 90_000).await.unwrap().is_empty());
    assert_eq!(
        requests(store.sli_window(90_001, 149_999).await.unwrap()),
        tiers(&[("pro", 1)])
    );
    assert!(store.sli_window(90_001, 120_000).await.unwrap().is_empty());
    drop_schema(seed, &schema).await;
}

/// The raw edges count every kind of outcome as the ledger's fold does, so an edge read from
/// raw rows equals the same minutes read from their rollups.
#[tokio::test]
async fn window_edges_count_outcomes_as_the_rollups_do() {
    let (store, seed, schema) = fresh().await;
    tenant(&seed, "acme", "pro").await;
    let at = |n: i64| 300_000 + n * 1_000;
    let with = |id: &str, n, http, status, ttft: Option<u64>, exempt| UsageRecord {
        status,
        ttft_ms: ttft,
        ttft_exempt: exempt,
        ..record(id, at(n), http)
    };
    use UsageStatus::*;
    let records = vec![
        with("ok", 0, 200, Completed, Some(100), false),
        with("slow", 1, 200, Completed, Some(5_000), false),
        with("just-fast", 2, 200, Completed, Some(4_999), false),
        with("exempt", 3, 200, Completed, Some(9_000), true),
        with("5xx", 4, 502, Failed, None, false),
        with("cut", 5, 200, FailedMidStream, Some(200), false),
        with("died", 6, 200, Interrupted, Some(200), false),
        with("limited", 7, 429, Failed, Some(6_000), false),
        with("gone", 8, 200, ClientDisconnected, Some(300), false),
        UsageRecord {
            tenant_id: "ghost".into(),
            ..record("ghost", at(9), 200)
        },
        UsageRecord {
            region: "us".into(),
            provider: "p2".into(),
            ..record("us", at(10), 200)
        },
    ];
    let refusals = vec![
        refusal("shed", at(11), 503, true),
        refusal("own-limit", at(12), 429, false),
        refusal("no-worker", at(13), 500, false),
        Refusal {
            tenant_id: "ghost".into(),
            ..refusal("ghost-refused", at(14), 503, false)
        },
    ];
    ledger(&seed, &records, &refusals).await;
    let expected = vec![
        scoped(("acme", "pro", "m", "", ""), c(3, 0, 2, 1, 0, 2, 1)),
        scoped(("acme", "pro", "m", "eu", "p"), c(9, 4, 3, 1, 2, 4, 0)),
        scoped(("acme", "pro", "m", "us", "p2"), c(1, 1, 0, 0, 0, 0, 0)),
        scoped(("ghost", "", "m", "", ""), c(1, 0, 1, 0, 0, 1, 0)),
        scoped(("ghost", "", "m", "eu", "p"), c(1, 1, 0, 0, 0, 0, 0)),
    ];
    // Minute 5 but its last millisecond: raw rows.
    assert_eq!(store.sli_window(300_000, 359_999).await.unwrap(), expected);
    // Minute 5 whole: its rollups.
    assert_eq!(store.sli_window(300_000, 360_000).await.unwrap(), expected);
    // And the rollups are what the Rust definition counts.
    let mut by_hand = SliCounts::default();
    records
        .iter()
        .for_each(|r| by_hand.add(&SliCounts::of_record(r)));
    refusals
        .iter()
        .for_each(|r| by_hand.add(&SliCounts::of_refusal(r)));
    assert_eq!(total(&expected), by_hand);
    drop_schema(seed, &schema).await;
}

#[tokio::test]
async fn heartbeats_are_minutes_some_gateway_was_alive_and_the_first_one_ever() {
    let (store, seed, schema) = fresh().await;
    let none = store.heartbeats(0, i64::MAX).await.unwrap();
    assert!(none.minutes.is_empty());
    assert_eq!(
        none.since_minute, None,
        "nothing is judged before the first beat"
    );
    for (instance, minute) in [
        ("a", M),
        ("a", M + 2),
        ("a", M + 2),
        ("b", M + 2),
        ("b", M + 5),
    ] {
        store.record_heartbeat(instance, minute).await.unwrap();
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gateway_heartbeats")
        .fetch_one(&seed)
        .await
        .unwrap();
    assert_eq!(rows, 4, "a beat recorded twice is one row");
    // `from` inside M takes M; `to` is exclusive and rounded down.
    let beats = store
        .heartbeats(M * MIN + 30_000, (M + 5) * MIN)
        .await
        .unwrap();
    assert_eq!(beats.minutes, BTreeSet::from([M, M + 2]));
    assert_eq!(beats.since_minute, Some(M));
    let beats = store
        .heartbeats((M + 3) * MIN, (M + 5) * MIN + 1)
        .await
        .unwrap();
    assert!(beats.minutes.is_empty());
    assert_eq!(
        beats.since_minute,
        Some(M),
        "the first minute ever, not the window's"
    );
    let beats = store
        .heartbeats((M + 3) * MIN, (M + 6) * MIN)
        .await
        .unwrap();
    assert_eq!(beats.minutes, BTreeSet::from([M + 5]));
    store.record_heartbeat("c", M - 10).await.unwrap();
    assert_eq!(
        store.heartbeats(0, 1).await.unwrap().since_minute,
        Some(M - 10)
    );
    drop_schema(seed, &schema).await;
}

fn probe(minute: i64, prober: &str, region: &str, probes: u64, failed: u64) -> ProbeMinute {
    ProbeMinute {
        minute,
        prober: prober.into(),
        region: region.into(),
        probes,
        failed,
    }
}

#[tokio::test]
async fn probe_minutes_pushed_again_replace_the_earlier_counts() {
    let (store, seed, schema) = fresh().await;
    store.put_probe_minutes(&[]).await.unwrap();
    store
        .put_probe_minutes(&[
            probe(M + 1, "p2", "eu", 10, 1),
            probe(M, "p1", "us", 5, 0),
            probe(M + 1, "p1", "us", 6, 6),
            probe(M + 1, "P9", "ap", 1, 0),
            // The same minute twice in one push: the later counts stand.
            probe(M, "p1", "us", 7, 2),
        ])
        .await
        .unwrap();
    let (from, to) = (M * MIN + 59_999, (M + 2) * MIN);
    assert_eq!(
        store.probe_minutes(from, to).await.unwrap(),
        vec![
            probe(M, "p1", "us", 7, 2),
            probe(M + 1, "P9", "ap", 1, 0),
            probe(M + 1, "p1", "us", 6, 6),
            probe(M + 1, "p2", "eu", 10, 1),
        ]
    );
    store
        .put_probe_minutes(&[probe(M + 1, "p2", "ap", 20, 3)])
        .await
        .unwrap();
    assert_eq!(
        store
            .probe_minutes((M + 1) * MIN, (M + 2) * MIN)
            .await
            .unwrap()[2],
        probe(M + 1, "p2", "ap", 20, 3)
    );
    assert_eq!(
        store
            .probe_minutes(M * MIN, (M + 1) * MIN)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .probe_minutes((M + 1) * MIN, (M + 1) * MIN + 1)
        .await
        .unwrap()
        .is_empty());
    // A push with a row the table refuses is stored not at all.
    for wrong in [
        probe(M + 3, "p2", "eu", 1, 2),
        probe(M + 3, "p2", "eu", u64::MAX, 0),
    ] {
        let err = store
            .put_probe_minutes(&[probe(M + 3, "p1", "eu", 1, 0), wrong])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    }
    assert!(store
        .probe_minutes((M + 3) * MIN, (M + 4) * MIN)
        .await
        .unwrap()
        .is_empty());
    drop_schema(seed, &schema).await;
}

/// Two gateway replicas on one database.
async fn replicas() -> (PgStore, PgStore, PgPool, String) {
    let (a, seed, schema) = fresh().await;
    let b = PgStore::connect_in_schema(&pg::url(), &schema)
        .await
        .unwrap();
    (a, b, seed, schema)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_beating_in_the_same_minutes_are_one_alive_minute() {
    let (a, b, seed, schema) = replicas().await;
    let mut tasks = vec![];
    for minute in M..M + 10 {
        for (store, instance) in [(&a, "a"), (&b, "b"), (&a, "shared"), (&b, "shared")] {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.record_heartbeat(instance, minute).await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().expect("a beat never conflicts");
    }
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gateway_heartbeats WHERE minute = $1")
        .bind(M)
        .fetch_one(&seed)
        .await
        .unwrap();
    assert_eq!(rows, 3, "a, b and shared, once each");
    for store in [&a, &b] {
        let beats = store.heartbeats(M * MIN, (M + 20) * MIN).await.unwrap();
        assert_eq!(beats.minutes, (M..M + 10).collect::<BTreeSet<_>>());
        assert_eq!(beats.since_minute, Some(M));
    }
    // And both read the same rollups.
    minute_row(
        &seed,
        (M, "acme", "pro", "m", "eu", "p"),
        c(2, 2, 0, 0, 0, 0, 0),
    )
    .await;
    let (wa, wb) = (
        a.sli_window(M * MIN, (M + 1) * MIN),
        b.sli_window(M * MIN, (M + 1) * MIN),
    );
    let (wa, wb) = (wa.await.unwrap(), wb.await.unwrap());
    assert_eq!(
        wa,
        vec![scoped(
            ("acme", "pro", "m", "eu", "p"),
            c(2, 2, 0, 0, 0, 0, 0)
        )]
    );
    assert_eq!(wa, wb);
    a.close().await;
    b.close().await;
    drop_schema(seed, &schema).await;
}

/// Two replicas pushing the same probe minutes at once, in opposite orders, over and over:
/// neither fails (no unique violation, no deadlock) and each round ends with one push whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_pushing_probe_minutes_at_once_both_succeed() {
    let (a, b, seed, schema) = replicas().await;
    let keys: Vec<(i64, &str)> = (0..40)
        .flat_map(|n| [(M + n, "p1"), (M + n, "p2")])
        .collect();
    for round in 0..10u64 {
        let push_a: Vec<_> = keys
            .iter()
            .map(|&(m, p)| probe(m, p, "a", 10 + round, 1))
            .collect();
        let push_b: Vec<_> = keys
            .iter()
            .rev()
            .map(|&(m, p)| probe(m, p, "b", 20 + round, 2))
            .collect();
        let (sa, sb) = (a.clone(), b.clone());
        let ta = tokio::spawn(async move { sa.put_probe_minutes(&push_a).await });
        let tb = tokio::spawn(async move { sb.put_probe_minutes(&push_b).await });
        ta.await.unwrap().expect("replica a's push");
        tb.await.unwrap().expect("replica b's push");
        let stored = a.probe_minutes(M * MIN, (M + 40) * MIN).await.unwrap();
        assert_eq!(stored.len(), keys.len(), "round {round}");
        let winner = stored[0].region.clone();
        let want = |p: &ProbeMinute| match winner.as_str() {
            "a" => (p.probes, p.failed) == (10 + round, 1),
            _ => (p.probes, p.failed) == (20 + round, 2),
        };
        assert!(
            stored.iter().all(|p| p.region == winner && want(p)),
            "round {round}: one push whole, the other's rows replaced: {stored:?}"
        );
        assert_eq!(
            b.probe_minutes(M * MIN, (M + 40) * MIN).await.unwrap(),
            stored
        );
    }
    a.close().await;
    b.close().await;
    drop_schema(seed, &schema).await;
}
