//! Content logs in the Postgres store, and the tenant's content-logging setting: the SQLite
//! store's tests (`content_store.rs`) ported, the same calls compared with SQLite, and two
//! replicas writing and deleting at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pg;

use switchyard_metering::content::{ContentLogging, ContentRecord};
use switchyard_metering::model::{LimitOverrides, Tenant};
use switchyard_metering::store::postgres::PgStore;
use switchyard_metering::store::prelude::*;
use switchyard_metering::store::sqlite::SqliteStore;
use switchyard_metering::StoreError;

fn record(id: &str, tenant: &str, created: i64, expires: i64) -> ContentRecord {
    ContentRecord {
        request_id: id.into(),
        tenant_id: tenant.into(),
        model: "m".into(),
        endpoint: "/v1/chat/completions".into(),
        stream: true,
        status: "completed".into(),
        created_at_ms: created,
        expires_at_ms: expires,
        prompt: r#"[{"role":"user","content":"hi [REDACTED:email]"}]"#.into(),
        prompt_truncated: false,
        completion: "hello".into(),
        completion_truncated: true,
    }
}

/// Two stores on one fresh schema: two gateway replicas sharing the database.
async fn two_replicas() -> (PgStore, PgStore) {
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    let a = PgStore::connect_in_schema(&pg::url(), &schema)
        .await
        .unwrap();
    let b = PgStore::connect_in_schema(&pg::url(), &schema)
        .await
        .unwrap();
    (a, b)
}

#[tokio::test]
async fn tenant_setting_round_trips() {
    let store = pg::fresh().await;
    let mut t = Tenant {
        id: "acme".into(),
        tier: "pro".into(),
        overrides: LimitOverrides::default(),
        prepaid: false,
        created_at: 1,
        content_logging: ContentLogging::Days30,
    };
    store.create_tenant(&t).await.unwrap();
    assert_eq!(store.get_tenant("acme").await.unwrap().unwrap(), t);
    // Other changes leave the setting alone; a change of it alone is stored.
    let u = store
        .update_tenant("acme", Some("business"), None, None, None)
        .await
        .unwrap();
    assert_eq!(u.content_logging, ContentLogging::Days30);
    let u = store
        .update_tenant("acme", None, None, None, Some(ContentLogging::Days7))
        .await
        .unwrap();
    assert_eq!(u.content_logging, ContentLogging::Days7);
    let u = store
        .update_tenant("acme", None, None, None, Some(ContentLogging::Off))
        .await
        .unwrap();
    t.tier = "business".into();
    t.content_logging = ContentLogging::Off;
    assert_eq!(u, t);
    assert_eq!(store.list_tenants().await.unwrap(), vec![t]);
}

#[tokio::test]
async fn insert_read_erase_expire() {
    let store = pg::fresh().await;
    let batch = vec![
        record("r1", "a", 10, 100),
        record("r2", "a", 20, 200),
        record("r3", "b", 30, 300),
    ];
    store.insert_content(&batch).await.unwrap();
    // A retried batch is stored once.
    store.insert_content(&batch).await.unwrap();
    store.insert_content(&[]).await.unwrap();
    let a = store.content_records("a", None, 10).await.unwrap();
    assert_eq!(a, vec![batch[1].clone(), batch[0].clone()]); // newest first
    assert_eq!(
        store.content_records("a", Some("r1"), 10).await.unwrap(),
        vec![batch[0].clone()]
    );
    assert_eq!(
        store.content_records("a", None, 1).await.unwrap(),
        vec![batch[1].clone()]
    );
    assert!(store
        .content_records("a", None, 0)
        .await
        .unwrap()
        .is_empty());
    // Another tenant's record is not found under this one.
    assert!(store
        .content_records("a", Some("r3"), 10)
        .await
        .unwrap()
        .is_empty());

    assert_eq!(store.delete_expired_content(99).await.unwrap(), 0);
    // At or before `now_ms`: r1 expires at exactly 100.
    assert_eq!(store.delete_expired_content(100).await.unwrap(), 1);
    assert_eq!(
        store.content_records("a", None, 10).await.unwrap(),
        vec![batch[1].clone()]
    );
    assert_eq!(store.erase_content("b").await.unwrap(), 1);
    assert_eq!(store.erase_content("b").await.unwrap(), 0);
    assert!(store
        .content_records("b", None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.content_records("a", None, 10).await.unwrap().len(), 1);
}

/// A batch larger than one insert statement, with an id repeated inside a statement and
/// across two, and ids already stored: each id once, as first written.
#[tokio::test]
async fn a_large_batch_with_repeats_is_stored_once_per_id() {
    let store = pg::fresh().await;
    store
        .insert_content(&[record("c0005", "t", 5, 1_000)])
        .await
        .unwrap();
    let mut batch: Vec<_> = (0..1_200)
        .map(|i| record(&format!("c{i:04}"), "t", i, 1_000))
        .collect();
    batch[5].completion = "a copy of a stored record: skipped".into();
    batch.push(batch[3].clone()); // same statement as the original (ids are sorted)
    let mut late = batch[1_100].clone();
    late.prompt = "a repeat: the first copy wins".into();
    batch.insert(0, late);
    store.insert_content(&batch).await.unwrap();

    let got = store.content_records("t", None, 5_000).await.unwrap();
    assert_eq!(got.len(), 1_200);
    let ids: Vec<_> = got.iter().map(|r| r.request_id.clone()).collect();
    let want: Vec<_> = (0..1_200).rev().map(|i| format!("c{i:04}")).collect();
    assert_eq!(ids, want, "newest first");
    // Sorting for the insert keeps equal ids in batch order (a stable sort).
    let c1100 = got.iter().find(|r| r.request_id == "c1100").unwrap();
    assert_eq!(c1100.prompt, "a repeat: the first copy wins");
    let c0005 = got.iter().find(|r| r.request_id == "c0005").unwrap();
    assert_eq!(c0005, &record("c0005", "t", 5, 1_000));
}

/// Postgres text cannot hold NUL. In a prompt or completion (client and worker text) it is
/// stored as U+FFFD and the batch goes in; in one of the gateway's own fields the batch is
/// refused whole, naming the record, and nothing of it is stored.
#[tokio::test]
async fn nul_in_content_is_replaced_and_nul_in_an_id_refuses_the_batch() {
    let store = pg::fresh().await;
    let mut odd = record("r2", "a", 2, 100);
    odd.prompt = "a\0b".into();
    odd.completion = "before\0after".into();
    store
        .insert_content(&[record("r1", "a", 1, 100), odd])
        .await
        .unwrap();
    let got = store.content_records("a", Some("r2"), 10).await.unwrap();
    assert_eq!(got[0].completion, "before\u{FFFD}after");
    assert!(got[0].prompt.contains("a\u{FFFD}b"), "{}", got[0].prompt);
    assert_eq!(store.content_records("a", None, 10).await.unwrap().len(), 2);

    let mut bad = record("r4", "a", 4, 100);
    bad.model = "m\0".into();
    let err = store
        .insert_content(&[record("r3", "a", 3, 100), bad])
        .await;
    assert!(
        matches!(&err, Err(StoreError::Invalid(m)) if m.contains("\"r4\"") && m.contains("model")),
        "{err:?}"
    );
    assert_eq!(store.content_records("a", None, 10).await.unwrap().len(), 2);
}

/// What a caller sees from every method, as text.
async fn script(s: &dyn ContentStore) -> Vec<String> {
    let mut out = Vec::new();
    // Ties on created_at_ms are broken by request id in byte order.
    let batch: Vec<_> = ["r-b", "rB", "r_b", "rb", "r"]
        .iter()
        .map(|id| record(id, "a", 7, 50))
        .chain([record("x", "a", 9, 60), record("y", "b", 1, 40)])
        .collect();
    out.push(format!("{:?}", s.insert_content(&batch).await));
    out.push(format!("{:?}", s.insert_content(&batch[2..]).await));
    out.push(format!("{:?}", s.content_records("a", None, 100).await));
    out.push(format!("{:?}", s.content_records("a", None, 3).await));
    out.push(format!("{:?}", s.content_records("a", Some("rB"), 3).await));
    out.push(format!("{:?}", s.content_records("zz", None, 3).await));
    out.push(format!("{:?}", s.delete_expired_content(50).await));
    out.push(format!("{:?}", s.content_records("a", None, 100).await));
    out.push(format!("{:?}", s.erase_content("a").await));
    out.push(format!("{:?}", s.erase_content("b").await));
    out.push(format!("{:?}", s.delete_expired_content(i64::MAX).await));
    out
}

#[tokio::test]
async fn the_same_calls_give_the_same_results_as_on_sqlite() {
    let sqlite = SqliteStore::in_memory().await.unwrap();
    let want = script(&sqlite).await;
    let got = script(&pg::fresh().await).await;
    assert_eq!(want.len(), got.len());
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(g, w, "call {i}");
    }
    assert_eq!(want[6], "Ok(6)");
    assert_eq!(want[8], "Ok(1)");
}

/// Two replicas insert the same ids at once, in opposite orders: no deadlock, no error, each
/// id once. Then both expire and erase at once: each row is counted by exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_write_and_delete_at_once() {
    let (a, b) = two_replicas().await;
    for round in 0..20 {
        let forward: Vec<_> = (0..100)
            .map(|i| record(&format!("r{round}-{i:03}"), "t", i, i))
            .collect();
        let mut backward = forward.clone();
        backward.reverse();
        let (x, y) = tokio::join!(a.insert_content(&forward), b.insert_content(&backward));
        x.unwrap();
        y.unwrap();
    }
    assert_eq!(
        b.content_records("t", None, 5_000).await.unwrap().len(),
        2_000
    );
    assert_eq!(
        a.content_records("t", Some("r7-042"), 5).await.unwrap(),
        vec![record("r7-042", "t", 42, 42)]
    );

    // Expiry times 0..=99, 20 of each: both replicas delete up to 49 at once.
    let (x, y) = tokio::join!(a.delete_expired_content(49), b.delete_expired_content(49));
    assert_eq!(x.unwrap() + y.unwrap(), 1_000);
    let (x, y) = tokio::join!(a.erase_content("t"), b.erase_content("t"));
    assert_eq!(x.unwrap() + y.unwrap(), 1_000);
    assert!(a.content_records("t", None, 10).await.unwrap().is_empty());
}
