//! A Postgres that goes down and comes back while the ledger writes loses no usage row and
//! doubles none: the writer keeps each batch it could not store and retries it until the
//! database is back.
//!
//! The test runs a private cluster (`tests/pg/private_cluster.rs`), so the restart disturbs no
//! other test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[path = "pg/private_cluster.rs"]
mod private_cluster;

use private_cluster::Cluster;
use switchyard_metering::ledger::{Ledger, LedgerConfig};
use switchyard_metering::store::postgres::PgStore;
use switchyard_metering::store::prelude::*;
use switchyard_metering::store::UsageQuery;
use switchyard_metering::{UsageRecord, UsageStatus};

fn record(i: u64) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{i:05}"),
        started_at_ms: 1_795_852_800_000 + i as i64,
        tenant_id: "t".into(),
        key_id: "k".into(),
        model: "m".into(),
        endpoint: "/v1/chat/completions".into(),
        stream: true,
        worker: "w".into(),
        provider: "p".into(),
        region: "r".into(),
        prompt_tokens: 10,
        completion_tokens: i % 11,
        usage_estimated: false,
        usage_source: Default::default(),
        usage_note: None,
        ttft_ms: Some(40),
        ttft_exempt: false,
        total_ms: 200,
        status: UsageStatus::Completed,
        http_status: 200,
        finish_reason: Some("stop".into()),
        cost: 3,
        cogs: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_loses_and_doubles_no_usage_row() {
    let cluster = Arc::new(Cluster::start());
    let pg = PgStore::connect(&cluster.url()).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(pg.clone());
    let (ledger, task) = Ledger::spawn(
        store.clone(),
        LedgerConfig {
            batch: 64,
            flush_deadline: Duration::from_secs(60),
            ..LedgerConfig::default()
        },
    );
    let n = 4_000u64;
    // Records arrive over about 4 s. After the first second the database goes down for longer
    // than the store waits for a connection (5 s), so writes fail and must be retried; a
    // quick restart is hidden by the connection pool, which waits for the server.
    let restart = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let c = cluster.clone();
            tokio::task::spawn_blocking(move || c.ctl(&["-m", "fast", "stop"]))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(7)).await;
            tokio::task::spawn_blocking(move || cluster.ctl(&["start"]))
                .await
                .unwrap();
        })
    };
    for i in 0..n {
        ledger.record(record(i));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    restart.await.unwrap();
    let stats = ledger.stats();
    let failed = stats.failed_writes.load(Ordering::Relaxed);
    task.shutdown(Duration::from_secs(60)).await;

    let rows = store.usage_records(&UsageQuery::default()).await.unwrap();
    assert_eq!(
        rows.len() as u64,
        n,
        "one row per record, none lost, none doubled"
    );
    let completion: u64 = rows.iter().map(|r| r.completion_tokens).sum();
    assert_eq!(completion, (0..n).map(|i| i % 11).sum::<u64>());
    assert!(
        failed > 0,
        "the restart made some writes fail (else this test did not test a restart)"
    );
    pg.close().await;
}
