//! The Postgres ledger ([`LedgerStore`] for `PgStore`): the SQLite ledger's behaviours
//! (`tests/ledger.rs`, `tests/sqlite_store.rs`), its reports compared with the SQLite store's
//! on the same records, and what only several replicas on one database can do: write the same
//! batch, or settle the same dead process's requests, at the same moment.
//!
//! The SLI rollups are checked in their tables, against `sli::fold` of the records that should
//! count, exactly once each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pg;

use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use switchyard_metering::model::{DeadLetter, UsageRecord, UsageStatus};
use switchyard_metering::open::{interrupted, Checkpoint, OpenRequest, OpenRow};
use switchyard_metering::sli::{fold, Refusal};
use switchyard_metering::store::postgres::PgStore;
use switchyard_metering::store::sqlite::SqliteStore;
use switchyard_metering::store::{LedgerBatch, LedgerStore, Period, UsageQuery, UsageRow};
use switchyard_metering::StoreError;

/// 2026-02-01T00:00:00Z.
const FEB_1: i64 = 1_769_904_000_000;
const DAY_MS: i64 = 86_400_000;

/// A store on a schema of its own, the schema's name (for replicas), and a pool on it for
/// reading the tables directly.
struct Db {
    store: PgStore,
    schema: String,
    sql: PgPool,
}

async fn fresh_db() -> Db {
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let store = PgStore::connect_in_schema(&pg::url(), &schema)
        .await
        .unwrap_or_else(|e| panic!("Postgres at {}: {e}", pg::url()));
    let options = PgConnectOptions::from_str(&pg::url())
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let sql = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap();
    Db { store, schema, sql }
}

impl Db {
    /// Another gateway replica on the same database.
    async fn replica(&self) -> PgStore {
        PgStore::connect_in_schema(&pg::url(), &self.schema)
            .await
            .unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.sql)
            .await
            .unwrap()
    }

    /// Requests counted in the per-minute rollups, all tenants.
    async fn sli_requests(&self) -> i64 {
        sqlx::query_scalar("SELECT COALESCE(SUM(requests), 0)::BIGINT FROM sli_minutes")
            .fetch_one(&self.sql)
            .await
            .unwrap()
    }

    async fn rollups(&self) -> Rollups {
        let mut minutes: Vec<MinuteRow> = sqlx::query_as(
            "SELECT minute, tenant_id, tier, model, region, provider, requests, ok, errors_5xx, \
                 errors_429, ttft_slow, bad, throttled FROM sli_minutes",
        )
        .fetch_all(&self.sql)
        .await
        .unwrap();
        let mut latency: Vec<LatencyRow> = sqlx::query_as(
            "SELECT minute, tenant_id, tier, model, region, provider, metric, le_ms, count \
             FROM sli_latency",
        )
        .fetch_all(&self.sql)
        .await
        .unwrap();
        minutes.sort();
        latency.sort();
        Rollups { minutes, latency }
    }
}

/// A row of `sli_minutes`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, sqlx::FromRow)]
struct MinuteRow {
    minute: i64,
    tenant_id: String,
    tier: String,
    model: String,
    region: String,
    provider: String,
    requests: i64,
    ok: i64,
    errors_5xx: i64,
    errors_429: i64,
    ttft_slow: i64,
    bad: i64,
    throttled: i64,
}

/// A row of `sli_latency`.
type LatencyRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
);

#[derive(Debug, PartialEq)]
struct Rollups {
    minutes: Vec<MinuteRow>,
    latency: Vec<LatencyRow>,
}

/// The rollup tables as they must be after storing `records` and `refusals` (distinct request
/// ids), each counted once, with every tenant's tier from `tier`.
fn expected_rollups(
    records: &[UsageRecord],
    refusals: &[Refusal],
    tier: impl Fn(&str) -> &'static str,
) -> Rollups {
    let n = |v: u64| i64::try_from(v).unwrap();
    let deltas = fold(records, refusals);
    let mut minutes = Vec::new();
    let mut latency = Vec::new();
    for (k, d) in &deltas {
        let c = &d.counts;
        let key = (
            k.minute,
            k.tenant_id.clone(),
            tier(&k.tenant_id).to_string(),
            k.model.clone(),
            k.region.clone(),
            k.provider.clone(),
        );
        minutes.push(MinuteRow {
            minute: key.0,
            tenant_id: key.1.clone(),
            tier: key.2.clone(),
            model: key.3.clone(),
            region: key.4.clone(),
            provider: key.5.clone(),
            requests: n(c.requests),
            ok: n(c.ok),
            errors_5xx: n(c.errors_5xx),
            errors_429: n(c.errors_429),
            ttft_slow: n(c.ttft_slow),
            bad: n(c.bad),
            throttled: n(c.throttled),
        });
        for ((metric, le_ms), count) in &d.latency {
            latency.push((
                key.0,
                key.1.clone(),
                key.2.clone(),
                key.3.clone(),
                key.4.clone(),
                key.5.clone(),
                metric.as_str().to_string(),
                *le_ms,
                n(*count),
            ));
        }
    }
    minutes.sort();
    latency.sort();
    Rollups { minutes, latency }
}

fn no_tier(_: &str) -> &'static str {
    ""
}

#[allow(clippy::too_many_arguments)]
fn rec(
    request_id: &str,
    tenant_id: &str,
    model: &str,
    provider: &str,
    started_at_ms: i64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost: i64,
    cogs: i64,
) -> UsageRecord {
    UsageRecord {
        request_id: request_id.into(),
        started_at_ms,
        tenant_id: tenant_id.into(),
        key_id: format!("{tenant_id}-key"),
        model: model.into(),
        endpoint: "chat".into(),
        stream: true,
        worker: "w1".into(),
        provider: provider.into(),
        region: "eu".into(),
        prompt_tokens,
        completion_tokens,
        usage_estimated: false,
        usage_source: Default::default(),
        usage_note: None,
        ttft_ms: Some(120),
        ttft_exempt: false,
        total_ms: 900,
        status: UsageStatus::Completed,
        http_status: 200,
        finish_reason: Some("stop".into()),
        cost,
        cogs,
    }
}

/// `n` distinct records with varied values (statuses, latencies, minutes), deterministic.
fn many_records(prefix: &str, tenant_id: &str, n: usize) -> Vec<UsageRecord> {
    (0..n)
        .map(|i| {
            let at = i64::try_from(i).unwrap();
            let u = u64::try_from(i).unwrap();
            let mut r = rec(
                &format!("{prefix}-{i}"),
                tenant_id,
                if i % 3 == 0 {
                    "llama-3.1-8b"
                } else {
                    "qwen-2.5-7b"
                },
                if i % 2 == 0 { "akash" } else { "runpod" },
                FEB_1 + at * 1_000,
                u % 997 + 1,
                u % 541,
                1_000 + at * 7,
                300 + at * 3,
            );
            r.ttft_ms = Some(u * 37 % 9_000);
            if i % 5 == 0 {
                r.ttft_ms = None;
                r.finish_reason = None;
                r.status = UsageStatus::ClientDisconnected;
                r.usage_estimated = true;
                r.stream = false;
                r.http_status = 499;
            } else if i % 11 == 0 {
                r.status = UsageStatus::Failed;
                r.http_status = 502;
            } else if i % 13 == 0 {
                r.http_status = 429;
                r.status = UsageStatus::Failed;
            }
            r
        })
        .collect()
}

fn refusal(id: &str, at_ms: i64, http_status: u16) -> Refusal {
    Refusal {
        request_id: id.into(),
        at_ms,
        tenant_id: "acme".into(),
        model: "llama-3.1-8b".into(),
        http_status,
        throttled: http_status == 503,
    }
}

fn all() -> UsageQuery {
    UsageQuery::default()
}

async fn count_and_sums(store: &impl LedgerStore) -> (u64, u64, u64, i64, i64) {
    let rows = store.usage(&all(), Period::Month).await.unwrap();
    rows.iter().fold((0, 0, 0, 0, 0), |acc, r| {
        (
            acc.0 + r.requests,
            acc.1 + r.prompt_tokens,
            acc.2 + r.completion_tokens,
            acc.3 + r.cost,
            acc.4 + r.cogs,
        )
    })
}

fn expected_sums(records: &[UsageRecord]) -> (u64, u64, u64, i64, i64) {
    records.iter().fold((0, 0, 0, 0, 0), |acc, r| {
        (
            acc.0 + 1,
            acc.1 + r.prompt_tokens,
            acc.2 + r.completion_tokens,
            acc.3 + r.cost,
            acc.4 + r.cogs,
        )
    })
}

/// A tenant's tokens since `from_ms`, summed over its keys.
async fn tenant_tokens(store: &impl LedgerStore, tenant: &str, from_ms: i64) -> u64 {
    store
        .tokens_by_key_since(from_ms)
        .await
        .unwrap()
        .iter()
        .filter(|k| k.tenant_id == tenant)
        .map(|k| k.tokens)
        .sum()
}

#[tokio::test]
async fn a_resent_batch_is_not_counted_twice() {
    let db = fresh_db().await;
    let store = &db.store;
    let batch = many_records("req", "acme", 300);
    store.insert_usage(&batch).await.unwrap();
    store.insert_usage(&batch).await.unwrap();
    // A batch that overlaps the first one by half.
    let more = many_records("req", "acme", 450);
    store.insert_usage(&more[150..]).await.unwrap();

    assert_eq!(count_and_sums(store).await, expected_sums(&more));
    let stored = store.usage_records(&all()).await.unwrap();
    assert_eq!(stored, more, "records round-trip unchanged, in time order");
    assert_eq!(store.insert_usage(&[]).await.ok(), Some(()));
    assert_eq!(db.rollups().await, expected_rollups(&more, &[], no_tier));
}

#[tokio::test]
async fn rollups_count_each_request_once_across_overlaps_and_duplicates() {
    let db = fresh_db().await;
    let store = &db.store;
    let first = many_records("req", "acme", 1_500);
    store.insert_usage(&first).await.unwrap();
    assert_eq!(db.sli_requests().await, 1_500);

    // Part of `first` again, then new ids, one of them twice: once at the end of a 1,000-row
    // insert statement and once at the start of the next (ids are sorted before inserting,
    // and "req-..." sorts before "zz-..."), so the copies are in different statements.
    let new = many_records("zz", "acme", 40);
    let mut second: Vec<UsageRecord> = first[501..].to_vec(); // 999 records
    second.push(new[0].clone());
    second.push(new[0].clone());
    second.extend_from_slice(&new[1..]);
    store.insert_usage(&second).await.unwrap();
    assert_eq!(
        db.sli_requests().await,
        1_540,
        "1,500 + 40 distinct new ids"
    );
    // The same batch again (a retry whose commit went through): nothing new.
    store.insert_usage(&second).await.unwrap();
    assert_eq!(db.sli_requests().await, 1_540);
    assert_eq!(store.usage_records(&all()).await.unwrap().len(), 1_540);

    // Refusals: the same rules, in their own table.
    let refusals: Vec<_> = ["r1", "r2", "r2", "r3"]
        .iter()
        .map(|id| refusal(id, FEB_1, 503))
        .collect();
    store.insert_refusals(&refusals).await.unwrap();
    store.insert_refusals(&refusals[1..]).await.unwrap();
    let last = [refusal("r3", FEB_1, 503), refusal("r4", FEB_1 + 1, 429)];
    store.insert_refusals(&last).await.unwrap();
    assert_eq!(db.sli_requests().await, 1_544, "r1..r4 once each");
    assert_eq!(db.count("sli_refusals").await, 4);

    let records: Vec<_> = first.iter().chain(&new).cloned().collect();
    let refused = [
        refusals[0].clone(),
        refusals[1].clone(),
        last[0].clone(),
        last[1].clone(),
    ];
    assert_eq!(
        db.rollups().await,
        expected_rollups(&records, &refused, no_tier),
        "every count and latency bucket, once"
    );
}

#[tokio::test]
async fn rollups_take_the_tenants_tier_and_count_unknown_tenants_too() {
    let db = fresh_db().await;
    // Tenants are the tenant store's; written here directly.
    sqlx::query("INSERT INTO tenants (id, tier, created_at) VALUES ('acme', 'pro', 0)")
        .execute(&db.sql)
        .await
        .unwrap();
    let acme = many_records("a", "acme", 30);
    let ghost = many_records("g", "ghost", 20);
    let refused = [refusal("r1", FEB_1, 503)];
    let batch = LedgerBatch {
        usage: &[acme.clone(), ghost.clone()].concat(),
        refusals: &refused,
        ..Default::default()
    };
    db.store.write_ledger_batch(&batch).await.unwrap();
    let tier = |t: &str| if t == "acme" { "pro" } else { "" };
    let all: Vec<_> = acme.iter().chain(&ghost).cloned().collect();
    assert_eq!(db.rollups().await, expected_rollups(&all, &refused, tier));
}

#[tokio::test]
async fn a_value_that_does_not_fit_fails_the_whole_batch() {
    let db = fresh_db().await;
    let store = &db.store;
    let mut batch = many_records("req", "acme", 120);
    batch[110].prompt_tokens = u64::MAX;
    let err = store.insert_usage(&batch).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    batch[110].prompt_tokens = 1;
    batch[111].ttft_ms = Some(u64::try_from(i64::MAX).unwrap() + 1);
    let err = store.insert_usage(&batch).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");

    // In a whole ledger batch, nothing of any kind is written (the writer then dead-letters
    // the record).
    let opens = [opened(1, "me")];
    let refused = [refusal("r1", FEB_1, 503)];
    let whole = LedgerBatch {
        opens: &opens,
        usage: &batch,
        refusals: &refused,
        ..Default::default()
    };
    let err = store.write_ledger_batch(&whole).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    let mut huge = opened(2, "me");
    huge.prompt_estimate = u64::MAX;
    let err = store.insert_open(&[opened(3, "me"), huge]).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");

    // Text Postgres cannot hold (a NUL) is the record's fault too: `Invalid`, so it is
    // dead-lettered rather than retried forever.
    let mut nul = batch.clone();
    nul[111].ttft_ms = Some(1);
    nul[5].usage_note = Some("a\0b".into());
    let err = store.insert_usage(&nul).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");

    assert!(store.usage_records(&all()).await.unwrap().is_empty());
    for table in [
        "usage",
        "usage_open",
        "sli_refusals",
        "sli_minutes",
        "sli_latency",
    ] {
        assert_eq!(db.count(table).await, 0, "{table}");
    }

    // The largest value that fits round-trips.
    batch[111].ttft_ms = Some(u64::try_from(i64::MAX).unwrap());
    store.insert_usage(&batch).await.unwrap();
    let got = store.usage_records(&all()).await.unwrap();
    assert_eq!(got[111].ttft_ms, Some(u64::try_from(i64::MAX).unwrap()));
    assert_eq!(got, batch);
}

#[tokio::test]
async fn days_and_months_are_utc_calendar_periods() {
    let store = pg::fresh().await;
    let last_ms_of_jan = FEB_1 - 1;
    store
        .insert_usage(&[
            // 2026-01-31: two records of model a for acme, one of b.
            rec(
                "1",
                "acme",
                "a",
                "akash",
                FEB_1 - DAY_MS,
                100,
                10,
                1_000,
                400,
            ),
            rec(
                "2",
                "acme",
                "a",
                "runpod",
                last_ms_of_jan,
                200,
                20,
                2_000,
                800,
            ),
            rec("3", "acme", "b", "akash", last_ms_of_jan - 5, 7, 3, 5, 1),
            // 2026-02-01, one millisecond later.
            rec("4", "acme", "a", "akash", FEB_1, 1_000, 100, 10_000, 4_000),
            rec("5", "acme", "a", "akash", FEB_1 + DAY_MS - 1, 1, 1, 1, 1),
            // 2026-02-02.
            rec("6", "acme", "a", "runpod", FEB_1 + DAY_MS, 2, 2, 2, 2),
            rec("7", "beta", "a", "akash", FEB_1 + 10, 50, 50, 500, 50),
        ])
        .await
        .unwrap();

    let row = |t: &str, p: &str, m: &str, n, pt, ct, cost, cogs| UsageRow {
        tenant_id: t.into(),
        period: p.into(),
        model: m.into(),
        requests: n,
        prompt_tokens: pt,
        completion_tokens: ct,
        cost,
        cogs,
    };
    assert_eq!(
        store.usage(&all(), Period::Day).await.unwrap(),
        vec![
            row("acme", "2026-01-31", "a", 2, 300, 30, 3_000, 1_200),
            row("acme", "2026-01-31", "b", 1, 7, 3, 5, 1),
            row("acme", "2026-02-01", "a", 2, 1_001, 101, 10_001, 4_001),
            row("acme", "2026-02-02", "a", 1, 2, 2, 2, 2),
            row("beta", "2026-02-01", "a", 1, 50, 50, 500, 50),
        ]
    );
    assert_eq!(
        store.usage(&all(), Period::Month).await.unwrap(),
        vec![
            row("acme", "2026-01", "a", 2, 300, 30, 3_000, 1_200),
            row("acme", "2026-01", "b", 1, 7, 3, 5, 1),
            row("acme", "2026-02", "a", 3, 1_003, 103, 10_003, 4_003),
            row("beta", "2026-02", "a", 1, 50, 50, 500, 50),
        ]
    );

    // Filters: tenant, inclusive lower bound, exclusive upper bound.
    let feb_1_acme = UsageQuery {
        tenant_id: Some("acme".into()),
        from_ms: Some(FEB_1),
        to_ms: Some(FEB_1 + DAY_MS),
    };
    assert_eq!(
        store.usage(&feb_1_acme, Period::Day).await.unwrap(),
        vec![row("acme", "2026-02-01", "a", 2, 1_001, 101, 10_001, 4_001)]
    );
    let ids = |rows: Vec<UsageRecord>| -> Vec<String> {
        rows.into_iter().map(|r| r.request_id).collect()
    };
    assert_eq!(
        ids(store.usage_records(&feb_1_acme).await.unwrap()),
        ["4", "5"]
    );
    let acme = UsageQuery {
        tenant_id: Some("acme".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(store.usage_records(&acme).await.unwrap()),
        ["1", "3", "2", "4", "5", "6"],
        "time order"
    );

    let margin = store.margin(&all()).await.unwrap();
    let got: Vec<_> = margin
        .iter()
        .map(|m| {
            let (model, provider) = (m.model.as_str(), m.provider.as_str());
            (
                model,
                provider,
                m.requests,
                m.prompt_tokens,
                m.completion_tokens,
                m.revenue,
                m.cogs,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", "akash", 4, 1_151, 161, 11_501, 4_451),
            ("a", "runpod", 2, 202, 22, 2_002, 802),
            ("b", "akash", 1, 7, 3, 5, 1),
        ]
    );

    assert_eq!(tenant_tokens(&store, "acme", FEB_1).await, 1_106);
    assert_eq!(tenant_tokens(&store, "acme", 0).await, 1_446);
    assert_eq!(tenant_tokens(&store, "nobody", 0).await, 0);
}

/// The same records in both stores give the same reports, row for row and in the same order:
/// names that sort differently by bytes and by language (SQLite sorts by bytes), times before
/// 1970 (whole seconds truncated toward zero, as SQLite divides), several keys per tenant.
#[tokio::test]
async fn reports_match_the_sqlite_stores() {
    let pg = pg::fresh().await;
    let lite = SqliteStore::in_memory().await.unwrap();
    let mut records = Vec::new();
    for (i, tenant) in ["acme", "Zeta", "_under", "beta", "Émile", "a-b", "a_b"]
        .iter()
        .enumerate()
    {
        let mut rs = many_records(&format!("{tenant}-{i}"), tenant, 90);
        for (j, r) in rs.iter_mut().enumerate() {
            r.model = ["m", "M", "m-2", "m_1"][j % 4].into();
            r.provider = ["p", "P"][j % 2].into();
            r.key_id = format!("{tenant}-{}", ["k", "K"][j % 3 % 2]);
            // Across days, months and the epoch.
            r.started_at_ms = [FEB_1, FEB_1 - 1, -1, -1_500, 0, -DAY_MS - 1][j % 6]
                + i64::try_from(j).unwrap() * 3_600_000 * 5;
        }
        records.extend(rs);
    }
    pg.insert_usage(&records).await.unwrap();
    lite.insert_usage(&records).await.unwrap();

    let queries = [
        all(),
        UsageQuery {
            tenant_id: Some("Zeta".into()),
            from_ms: Some(-1_000),
            to_ms: Some(FEB_1 + DAY_MS),
        },
    ];
    for q in &queries {
        for period in [Period::Day, Period::Month] {
            let want = lite.usage(q, period).await.unwrap();
            assert!(want.len() > 5, "{want:?}");
            assert_eq!(pg.usage(q, period).await.unwrap(), want, "{q:?} {period:?}");
        }
        assert_eq!(
            pg.usage_records(q).await.unwrap(),
            lite.usage_records(q).await.unwrap()
        );
        assert_eq!(pg.margin(q).await.unwrap(), lite.margin(q).await.unwrap());
    }
    for from in [i64::MIN, -1_000, FEB_1] {
        assert_eq!(
            pg.tokens_by_key_since(from).await.unwrap(),
            lite.tokens_by_key_since(from).await.unwrap()
        );
    }
}

#[tokio::test]
async fn ten_thousand_records_in_batches_of_500_sum_exactly() {
    let store = pg::fresh().await;
    let records = many_records("req", "acme", 10_000);
    for batch in records.chunks(500) {
        store.insert_usage(batch).await.unwrap();
    }
    assert_eq!(count_and_sums(&store).await, expected_sums(&records));
    let expected_tokens: u64 = records
        .iter()
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    assert_eq!(tenant_tokens(&store, "acme", 0).await, expected_tokens);

    let by_month = store.usage(&all(), Period::Month).await.unwrap();
    assert_eq!(by_month.len(), 2);
    for row in &by_month {
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.model == row.model)
            .cloned()
            .collect();
        let got = (
            row.requests,
            row.prompt_tokens,
            row.completion_tokens,
            row.cost,
            row.cogs,
        );
        assert_eq!(got, expected_sums(&mine), "{}", row.model);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_rows() {
    let db = fresh_db().await;
    let other = db.replica().await;
    let (tasks, batches, per_batch) = (8, 10, 100);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = if t % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        handles.push(tokio::spawn(async move {
            let records = many_records(
                &format!("t{t}"),
                &format!("tenant-{t}"),
                batches * per_batch,
            );
            for batch in records.chunks(per_batch) {
                store.insert_usage(batch).await.unwrap();
                // And a resend of half of it, as after a lost acknowledgement.
                store.insert_usage(&batch[..per_batch / 2]).await.unwrap();
            }
            records
        }));
    }
    let mut all_records = Vec::new();
    for h in handles {
        all_records.extend(h.await.unwrap());
    }
    assert_eq!(count_and_sums(&db.store).await, expected_sums(&all_records));
    assert_eq!(count_and_sums(&other).await, expected_sums(&all_records));
    for t in 0..tasks {
        let q = UsageQuery {
            tenant_id: Some(format!("tenant-{t}")),
            ..Default::default()
        };
        let n = db.store.usage_records(&q).await.unwrap().len();
        assert_eq!(n, batches * per_batch, "tenant-{t}");
    }
    assert_eq!(
        db.rollups().await,
        expected_rollups(&all_records, &[], no_tier)
    );
}

/// Two replicas write the same ledger batch (usage rows across several insert statements,
/// refusals) at the same moment, several times over and in different orders: one row per
/// request, and the rollups count each request once, as if it had been written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_batch_written_by_two_replicas_at_once_is_stored_and_counted_once() {
    let db = fresh_db().await;
    let other = db.replica().await;
    let mut written = Vec::new();
    let mut refused = Vec::new();
    for round in 0..4 {
        let usage = many_records(&format!("round{round}"), "acme", 2_500);
        let refusals: Vec<_> = (0..150)
            .map(|i| {
                refusal(
                    &format!("round{round}-refused-{i}"),
                    FEB_1 + i * 700,
                    [503, 429, 500][usize::try_from(i % 3).unwrap()],
                )
            })
            .collect();
        let mut reversed = usage.clone();
        reversed.reverse();
        let start = Arc::new(tokio::sync::Barrier::new(4));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let store = if w % 2 == 0 {
                    db.store.clone()
                } else {
                    other.clone()
                };
                let usage = if w < 2 {
                    usage.clone()
                } else {
                    reversed.clone()
                };
                let (refusals, start) = (refusals.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    if w == 3 {
                        // The writer's fallback path, kind by kind.
                        store.insert_usage(&usage).await?;
                        store.insert_refusals(&refusals).await
                    } else {
                        let batch = LedgerBatch {
                            usage: &usage,
                            refusals: &refusals,
                            ..Default::default()
                        };
                        store.write_ledger_batch(&batch).await
                    }
                })
            })
            .collect();
        for w in writers {
            w.await
                .unwrap()
                .expect("no replica fails: no deadlock, no conflict");
        }
        written.extend(usage);
        refused.extend(refusals);
        assert_eq!(
            db.count("usage").await,
            i64::try_from(written.len()).unwrap()
        );
        assert_eq!(
            db.count("sli_refusals").await,
            i64::try_from(refused.len()).unwrap()
        );
        assert_eq!(
            db.sli_requests().await,
            i64::try_from(written.len() + refused.len()).unwrap(),
            "round {round}"
        );
    }
    assert_eq!(
        db.rollups().await,
        expected_rollups(&written, &refused, no_tier)
    );
    assert_eq!(count_and_sums(&other).await, expected_sums(&written));
}

fn record(i: u64) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{i}"),
        key_id: "k".into(),
        endpoint: "/v1/chat/completions".into(),
        stream: false,
        worker: "w".into(),
        provider: "p".into(),
        region: "r".into(),
        ttft_ms: None,
        total_ms: 5,
        finish_reason: None,
        ..rec(
            "",
            "t",
            "m",
            "p",
            1_795_852_800_000 + i64::try_from(i).unwrap(),
            10,
            i % 7,
            1,
            1,
        )
    }
}

fn opened(i: u64, instance: &str) -> OpenRequest {
    OpenRequest {
        request_id: format!("req-{i}"),
        instance: instance.into(),
        started_at_ms: 1_795_852_800_000,
        tenant_id: "t".into(),
        key_id: "k".into(),
        model: "m".into(),
        endpoint: "/v1/chat/completions".into(),
        stream: true,
        prompt_estimate: 50,
        price_in_nanos: 1_000_000_000,
        price_out_nanos: 1_000_000_000,
    }
}

fn checkpoint(i: u64, tokens: u64) -> Checkpoint {
    Checkpoint {
        request_id: format!("req-{i}"),
        worker: "w".into(),
        provider: "p".into(),
        region: "r".into(),
        worker_price_nanos: 0,
        worker_slots: 1,
        relayed_tokens: tokens,
        ttft_ms: Some(10),
        at_ms: 1_795_852_801_000,
    }
}

/// Requests in flight when their gateway process dies are settled from what the ledger knew
/// (opened, then checkpointed, in ledger batches), once, as `interrupted`; requests that ended
/// are not touched. As the ledger writer sends them: a request that ends in the batch that
/// opened it is not opened at all.
#[tokio::test]
async fn requests_left_open_by_a_dead_process_are_settled_once_as_interrupted() {
    let db = fresh_db().await;
    let store = &db.store;
    let dead = "dead-one";
    // 1: ended in its first batch. 2: opened, then ended later. 3: in flight with two
    // checkpoints (the first in the batch that opened it). 4: in flight, never reached a worker.
    let opens = [opened(2, dead), opened(3, dead), opened(4, dead)];
    let first = LedgerBatch {
        opens: &opens,
        checkpoints: &[checkpoint(3, 12)],
        usage: &[record(1)],
        refusals: &[],
    };
    store.write_ledger_batch(&first).await.unwrap();
    let second = LedgerBatch {
        checkpoints: &[checkpoint(3, 30)],
        usage: &[record(2)],
        ..Default::default()
    };
    store.write_ledger_batch(&second).await.unwrap();
    assert_eq!(db.count("usage_open").await, 2, "3 and 4");
    store
        .write_ledger_batch(&LedgerBatch::default())
        .await
        .unwrap();

    // Seen alive a minute ago with a 30 s lease: dead 30 s ago, not 40 s ago.
    let now = 1_795_852_900_000;
    store
        .instance_alive(dead, now - 120_000, now - 60_000, 30_000)
        .await
        .unwrap();
    let reconcile = |own: &'static str, at: i64| store.reconcile_interrupted(own, at, 30_000);
    assert_eq!(reconcile("me", now - 40_000).await.unwrap(), 0);
    assert_eq!(reconcile(dead, now).await.unwrap(), 0, "never its own");
    assert_eq!(reconcile("me", now).await.unwrap(), 2);
    assert_eq!(reconcile("me", now).await.unwrap(), 0, "once");

    let rows = store.usage_records(&all()).await.unwrap();
    let by_id = |id: &str| rows.iter().find(|r| r.request_id == id).unwrap().clone();
    assert_eq!(rows.len(), 4);
    assert_eq!(by_id("req-1").status, UsageStatus::Completed);
    assert_eq!(by_id("req-2").status, UsageStatus::Completed);
    let three = by_id("req-3");
    assert_eq!(three.status, UsageStatus::Interrupted);
    assert_eq!(
        (three.prompt_tokens, three.completion_tokens),
        (50, 30),
        "the last checkpoint"
    );
    assert_eq!(three.cost, 80_000);
    let four = by_id("req-4");
    assert_eq!(
        (four.status, four.cost, four.worker.as_str()),
        (UsageStatus::Interrupted, 0, "")
    );
    assert_eq!(db.count("usage_open").await, 0);
    // Both count against the SLA: the clients saw their connections drop.
    let errors: i64 = sqlx::query_scalar("SELECT SUM(errors_5xx)::BIGINT FROM sli_minutes")
        .fetch_one(&db.sql)
        .await
        .unwrap();
    assert_eq!(errors, 2);
    assert_eq!(db.rollups().await, expected_rollups(&rows, &[], no_tier));
}

/// A process is dead when the lease it promised has passed, not the judge's. A process never
/// seen alive has its requests left alone for a lease too.
#[tokio::test]
async fn each_process_is_judged_by_its_own_lease() {
    let store = pg::fresh().await;
    let now = 1_795_852_900_000;
    let open_by = |i: u64, instance: &str| OpenRequest {
        started_at_ms: now - 10_000,
        ..opened(i, instance)
    };
    store
        .insert_open(&[open_by(1, "slow-beater"), open_by(2, "not-seen-yet")])
        .await
        .unwrap();
    // Seen 60 s ago, promising three 60 s beats.
    store
        .instance_alive("slow-beater", now - 600_000, now - 60_000, 180_000)
        .await
        .unwrap();
    let settled = |at: i64| store.reconcile_interrupted("judge", at, 45_000);
    assert_eq!(settled(now).await.unwrap(), 0, "both may still be alive");
    assert_eq!(
        settled(now + 40_000).await.unwrap(),
        1,
        "the unseen one, a lease after it opened"
    );
    assert_eq!(
        settled(now + 110_000).await.unwrap(),
        0,
        "the slow beater's lease holds"
    );
    assert_eq!(
        settled(now + 130_000).await.unwrap(),
        1,
        "and then it does not"
    );

    // A late, older sign of life does not move the last one back; a lease must be positive.
    store
        .instance_alive("slow-beater", now - 600_000, now - 500_000, 180_000)
        .await
        .unwrap();
    store
        .insert_open(&[open_by(3, "slow-beater")])
        .await
        .unwrap();
    assert_eq!(
        settled(now + 110_000).await.unwrap(),
        0,
        "still seen at now - 60 s"
    );
    let err = store.instance_alive("x", 0, 0, 0).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");

    // Live processes, each within its own lease: how a replica without Redis counts them.
    assert_eq!(store.live_instances(now + 110_000).await.unwrap(), 1);
    store
        .instance_alive("quick-beater", now, now, 45_000)
        .await
        .unwrap();
    assert_eq!(store.live_instances(now).await.unwrap(), 2);
    assert_eq!(store.live_instances(now + 130_000).await.unwrap(), 0);
}

/// A final record kept as a dead letter is the request's record: its open row goes, and a late
/// opening does not bring it back. Dead letters list newest first.
#[tokio::test]
async fn a_dead_lettered_final_record_closes_its_request() {
    let store = pg::fresh().await;
    let now = 1_795_852_900_000;
    store
        .insert_open(&[opened(1, "gone"), opened(3, "gone")])
        .await
        .unwrap();
    let letter = |i: u64, kind: &str| DeadLetter {
        request_id: format!("req-{i}"),
        kind: kind.into(),
        record: format!("{{\"n\":{i}}}"),
        error: "refused".into(),
        at_ms: now + i64::try_from(i).unwrap(),
    };
    let letters = [
        letter(1, "usage"),
        letter(2, "refusal"),
        letter(3, "checkpoint"),
    ];
    store.insert_dead_letters(&letters).await.unwrap();
    store.insert_dead_letters(&[]).await.unwrap();
    store.insert_open(&[opened(2, "gone")]).await.unwrap(); // overtaken by its dead letter
                                                            // Only req-3 is left open: its dead letter was not a final record.
    assert_eq!(
        store.reconcile_interrupted("judge", now, 1).await.unwrap(),
        1
    );
    let ids: Vec<_> = store
        .usage_records(&all())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(ids, ["req-3"]);

    let newest_first: Vec<_> = letters.iter().rev().cloned().collect();
    assert_eq!(store.dead_letters(10).await.unwrap(), newest_first);
    assert_eq!(store.dead_letters(2).await.unwrap(), newest_first[..2]);
    assert!(store.dead_letters(0).await.unwrap().is_empty());
}

/// Openings skip requests whose final record is stored; checkpoints never reopen a closed
/// request; a refusal closes the request it ends.
#[tokio::test]
async fn openings_checkpoints_and_refusals_keep_open_rows_right() {
    let db = fresh_db().await;
    let store = &db.store;
    store.insert_usage(&[record(1)]).await.unwrap();
    store
        .insert_refusals(&[Refusal {
            tenant_id: "t".into(),
            ..refusal("req-2", FEB_1, 503)
        }])
        .await
        .unwrap();
    let opens = [
        opened(1, "me"),
        opened(2, "me"),
        opened(3, "me"),
        opened(3, "me"),
    ];
    store.insert_open(&opens).await.unwrap();
    store.insert_open(&opens).await.unwrap();
    store
        .checkpoint_open(&[checkpoint(1, 5), checkpoint(3, 7)])
        .await
        .unwrap();
    let open: Vec<(String, Option<String>, i64)> =
        sqlx::query_as("SELECT request_id, worker, relayed_tokens FROM usage_open")
            .fetch_all(&db.sql)
            .await
            .unwrap();
    assert_eq!(open, [("req-3".to_string(), Some("w".to_string()), 7)]);

    let refused = [refusal("req-3", FEB_1, 503)];
    let batch = LedgerBatch {
        refusals: &refused,
        ..Default::default()
    };
    store.write_ledger_batch(&batch).await.unwrap();
    assert_eq!(db.count("usage_open").await, 0);
    assert_eq!(db.count("sli_refusals").await, 2);
}

/// Two live replicas settle the same dead process's open requests at the same moment, over and
/// over: each request gets exactly one `interrupted` usage row, counted once in the rollups and
/// once in the totals the replicas report.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_reconciling_one_dead_instance_settle_each_request_once() {
    let db = fresh_db().await;
    let other = db.replica().await;
    let now = 1_795_852_900_000;
    let n: u64 = 2_400;
    let opens: Vec<OpenRequest> = (0..n)
        .map(|i| OpenRequest {
            started_at_ms: 1_795_852_800_000 + i64::try_from(i).unwrap() * 20,
            prompt_estimate: 10 + i,
            ..opened(i, "dead")
        })
        .collect();
    // Two thirds reached a worker.
    let checkpoints: Vec<Checkpoint> = (0..n)
        .filter(|i| i % 3 != 0)
        .map(|i| Checkpoint {
            worker_price_nanos: 3_600_000_000,
            at_ms: opens[usize::try_from(i).unwrap()].started_at_ms + 500,
            ..checkpoint(i, i % 100)
        })
        .collect();
    db.store.insert_open(&opens).await.unwrap();
    db.store.checkpoint_open(&checkpoints).await.unwrap();
    db.store
        .instance_alive("dead", now - 600_000, now - 300_000, 30_000)
        .await
        .unwrap();

    let start = Arc::new(tokio::sync::Barrier::new(4));
    let judges: Vec<_> = (0..4)
        .map(|j| {
            let store = if j % 2 == 0 {
                db.store.clone()
            } else {
                other.clone()
            };
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut settled = 0;
                for _ in 0..3 {
                    settled += store
                        .reconcile_interrupted(&format!("judge-{j}"), now, 30_000)
                        .await
                        .expect("no judge fails");
                }
                settled
            })
        })
        .collect();
    let mut settled = 0;
    for j in judges {
        settled += j.await.unwrap();
    }
    assert_eq!(settled, n, "each request settled by exactly one replica");
    assert_eq!(db.count("usage_open").await, 0);

    let by_id: std::collections::HashMap<_, _> = checkpoints
        .iter()
        .map(|c| (c.request_id.clone(), c.clone()))
        .collect();
    let mut expected: Vec<UsageRecord> = opens
        .iter()
        .map(|o| {
            interrupted(&OpenRow {
                open: o.clone(),
                checkpoint: by_id.get(&o.request_id).cloned(),
            })
        })
        .collect();
    expected
        .sort_by(|a, b| (a.started_at_ms, &a.request_id).cmp(&(b.started_at_ms, &b.request_id)));
    let rows = other.usage_records(&all()).await.unwrap();
    assert_eq!(
        rows, expected,
        "one interrupted row per open request, as the ledger knew it"
    );
    assert_eq!(
        db.rollups().await,
        expected_rollups(&expected, &[], no_tier)
    );
}
