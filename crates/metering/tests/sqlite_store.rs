//! The SQLite ledger against a real file in a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Instant;

use switchyard_metering::model::{
    ApiKey, LimitOverrides, Scopes, Tenant, UsageRecord, UsageStatus,
};
use switchyard_metering::store::prelude::*;
use switchyard_metering::store::sqlite::SqliteStore;
use switchyard_metering::store::{Period, UsageQuery};
use switchyard_metering::StoreError;

/// 2026-02-01T00:00:00Z.
const FEB_1: i64 = 1_769_904_000_000;
const DAY_MS: i64 = 86_400_000;

struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn temp_db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    // In a directory that does not exist yet: `open` creates it.
    let path = dir.path().join("data").join("ledger.db");
    Db { _dir: dir, path }
}

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: id.into(),
        tier: "pro".into(),
        overrides: LimitOverrides::default(),
        prepaid: false,
        created_at: 1_700_000_000_000,
        content_logging: Default::default(),
    }
}

fn key(id: &str, tenant_id: &str, hash_byte: u8) -> ApiKey {
    ApiKey {
        id: id.into(),
        tenant_id: tenant_id.into(),
        name: format!("{id} name"),
        prefix: "sy-abcd".into(),
        hash: [hash_byte; 32],
        scopes: Scopes {
            models: vec!["llama-3.1-8b".into()],
            endpoints: vec!["chat".into()],
        },
        expires_at: Some(1_900_000_000_000),
        revoked_at: None,
        created_at: 1_700_000_000_000,
        limits: LimitOverrides {
            requests_per_minute: Some(10),
            ..Default::default()
        },
    }
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

/// `n` distinct records with varied values, deterministic.
fn many_records(prefix: &str, tenant_id: &str, n: usize) -> Vec<UsageRecord> {
    (0..n)
        .map(|i| {
            let i64_ = i as i64;
            let mut r = rec(
                &format!("{prefix}-{i}"),
                tenant_id,
                if i % 3 == 0 {
                    "llama-3.1-8b"
                } else {
                    "qwen-2.5-7b"
                },
                if i % 2 == 0 { "akash" } else { "runpod" },
                FEB_1 + i64_ * 1_000,
                (i % 997) as u64 + 1,
                (i % 541) as u64,
                1_000 + i64_ * 7,
                300 + i64_ * 3,
            );
            if i % 5 == 0 {
                r.ttft_ms = None;
                r.finish_reason = None;
                r.status = UsageStatus::ClientDisconnected;
                r.usage_estimated = true;
                r.stream = false;
                r.http_status = 499;
            }
            r
        })
        .collect()
}

fn all() -> UsageQuery {
    UsageQuery::default()
}

fn tenant_query(t: &str) -> UsageQuery {
    UsageQuery {
        tenant_id: Some(t.into()),
        ..Default::default()
    }
}

async fn count_and_sums(store: &SqliteStore) -> (u64, u64, u64, i64, i64) {
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

#[tokio::test]
async fn tenants_round_trip() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();

    let mut acme = tenant("acme");
    acme.overrides.max_tokens = Some(2048);
    acme.overrides.models = Some(vec!["llama-3.1-8b".into()]);
    store.create_tenant(&acme).await.unwrap();
    store.create_tenant(&tenant("beta")).await.unwrap();

    assert_eq!(store.get_tenant("acme").await.unwrap(), Some(acme.clone()));
    assert_eq!(store.get_tenant("nobody").await.unwrap(), None);
    let ids: Vec<_> = store
        .list_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["acme", "beta"]);

    let dup = store.create_tenant(&tenant("acme")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    // Only the given fields change.
    let t = store
        .update_tenant("acme", Some("business"), None, None, None)
        .await
        .unwrap();
    assert_eq!(t.tier, "business");
    assert_eq!(t.overrides, acme.overrides);
    assert!(!t.prepaid);

    let over = LimitOverrides {
        monthly_tokens: Some(5_000_000),
        price_input_per_million: Some(1.25),
        ..Default::default()
    };
    let t = store
        .update_tenant("acme", None, Some(&over), Some(true), None)
        .await
        .unwrap();
    assert_eq!(t.tier, "business");
    assert_eq!(t.overrides, over);
    assert!(t.prepaid);
    assert_eq!(t.created_at, acme.created_at);
    assert_eq!(store.get_tenant("acme").await.unwrap(), Some(t));

    let missing = store
        .update_tenant("nobody", Some("pro"), None, None, None)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn keys_round_trip() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    store.create_tenant(&tenant("acme")).await.unwrap();
    store.create_tenant(&tenant("beta")).await.unwrap();

    let k1 = key("k1", "acme", 1);
    let k2 = key("k2", "acme", 2);
    let k3 = key("k3", "beta", 3);
    for k in [&k1, &k2, &k3] {
        store.create_key(k).await.unwrap();
    }
    assert_eq!(store.get_key("k1").await.unwrap(), Some(k1.clone()));
    assert_eq!(store.get_key("nope").await.unwrap(), None);
    assert_eq!(
        store.list_keys(Some("acme")).await.unwrap(),
        vec![k1.clone(), k2.clone()]
    );
    assert_eq!(store.list_keys(None).await.unwrap().len(), 3);
    assert!(store.list_keys(Some("nobody")).await.unwrap().is_empty());

    // Same id, or same secret under another id: both conflicts.
    let dup_id = store.create_key(&key("k1", "acme", 9)).await;
    assert!(matches!(dup_id, Err(StoreError::Conflict(_))), "{dup_id:?}");
    let dup_hash = store.create_key(&key("k9", "acme", 1)).await;
    assert!(
        matches!(dup_hash, Err(StoreError::Conflict(_))),
        "{dup_hash:?}"
    );
    let no_tenant = store.create_key(&key("k8", "nobody", 8)).await;
    assert!(
        matches!(no_tenant, Err(StoreError::NotFound(_))),
        "{no_tenant:?}"
    );

    store.revoke_key("k1", 1_800_000_000_000).await.unwrap();
    // A second revocation keeps the first time.
    store.revoke_key("k1", 1_850_000_000_000).await.unwrap();
    let revoked = store.get_key("k1").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(1_800_000_000_000));
    assert_eq!(revoked.hash, k1.hash);
    let missing = store.revoke_key("nope", 1).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    // The hash is in the struct but never serialized.
    let json = serde_json::to_string(&store.list_keys(None).await.unwrap()).unwrap();
    assert!(!json.contains("hash"), "{json}");
}

#[tokio::test]
async fn balance_is_credits_minus_costs() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    store.create_tenant(&tenant("acme")).await.unwrap();
    store.create_tenant(&tenant("beta")).await.unwrap();

    assert_eq!(store.credit_balance("acme").await.unwrap(), 0);
    store
        .add_credit("acme", 10_000_000_000, "top-up")
        .await
        .unwrap();
    store
        .add_credit("acme", 2_500_000_001, "bonus")
        .await
        .unwrap();
    store
        .add_credit("acme", -1, "rounding correction")
        .await
        .unwrap();
    store
        .insert_usage(&[
            rec("r1", "acme", "m", "p", FEB_1, 10, 10, 3_200_001, 1),
            rec("r2", "acme", "m", "p", FEB_1 + 1, 10, 10, 1_990, 1),
            rec("r3", "beta", "m", "p", FEB_1 + 2, 10, 10, 777, 1),
        ])
        .await
        .unwrap();

    assert_eq!(
        store.credit_balance("acme").await.unwrap(),
        10_000_000_000 + 2_500_000_001 - 1 - 3_200_001 - 1_990
    );
    // No credits: zero minus what was spent.
    assert_eq!(store.credit_balance("beta").await.unwrap(), -777);

    let unknown = store.credit_balance("nobody").await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
    let unknown = store.add_credit("nobody", 5, "x").await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn a_resent_batch_is_not_counted_twice() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    let batch = many_records("req", "acme", 300);
    store.insert_usage(&batch).await.unwrap();
    store.insert_usage(&batch).await.unwrap();
    // A batch that overlaps the first one by half.
    let more = many_records("req", "acme", 450);
    store.insert_usage(&more[150..]).await.unwrap();

    assert_eq!(count_and_sums(&store).await, expected_sums(&more));
    let stored = store.usage_records(&all()).await.unwrap();
    assert_eq!(stored, more, "records round-trip unchanged, in time order");
    assert_eq!(store.insert_usage(&[]).await.ok(), Some(()));
}

/// Requests counted in the SLI rollups (minutes), all tenants.
async fn sli_requests(store: &SqliteStore) -> u64 {
    let minutes = store.sli_minutes(&all()).await.unwrap();
    minutes.iter().map(|m| m.counts.requests).sum()
}

#[tokio::test]
async fn rollups_count_each_request_once_across_overlaps_and_duplicates() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    let first = many_records("req", "acme", 120);
    store.insert_usage(&first).await.unwrap();
    assert_eq!(sli_requests(&store).await, 120);

    // Half of `first` again, then new ids, one of them twice: once at the end of a 50-row
    // insert chunk and once at the start of the next, so the copies are in different
    // statements.
    let new = many_records("new", "acme", 40);
    let mut second: Vec<UsageRecord> = first[60..109].to_vec();
    second.push(new[0].clone()); // position 49: the last row of the first chunk
    second.push(new[0].clone()); // position 50: the first row of the second chunk
    second.extend_from_slice(&new[1..]);
    store.insert_usage(&second).await.unwrap();
    assert_eq!(sli_requests(&store).await, 160, "120 + 40 distinct new ids");
    // The same batch again (a retry whose commit went through): nothing new.
    store.insert_usage(&second).await.unwrap();
    assert_eq!(sli_requests(&store).await, 160);
    assert_eq!(store.usage_records(&all()).await.unwrap().len(), 160);

    // Refusals: the same rules, in their own table.
    let refusal = |id: &str| switchyard_metering::sli::Refusal {
        request_id: id.into(),
        at_ms: FEB_1,
        tenant_id: "acme".into(),
        model: "llama-3.1-8b".into(),
        http_status: 503,
        throttled: false,
    };
    let refusals: Vec<_> = ["r1", "r2", "r2", "r3"]
        .iter()
        .map(|id| refusal(id))
        .collect();
    store.insert_refusals(&refusals).await.unwrap();
    store.insert_refusals(&refusals[1..]).await.unwrap();
    store
        .insert_refusals(&[refusal("r3"), refusal("r4")])
        .await
        .unwrap();
    assert_eq!(sli_requests(&store).await, 164, "r1..r4 once each");
}

#[tokio::test]
async fn a_value_that_does_not_fit_fails_the_whole_batch() {
    let store = SqliteStore::in_memory().await.unwrap();
    let mut batch = many_records("req", "acme", 120);
    batch[110].prompt_tokens = u64::MAX;
    let err = store.insert_usage(&batch).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    batch[110].prompt_tokens = 1;
    batch[111].ttft_ms = Some(i64::MAX as u64 + 1);
    let err = store.insert_usage(&batch).await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    assert!(store.usage_records(&all()).await.unwrap().is_empty());

    // The largest value that fits round-trips.
    batch[111].ttft_ms = Some(i64::MAX as u64);
    store.insert_usage(&batch).await.unwrap();
    let got = store.usage_records(&all()).await.unwrap();
    assert_eq!(got[111].ttft_ms, Some(i64::MAX as u64));
}

#[tokio::test]
async fn days_and_months_are_utc_calendar_periods() {
    let store = SqliteStore::in_memory().await.unwrap();
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

    let row =
        |t: &str, p: &str, m: &str, n, pt, ct, cost, cogs| switchyard_metering::store::UsageRow {
            tenant_id: t.into(),
            period: p.into(),
            model: m.into(),
            requests: n,
            prompt_tokens: pt,
            completion_tokens: ct,
            cost,
            cogs,
        };

    let days = store.usage(&all(), Period::Day).await.unwrap();
    assert_eq!(
        days,
        vec![
            row("acme", "2026-01-31", "a", 2, 300, 30, 3_000, 1_200),
            row("acme", "2026-01-31", "b", 1, 7, 3, 5, 1),
            row("acme", "2026-02-01", "a", 2, 1_001, 101, 10_001, 4_001),
            row("acme", "2026-02-02", "a", 1, 2, 2, 2, 2),
            row("beta", "2026-02-01", "a", 1, 50, 50, 500, 50),
        ]
    );

    let months = store.usage(&all(), Period::Month).await.unwrap();
    assert_eq!(
        months,
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
    let ids: Vec<_> = store
        .usage_records(&feb_1_acme)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(ids, ["4", "5"]);
    let ids: Vec<_> = store
        .usage_records(&tenant_query("acme"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(ids, ["1", "3", "2", "4", "5", "6"], "time order");

    let margin = store.margin(&all()).await.unwrap();
    let got: Vec<_> = margin
        .iter()
        .map(|m| {
            (
                m.model.as_str(),
                m.provider.as_str(),
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

#[tokio::test]
async fn everything_survives_a_restart() {
    let db = temp_db();
    let records = many_records("req", "acme", 1_234);
    let mut k = key("k1", "acme", 7);
    {
        let store = SqliteStore::open(&db.path).await.unwrap();
        store.create_tenant(&tenant("acme")).await.unwrap();
        store.create_key(&k).await.unwrap();
        store
            .add_credit("acme", 123_456_789, "top-up")
            .await
            .unwrap();
        store.insert_usage(&records).await.unwrap();
        store.revoke_key("k1", 42).await.unwrap();
        // Dropped without `close`, as a killed process would leave it.
    }
    k.revoked_at = Some(42);

    let store = SqliteStore::open(&db.path).await.unwrap();
    assert_eq!(
        store.get_tenant("acme").await.unwrap(),
        Some(tenant("acme"))
    );
    assert_eq!(store.get_key("k1").await.unwrap(), Some(k));
    assert_eq!(count_and_sums(&store).await, expected_sums(&records));
    let costs: i64 = records.iter().map(|r| r.cost).sum();
    assert_eq!(
        store.credit_balance("acme").await.unwrap(),
        123_456_789 - costs
    );
    assert_eq!(store.usage_records(&all()).await.unwrap(), records);

    // And once more after a clean close.
    store.close().await;
    drop(store);
    let store = SqliteStore::open(&db.path).await.unwrap();
    assert_eq!(count_and_sums(&store).await, expected_sums(&records));
}

#[tokio::test]
async fn ten_thousand_records_in_batches_of_500_sum_exactly() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    let records = many_records("req", "acme", 10_000);

    let started = Instant::now();
    for batch in records.chunks(500) {
        store.insert_usage(batch).await.unwrap();
    }
    let elapsed = started.elapsed();
    eprintln!("inserted 10,000 usage records in batches of 500 in {elapsed:?}");

    assert_eq!(count_and_sums(&store).await, expected_sums(&records));
    let expected_tokens: u64 = records
        .iter()
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    assert_eq!(tenant_tokens(&store, "acme", 0).await, expected_tokens);

    // Per model, against sums computed here.
    let by_month = store.usage(&all(), Period::Month).await.unwrap();
    for row in &by_month {
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.model == row.model)
            .cloned()
            .collect();
        let e = expected_sums(&mine);
        assert_eq!(
            (
                row.requests,
                row.prompt_tokens,
                row.completion_tokens,
                row.cost,
                row.cogs
            ),
            e,
            "{}",
            row.model
        );
    }
    assert_eq!(by_month.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_rows() {
    let db = temp_db();
    let store = SqliteStore::open(&db.path).await.unwrap();
    // A second store on the same file stands for another process (the CLI beside the server):
    // its writes contend for SQLite's file lock, which busy_timeout waits out.
    let other = SqliteStore::open(&db.path).await.unwrap();

    let tasks = 8;
    let batches = 10;
    let per_batch = 100;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = if t % 2 == 0 {
            store.clone()
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
                // And a resend of the same batch from another writer's point of view.
                store.insert_usage(&batch[..per_batch / 2]).await.unwrap();
            }
            records
        }));
    }
    let mut all_records = Vec::new();
    for h in handles {
        all_records.extend(h.await.unwrap());
    }

    assert_eq!(count_and_sums(&store).await, expected_sums(&all_records));
    assert_eq!(count_and_sums(&other).await, expected_sums(&all_records));
    for t in 0..tasks {
        let n = store
            .usage_records(&tenant_query(&format!("tenant-{t}")))
            .await
            .unwrap()
            .len();
        assert_eq!(n, batches * per_batch, "tenant-{t}");
    }
}

#[tokio::test]
async fn in_memory_store_keeps_its_data_across_calls() {
    let store = SqliteStore::in_memory().await.unwrap();
    store.create_tenant(&tenant("acme")).await.unwrap();
    let records = many_records("req", "acme", 50);
    store.insert_usage(&records).await.unwrap();
    // Concurrent readers and a writer share the one connection.
    let q = all();
    let (a, b, c) = tokio::join!(
        store.list_tenants(),
        store.usage_records(&q),
        store.insert_usage(&records[..10]),
    );
    assert_eq!(a.unwrap().len(), 1);
    assert_eq!(b.unwrap().len(), 50);
    c.unwrap();
    assert_eq!(count_and_sums(&store).await, expected_sums(&records));

    // Two in-memory stores are two databases.
    let other = SqliteStore::in_memory().await.unwrap();
    assert!(other.list_tenants().await.unwrap().is_empty());
}

/// A tenant's tokens since `from_ms`, summed over its keys.
async fn tenant_tokens(store: &SqliteStore, tenant: &str, from_ms: i64) -> u64 {
    store
        .tokens_by_key_since(from_ms)
        .await
        .unwrap()
        .iter()
        .filter(|k| k.tenant_id == tenant)
        .map(|k| k.tokens)
        .sum()
}
