//! The ledger writer never loses a record: not when its queue is full, not at shutdown, and
//! a record sent twice is stored once.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use switchyard_metering::ledger::{Ledger, LedgerConfig};
use switchyard_metering::store::sqlite::SqliteStore;
use switchyard_metering::store::UsageQuery;
use switchyard_metering::{Store, UsageRecord, UsageStatus};

fn record(i: u64) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{i}"),
        started_at_ms: 1_795_852_800_000 + i as i64,
        tenant_id: "t".into(),
        key_id: "k".into(),
        model: "m".into(),
        endpoint: "/v1/chat/completions".into(),
        stream: false,
        worker: "w".into(),
        provider: "p".into(),
        region: "r".into(),
        prompt_tokens: 10,
        completion_tokens: i % 7,
        usage_estimated: false,
        ttft_ms: None,
        total_ms: 5,
        status: UsageStatus::Completed,
        http_status: 200,
        finish_reason: None,
        cost: 1,
        cogs: 1,
    }
}

#[tokio::test]
async fn a_full_queue_and_shutdown_lose_nothing_and_duplicates_count_once() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let (ledger, task) = Ledger::spawn(
        store.clone(),
        LedgerConfig {
            queue: 4,
            batch: 16,
        },
    );
    for i in 0..2_000 {
        ledger.record(record(i));
    }
    for i in 0..100 {
        ledger.record(record(i)); // re-sent: must not double
    }
    task.shutdown(Duration::from_secs(30)).await;
    let rows = store.usage_records(&UsageQuery::default()).await.unwrap();
    assert_eq!(rows.len(), 2_000);
    let completion: u64 = rows.iter().map(|r| r.completion_tokens).sum();
    assert_eq!(completion, (0..2_000u64).map(|i| i % 7).sum::<u64>());
}
