//! The batch writer: one task that takes records off the ledger's queue and stores them, a
//! batch per transaction. It never blocks on a bad row and never loses one:
//!
//! - A batch the store refuses for a record it cannot hold (a constraint, a range, a type:
//!   `StoreError::Invalid`) is split in halves until the refused record is alone; that record
//!   goes to the dead-letter table with the store's reason, and every other record of the
//!   batch is written.
//! - A batch that fails for the store's own state (locked, full, gone:
//!   `StoreError::Unavailable`) is retried whole with doubling waits until it is written.
//! - A batch that fails with an error neither names is retried a few times, then split too,
//!   in case one record causes it; a record failing alone is dead-lettered only if the store
//!   takes its dead letter, which shows the store is writing. Otherwise it is retried as a good
//!   record until the store is back.
//! - At shutdown the writer has a deadline: what is still unwritten when it passes is printed
//!   to stderr, one JSON line per record, and the writer returns. Records are idempotent by
//!   request id, so a line whose batch did commit after all can be imported again safely.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::directory::unix_ms;
use crate::model::{DeadLetter, UsageRecord};
use crate::open::{Checkpoint, OpenRequest};
use crate::sli::Refusal;
use crate::store::{LedgerBatch, Store, StoreError};

/// How long the writer waits for more records before writing a partial batch.
const LINGER: Duration = Duration::from_millis(25);
/// First wait after a failed write; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Attempts at a batch that fails with an error the store does not pin on a record, before
/// the batch is split to look for one: the retries cover a transient error (a lock held by
/// another process past `busy_timeout`, a full disk being cleaned up).
const ATTEMPTS_BEFORE_SPLIT: u32 = 3;

/// What the queue carries. Unboxed: a record moves once into a channel slot, and a box would
/// be an allocation per request on the request path for a smaller slot.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Entry {
    Usage(UsageRecord),
    Refusal(Refusal),
    Open(OpenRequest),
    Checkpoint(Checkpoint),
}

impl Entry {
    pub(super) fn request_id(&self) -> &str {
        match self {
            Entry::Usage(r) => &r.request_id,
            Entry::Refusal(r) => &r.request_id,
            Entry::Open(r) => &r.request_id,
            Entry::Checkpoint(r) => &r.request_id,
        }
    }

    /// Prints the record to stderr as one JSON line: the last resort for a record that could
    /// not be stored.
    pub(super) fn report_unwritten(&self, why: &str) {
        match self {
            Entry::Usage(r) => report(r, why),
            Entry::Refusal(r) => report(r, why),
            Entry::Open(r) => report(r, why),
            Entry::Checkpoint(r) => report(r, why),
        }
    }
}

/// Counters the gateway exports at scrape time.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Records stored (each once, retried batches included once).
    pub written: AtomicU64,
    /// Records the store refused, kept in the dead-letter table.
    pub dead_lettered: AtomicU64,
    /// Failed write attempts (each retried or split).
    pub failed_writes: AtomicU64,
    /// Records printed to stderr because they could not be stored before the deadline.
    pub unwritten: AtomicU64,
}

/// A kind of record the writer stores.
#[async_trait]
trait Record: Serialize + Send + Sync + Sized {
    const KIND: &'static str;
    fn request_id(&self) -> &str;
    async fn insert(store: &dyn Store, batch: &[Self]) -> crate::store::Result<()>;
}

#[async_trait]
impl Record for UsageRecord {
    const KIND: &'static str = "usage";
    fn request_id(&self) -> &str {
        &self.request_id
    }
    async fn insert(store: &dyn Store, batch: &[Self]) -> crate::store::Result<()> {
        store.insert_usage(batch).await
    }
}

#[async_trait]
impl Record for OpenRequest {
    const KIND: &'static str = "open";
    fn request_id(&self) -> &str {
        &self.request_id
    }
    async fn insert(store: &dyn Store, batch: &[Self]) -> crate::store::Result<()> {
        store.insert_open(batch).await
    }
}

#[async_trait]
impl Record for Checkpoint {
    const KIND: &'static str = "checkpoint";
    fn request_id(&self) -> &str {
        &self.request_id
    }
    async fn insert(store: &dyn Store, batch: &[Self]) -> crate::store::Result<()> {
        store.checkpoint_open(batch).await
    }
}

#[async_trait]
impl Record for Refusal {
    const KIND: &'static str = "refusal";
    fn request_id(&self) -> &str {
        &self.request_id
    }
    async fn insert(store: &dyn Store, batch: &[Self]) -> crate::store::Result<()> {
        store.insert_refusals(batch).await
    }
}

fn report<R: Record>(record: &R, why: &str) {
    let json = serde_json::to_string(record).unwrap_or_else(|e| format!("\"unprintable: {e}\""));
    // stderr on purpose, beside the log: this line is the record, with its kind, for an
    // operator to import.
    eprintln!(
        "switchyard: unwritten ledger {} record ({why}): {json}",
        R::KIND
    );
}

/// The writer's side: the queue, the shutdown signals and the counters.
pub(super) struct Writer {
    pub(super) store: Arc<dyn Store>,
    pub(super) batch_size: usize,
    pub(super) stats: Arc<WriterStats>,
    /// Turns true when shutdown's flush deadline has passed: stop retrying, report, return.
    pub(super) give_up: watch::Receiver<bool>,
}

/// The batch could not be stored before the deadline; these records are left.
struct GaveUp<R>(Vec<R>);

impl Writer {
    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Entry>,
        mut closed: tokio::sync::oneshot::Receiver<()>,
    ) {
        let batch_size = self.batch_size;
        let mut batch = Vec::with_capacity(batch_size);
        let mut closing = false;
        loop {
            if closing {
                rx.close();
                while rx.recv_many(&mut batch, batch_size).await > 0 {
                    if self.write(&mut batch).await.is_err() {
                        // Past the deadline: what is left goes to stderr.
                        while let Ok(entry) = rx.try_recv() {
                            self.unwritten(&entry, "shutdown deadline passed");
                        }
                        return;
                    }
                }
                return;
            }
            tokio::select! {
                n = rx.recv_many(&mut batch, batch_size) => {
                    if n == 0 {
                        return;
                    }
                    // Let a batch fill for a moment: one transaction per request would cost
                    // more CPU than the request itself (each is a round trip to SQLite's thread
                    // and a sync), and on a small machine that CPU is taken from the requests.
                    let linger = tokio::time::sleep(LINGER);
                    tokio::pin!(linger);
                    while batch.len() < batch_size {
                        let room = batch_size - batch.len();
                        tokio::select! {
                            n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                            _ = &mut linger => break,
                            _ = &mut closed => {
                                closing = true;
                                break;
                            }
                        }
                    }
                    // Not before the close: the deadline only starts once shutdown does.
                    let _ = self.write(&mut batch).await;
                }
                _ = &mut closed => closing = true,
            }
        }
    }

    fn unwritten(&self, entry: &Entry, why: &str) {
        self.stats.unwritten.fetch_add(1, Ordering::Relaxed);
        tracing::error!(request_id = %entry.request_id(), why, "ledger record not stored; printed to stderr");
        entry.report_unwritten(why);
    }

    /// Stores and empties `batch`; `Err` when the deadline passed first (what was left has
    /// been printed).
    async fn write(&mut self, batch: &mut Vec<Entry>) -> Result<(), ()> {
        let mut usage = Vec::with_capacity(batch.len());
        let mut refusals = Vec::new();
        let mut opens = Vec::new();
        let mut checkpoints: HashMap<String, Checkpoint> = HashMap::new();
        for entry in batch.drain(..) {
            match entry {
                Entry::Usage(r) => usage.push(r),
                Entry::Refusal(r) => refusals.push(r),
                Entry::Open(r) => opens.push(r),
                // The queue is in order: a later checkpoint of a request supersedes earlier ones.
                Entry::Checkpoint(c) => {
                    checkpoints.insert(c.request_id.clone(), c);
                }
            }
        }
        // A request that ends within the batch that opened it needs no open row at all: a
        // short request costs the ledger one row, as before crash accounting.
        let ended: HashSet<&str> = usage
            .iter()
            .map(|r| r.request_id.as_str())
            .chain(refusals.iter().map(|r| r.request_id.as_str()))
            .collect();
        opens.retain(|o| !ended.contains(o.request_id.as_str()));
        let checkpoints: Vec<Checkpoint> = checkpoints
            .into_values()
            .filter(|c| !ended.contains(c.request_id.as_str()))
            .collect();
        // Everything in one transaction: one commit (one fsync) per batch, however many kinds
        // it holds. Only if that fails are the kinds written one by one, where a refused
        // record can be isolated.
        let together = LedgerBatch {
            opens: &opens,
            checkpoints: &checkpoints,
            usage: &usage,
            refusals: &refusals,
        };
        if together.is_empty() {
            return Ok(());
        }
        let written = tokio::select! {
            r = self.store.write_ledger_batch(&together) => r,
            () = gave_up(&mut self.give_up) => Err(StoreError::Database("shutdown deadline passed".into())),
        };
        match written {
            Ok(()) => {
                let n = u64::try_from(together.len()).unwrap_or(u64::MAX);
                self.stats.written.fetch_add(n, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) => {
                self.stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(records = together.len(), error = %e, "ledger batch not written whole; writing its kinds one by one");
            }
        }
        // Opens before checkpoints before final records; each transaction is idempotent per
        // request id, so each may be retried on its own.
        let opens = self.store_all(opens).await;
        let checkpoints = self.store_all(checkpoints).await;
        let usage = self.store_all(usage).await;
        let refusals = self.store_all(refusals).await;
        let mut gave_up = false;
        for left in [
            opens
                .err()
                .map(|g| g.0.into_iter().map(Entry::Open).collect::<Vec<_>>()),
            checkpoints
                .err()
                .map(|g| g.0.into_iter().map(Entry::Checkpoint).collect()),
            usage
                .err()
                .map(|g| g.0.into_iter().map(Entry::Usage).collect()),
            refusals
                .err()
                .map(|g| g.0.into_iter().map(Entry::Refusal).collect()),
        ]
        .into_iter()
        .flatten()
        {
            gave_up = true;
            for entry in &left {
                self.unwritten(entry, "shutdown deadline passed");
            }
        }
        if gave_up {
            Err(())
        } else {
            Ok(())
        }
    }

    /// Stores `records`, isolating and dead-lettering any the store refuses.
    async fn store_all<R: Record>(&mut self, records: Vec<R>) -> Result<(), GaveUp<R>> {
        let mut parts = vec![records];
        while let Some(mut part) = parts.pop() {
            if part.is_empty() {
                continue;
            }
            let mut backoff = FIRST_BACKOFF;
            let mut failures = 0;
            loop {
                let result = tokio::select! {
                    r = R::insert(&*self.store, &part) => r,
                    () = gave_up(&mut self.give_up) => Err(StoreError::Database("shutdown deadline passed".into())),
                };
                let error = match result {
                    Ok(()) => {
                        let n = u64::try_from(part.len()).unwrap_or(u64::MAX);
                        self.stats.written.fetch_add(n, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => e,
                };
                if *self.give_up.borrow() {
                    parts.push(part);
                    return Err(GaveUp(parts.into_iter().flatten().collect()));
                }
                self.stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                failures += 1;
                // The store names a record it cannot hold (a constraint, a range, a type):
                // isolate it now. The store's own state (locked, full, gone): retry the batch
                // whole until it is back; a split would only turn good records into dead
                // letters. Anything else: retry a few times, then look for a culprit.
                let refused = matches!(error, StoreError::Invalid(_));
                let store_down = matches!(error, StoreError::Unavailable(_));
                if refused || (!store_down && failures >= ATTEMPTS_BEFORE_SPLIT) {
                    if part.len() > 1 {
                        tracing::warn!(kind = R::KIND, records = part.len(), error = %error, "ledger batch refused; splitting it to find the record");
                        let second = part.split_off(part.len() / 2);
                        parts.push(second);
                        parts.push(part);
                        break;
                    }
                    if let Some(record) = part.pop() {
                        match self.dead_letter(record, &error, refused).await {
                            Ok(None) => break,
                            // Not a refusal after all: the store took no write at all.
                            Ok(Some(record)) => part.push(record),
                            Err(GaveUp(left)) => {
                                parts.push(left);
                                return Err(GaveUp(parts.into_iter().flatten().collect()));
                            }
                        }
                    }
                }
                tracing::error!(kind = R::KIND, records = part.len(), error = %error, "ledger write failed; retrying");
                if wait(backoff, &mut self.give_up).await.is_err() {
                    parts.push(part);
                    return Err(GaveUp(parts.into_iter().flatten().collect()));
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        Ok(())
    }

    /// Keeps a refused record in the dead-letter table with the store's reason.
    ///
    /// A record the store named as invalid (`certain`) is retried into the table until it is
    /// there. Otherwise the record failed alone with an error that could also be the store's
    /// state, and the dead letter is tried once: if the store takes it, the store is writing
    /// and refuses only this record; if not, the store is not writing at all, and the record
    /// is handed back (`Ok(Some)`) to be retried as a good one.
    async fn dead_letter<R: Record>(
        &mut self,
        record: R,
        error: &StoreError,
        certain: bool,
    ) -> Result<Option<R>, GaveUp<R>> {
        let letter = DeadLetter {
            request_id: record.request_id().to_string(),
            kind: R::KIND.to_string(),
            record: serde_json::to_string(&record).unwrap_or_else(|e| format!("unprintable: {e}")),
            error: error.to_string(),
            at_ms: unix_ms(),
        };
        let mut backoff = FIRST_BACKOFF;
        loop {
            let result = tokio::select! {
                r = self.store.insert_dead_letters(std::slice::from_ref(&letter)) => r,
                () = gave_up(&mut self.give_up) => return Err(GaveUp(vec![record])),
            };
            match result {
                Ok(()) => {
                    tracing::error!(kind = R::KIND, request_id = %letter.request_id, error = %error, "ledger record refused by the store; kept as a dead letter");
                    self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                }
                Err(e) => {
                    self.stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                    if !certain {
                        return Ok(Some(record));
                    }
                    tracing::error!(error = %e, "dead letter not stored; retrying");
                    if wait(backoff, &mut self.give_up).await.is_err() {
                        return Err(GaveUp(vec![record]));
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Resolves once the deadline has passed (never, if it does not).
async fn gave_up(give_up: &mut watch::Receiver<bool>) {
    if give_up.wait_for(|g| *g).await.is_err() {
        // The sender is gone without a deadline: wait forever, as before shutdown.
        std::future::pending::<()>().await;
    }
}

/// Sleeps `d`; `Err` if the deadline passes first.
async fn wait(d: Duration, give_up: &mut watch::Receiver<bool>) -> Result<(), ()> {
    tokio::select! {
        () = tokio::time::sleep(d) => Ok(()),
        () = gave_up(give_up) => Err(()),
    }
}
