//! Content logs in the SQLite store, and the tenant's content-logging setting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use switchyard_metering::content::{ContentLogging, ContentRecord};
use switchyard_metering::ledger::{Ledger, LedgerConfig};
use switchyard_metering::model::{LimitOverrides, Tenant};
use switchyard_metering::store::prelude::*;
use switchyard_metering::store::sqlite::SqliteStore;

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

#[tokio::test]
async fn tenant_setting_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
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
    let store = SqliteStore::in_memory().await.unwrap();
    let batch = vec![
        record("r1", "a", 10, 100),
        record("r2", "a", 20, 200),
        record("r3", "b", 30, 300),
    ];
    store.insert_content(&batch).await.unwrap();
    // A retried batch is stored once.
    store.insert_content(&batch).await.unwrap();
    let a = store.content_records("a", None, 10).await.unwrap();
    assert_eq!(a, vec![batch[1].clone(), batch[0].clone()]); // newest first
    assert_eq!(
        store.content_records("a", Some("r1"), 10).await.unwrap(),
        vec![batch[0].clone()]
    );
    assert_eq!(store.content_records("a", None, 1).await.unwrap().len(), 1);
    assert!(store
        .content_records("a", Some("r3"), 10)
        .await
        .unwrap()
        .is_empty());

    assert_eq!(store.delete_expired_content(100).await.unwrap(), 1);
    assert_eq!(store.content_records("a", None, 10).await.unwrap().len(), 1);
    assert_eq!(store.erase_content("b").await.unwrap(), 1);
    assert!(store
        .content_records("b", None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.content_records("a", None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn ledger_writes_content_and_drains_it_at_shutdown() {
    let store = Arc::new(SqliteStore::in_memory().await.unwrap());
    let (ledger, task) = Ledger::spawn(store.clone(), LedgerConfig::default());
    for i in 0..5 {
        let slot = ledger.content().try_reserve().unwrap();
        slot.send(record(&format!("r{i}"), "a", i, 1_000));
    }
    // A slot taken before shutdown may still be used while it drains.
    let late = ledger.content().try_reserve().unwrap();
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        late.send(record("late", "a", 9, 1_000));
    });
    task.shutdown(Duration::from_secs(1)).await;
    sender.await.unwrap();
    assert_eq!(
        store.content_records("a", None, 100).await.unwrap().len(),
        6
    );
}
