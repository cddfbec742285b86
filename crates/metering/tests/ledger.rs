//! The ledger writer never loses a record: not when its queue is full, not at shutdown, and
//! a record sent twice is stored once.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_metering::ledger::{Ledger, LedgerConfig};
use switchyard_metering::store::prelude::*;
use switchyard_metering::store::sqlite::SqliteStore;
use switchyard_metering::store::UsageQuery;
use switchyard_metering::{UsageRecord, UsageStatus};

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
        usage_source: Default::default(),
        usage_note: None,
        ttft_ms: None,
        ttft_exempt: false,
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
            ..LedgerConfig::default()
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

/// A record the store cannot hold (a count beyond i64, as a lying worker once made one) is kept
/// as a dead letter with the reason; every other record of its batch and of later batches is
/// written.
#[tokio::test]
async fn a_refused_record_is_dead_lettered_and_blocks_nothing() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let (ledger, task) = Ledger::spawn(
        store.clone(),
        LedgerConfig {
            batch: 64,
            ..LedgerConfig::default()
        },
    );
    for i in 0..300 {
        let mut r = record(i);
        if i == 17 || i == 250 {
            r.prompt_tokens = 1 << 63;
        }
        ledger.record(r);
    }
    task.shutdown(Duration::from_secs(5)).await;
    let rows = store.usage_records(&UsageQuery::default()).await.unwrap();
    assert_eq!(rows.len(), 298, "every good record is written");
    let letters = store.dead_letters(10).await.unwrap();
    let mut ids: Vec<_> = letters.iter().map(|l| l.request_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["req-17", "req-250"]);
    assert!(letters[0].error.contains("does not fit"), "{letters:?}");
    let kept: UsageRecord = serde_json::from_str(&letters[0].record).unwrap();
    assert_eq!(kept.prompt_tokens, 1 << 63, "the record is kept whole");
    assert_eq!(ledger.stats().dead_lettered.load(Ordering::Relaxed), 2);
}

/// A store that stops answering is retried, not dead-lettered, and shutdown still ends at its
/// flush deadline, with the records it could not store counted (and printed to stderr).
#[tokio::test]
async fn shutdown_ends_at_its_deadline_when_the_store_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("l.db")).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let (ledger, task) = Ledger::spawn(
        store.clone(),
        LedgerConfig {
            flush_deadline: Duration::from_millis(500),
            ..LedgerConfig::default()
        },
    );
    ledger.record(record(1));
    // Written while the store is up.
    let written = || ledger.stats().written.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while written() < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(written(), 1);
    sqlite.close().await; // the store is gone: every write fails, and so does the ping
    for i in 2..=4 {
        ledger.record(record(i));
    }
    let started = Instant::now();
    task.shutdown(Duration::from_secs(1)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    let stats = ledger.stats();
    assert_eq!(stats.unwritten.load(Ordering::Relaxed), 3);
    assert_eq!(
        stats.dead_lettered.load(Ordering::Relaxed),
        0,
        "good records are not dead letters"
    );
    assert!(stats.failed_writes.load(Ordering::Relaxed) >= 1);
}

/// A full disk is the store's state, not a bad record: the writer retries its batch whole and
/// dead-letters nothing, the write connection survives SQLite's own rollback of the failed
/// transaction, and once there is room again every record is written as it was.
#[tokio::test]
async fn a_full_disk_dead_letters_nothing_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("l.db")).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let (ledger, task) = Ledger::spawn(store.clone(), LedgerConfig::default());
    // Big rows: each needs pages of its own, and so would its dead letter.
    let big = |i: u64| UsageRecord {
        usage_note: Some("x".repeat(6_000)),
        ..record(i)
    };
    ledger.record(big(0));
    let stats = ledger.stats();
    while stats.written.load(Ordering::Relaxed) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sqlite.cap_pages(Some(1)).await.unwrap(); // full: the file may not grow
    for i in 1..=40 {
        ledger.record(big(i));
    }
    // Failed and retried a few times: long enough for a writer that splits batches to start.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.failed_writes.load(Ordering::Relaxed) < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        stats.failed_writes.load(Ordering::Relaxed) >= 5,
        "{stats:?}"
    );
    assert_eq!(stats.written.load(Ordering::Relaxed), 1, "nothing fits");
    sqlite.cap_pages(None).await.unwrap(); // the operator made room
    task.shutdown(Duration::from_secs(30)).await;
    let rows = store.usage_records(&UsageQuery::default()).await.unwrap();
    assert_eq!(rows.len(), 41, "every record is written: {stats:?}");
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    assert!(store.dead_letters(10).await.unwrap().is_empty());
}

fn opened(i: u64) -> switchyard_metering::open::OpenRequest {
    switchyard_metering::open::OpenRequest {
        request_id: format!("req-{i}"),
        instance: String::new(),
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

fn checkpoint(i: u64, tokens: u64) -> switchyard_metering::open::Checkpoint {
    switchyard_metering::open::Checkpoint {
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

/// Requests in flight when their gateway process dies are settled from what the ledger knew:
/// opened at admission, checkpointed while they ran, settled as `interrupted` once the process
/// is seen to be dead; requests that ended are not touched, and nothing is billed twice.
#[tokio::test]
async fn requests_left_open_by_a_dead_process_are_settled_once_as_interrupted() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let (ledger, task) = Ledger::spawn(
        store.clone(),
        LedgerConfig {
            instance: "dead-one".into(),
            ..LedgerConfig::default()
        },
    );
    // 1: ends in the same batch as it opened. 2: opened, then ended later. 3: in flight with
    // two checkpoints. 4: in flight, never reached a worker.
    ledger.opened(opened(1));
    ledger.record(record(1));
    ledger.opened(opened(2));
    ledger.opened(opened(3));
    ledger.checkpoint(checkpoint(3, 12));
    ledger.opened(opened(4));
    let stats = ledger.stats();
    while stats.written.load(Ordering::Relaxed) < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ledger.checkpoint(checkpoint(3, 30));
    ledger.record(record(2));
    task.shutdown(Duration::from_secs(1)).await; // a crash would leave 3 and 4 open just so

    // Seen alive a minute ago with a 30 s lease: dead 30 s ago, not 40 s ago.
    let now = 1_795_852_900_000;
    store
        .instance_alive("dead-one", now - 120_000, now - 60_000, 30_000)
        .await
        .unwrap();
    let reconcile = |own: &'static str, at: i64| {
        let store = store.clone();
        async move { store.reconcile_interrupted(own, at, 30_000).await.unwrap() }
    };
    assert_eq!(reconcile("me", now - 40_000).await, 0);
    assert_eq!(reconcile("dead-one", now).await, 0, "never its own");
    assert_eq!(reconcile("me", now).await, 2);
    assert_eq!(reconcile("me", now).await, 0, "once");

    let rows = store.usage_records(&UsageQuery::default()).await.unwrap();
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
    // Both count against the SLA: the clients saw their connections drop.
    let minutes = store.sli_minutes(&UsageQuery::default()).await.unwrap();
    let errors: u64 = minutes.iter().map(|m| m.counts.errors_5xx).sum();
    assert_eq!(errors, 2);
}

/// A process is dead when the lease it promised has passed, not the judge's: a replica that
/// beats every minute is not settled by one that beats every 15 s. A process never seen alive
/// (its first sign of life not stored yet) has its requests left alone for a lease too.
#[tokio::test]
async fn each_process_is_judged_by_its_own_lease() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let now = 1_795_852_900_000;
    let open_by = |i: u64, instance: &str| switchyard_metering::open::OpenRequest {
        instance: instance.into(),
        started_at_ms: now - 10_000,
        ..opened(i)
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
    let settled = |at: i64| {
        let store = store.clone();
        async move {
            store
                .reconcile_interrupted("judge", at, 45_000)
                .await
                .unwrap()
        }
    };
    assert_eq!(settled(now).await, 0, "both may still be alive");
    assert_eq!(
        settled(now + 40_000).await,
        1,
        "the unseen one, a lease after its request opened"
    );
    assert_eq!(
        settled(now + 110_000).await,
        0,
        "the slow beater's lease holds"
    );
    assert_eq!(settled(now + 130_000).await, 1, "and then it does not");
}

/// A final record kept as a dead letter is the request's record: its open row goes, and a
/// late opening does not bring it back, so it is never also billed as interrupted.
#[tokio::test]
async fn a_dead_lettered_final_record_closes_its_request() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let now = 1_795_852_900_000;
    store.insert_open(&[opened(1)]).await.unwrap();
    let letter = |i: u64| switchyard_metering::DeadLetter {
        request_id: format!("req-{i}"),
        kind: "usage".into(),
        record: "{}".into(),
        error: "refused".into(),
        at_ms: now,
    };
    store
        .insert_dead_letters(&[letter(1), letter(2)])
        .await
        .unwrap();
    store.insert_open(&[opened(2)]).await.unwrap(); // overtaken by its dead letter
    assert_eq!(
        store.reconcile_interrupted("judge", now, 1).await.unwrap(),
        0
    );
    assert!(store
        .usage_records(&UsageQuery::default())
        .await
        .unwrap()
        .is_empty());
}
