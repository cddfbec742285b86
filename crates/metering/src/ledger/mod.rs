//! The ledger: usage records leave the request path through a bounded queue and are written in
//! batches by one task, off the hot path ([`writer`]). A record is never dropped: when the queue
//! is full, the record waits in a spawned task instead (the request itself is already done); a
//! batch the store refuses is split until the one refused record is alone, and that record is
//! kept as a dead letter; a store that is down is retried until it is back; shutdown drains the
//! queue within a deadline and prints to stderr whatever it could not store by then.
//!
//! Requests the gateway refused before any worker (a 503 with no healthy worker, a 429 from
//! our limiter) take the same queue as a [`Refusal`]: they bill nothing but count for the SLA,
//! and recording one must cost the request path no more than a usage record does.
//!
//! Opt-in content records (see [`crate::content`]) have a queue and writer of their own, started
//! and drained with the ledger: they may be dropped, usage records may not.

pub mod content_writer;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::model::UsageRecord;
use crate::open::{Checkpoint, OpenRequest};
use crate::sli::Refusal;
use crate::store::Store;
use content_writer::{ContentConfig, ContentQueue, ContentTask};
pub use writer::WriterStats;
use writer::{Entry, Writer};

#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub queue: usize,
    pub batch: usize,
    /// At shutdown, how long the writer may take to store what is queued before it prints the
    /// rest to stderr and returns.
    pub flush_deadline: Duration,
    /// The gateway process writing, as its open requests name it (see [`crate::open`]).
    pub instance: String,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            queue: 65_536,
            batch: 512,
            flush_deadline: Duration::from_secs(10),
            instance: "local".into(),
        }
    }
}

#[derive(Clone)]
pub struct Ledger {
    instance: Arc<str>,
    tx: mpsc::Sender<Entry>,
    open: Arc<OpenCount>,
    content: ContentQueue,
    stats: Arc<WriterStats>,
}

/// Requests admitted but not yet settled: shutdown waits for them before the last flush.
#[derive(Default)]
struct OpenCount {
    n: std::sync::atomic::AtomicUsize,
    zero: tokio::sync::Notify,
}

/// A request that will produce a record; dropping it (after `record`) closes it.
pub struct Open {
    count: Arc<OpenCount>,
}

impl Drop for Open {
    fn drop(&mut self) {
        if self
            .count
            .n
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.count.zero.notify_waiters();
        }
    }
}

pub struct LedgerTask {
    handle: JoinHandle<()>,
    close: tokio::sync::oneshot::Sender<()>,
    give_up: watch::Sender<bool>,
    flush_deadline: Duration,
    open: Arc<OpenCount>,
    content: ContentTask,
}

impl Ledger {
    pub fn spawn(store: Arc<dyn Store>, config: LedgerConfig) -> (Ledger, LedgerTask) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let (close, closed) = tokio::sync::oneshot::channel();
        let (give_up, give_up_rx) = watch::channel(false);
        let (content, content_task) = ContentQueue::spawn(store.clone(), ContentConfig::default());
        let stats = Arc::new(WriterStats::default());
        let writer = Writer {
            store,
            batch_size: config.batch.max(1),
            stats: stats.clone(),
            give_up: give_up_rx,
        };
        let handle = tokio::spawn(writer.run(rx, closed));
        let open = Arc::new(OpenCount::default());
        (
            Ledger {
                instance: config.instance.into(),
                tx,
                open: open.clone(),
                content,
                stats,
            },
            LedgerTask {
                handle,
                close,
                give_up,
                flush_deadline: config.flush_deadline,
                open,
                content: content_task,
            },
        )
    }

    /// The writer's counters: records written, dead-lettered, failed attempts, unwritten.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Notes a request that will settle later; hold the guard until its record is queued.
    pub fn open(&self) -> Open {
        self.open
            .n
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Open {
            count: self.open.clone(),
        }
    }

    /// The queue of (redacted) content records, for tenants who opted in.
    pub fn content(&self) -> &ContentQueue {
        &self.content
    }

    /// Requests admitted and not yet settled.
    pub fn open_count(&self) -> usize {
        self.open.n.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn record(&self, record: UsageRecord) {
        self.push(Entry::Usage(record));
    }

    /// A request was admitted: it is recorded as open until its usage row is written, so that
    /// a crash in between leaves a trace to settle (see [`crate::open`]).
    pub fn opened(&self, mut request: OpenRequest) {
        request.instance = self.instance.to_string();
        self.push(Entry::Open(request));
    }

    /// What a running request has consumed so far.
    pub fn checkpoint(&self, checkpoint: Checkpoint) {
        self.push(Entry::Checkpoint(checkpoint));
    }

    /// A request answered by the gateway itself, before any worker: no bill, but an SLI.
    pub fn refused(&self, refusal: Refusal) {
        self.push(Entry::Refusal(refusal));
    }

    fn push(&self, entry: Entry) {
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(entry)) => {
                tracing::warn!("ledger queue full; the record waits for space");
                let tx = self.tx.clone();
                // Counted as open until queued, so that shutdown waits for it too.
                let open = self.open();
                tokio::spawn(async move {
                    if let Err(e) = tx.send(entry).await {
                        tracing::error!(request_id = %e.0.request_id(), "ledger closed before a record could be queued");
                        e.0.report_unwritten("ledger closed");
                    }
                    drop(open);
                });
            }
            Err(mpsc::error::TrySendError::Closed(entry)) => {
                tracing::error!(request_id = %entry.request_id(), "ledger closed; record not written");
                entry.report_unwritten("ledger closed");
            }
        }
    }
}

impl LedgerTask {
    /// Waits (at most `grace`) for open requests to settle, then stops taking records and
    /// writes everything queued, within the flush deadline: what is still unwritten then is
    /// printed to stderr, and this returns. It never hangs on a store that does not answer.
    pub async fn shutdown(self, grace: Duration) {
        let settled = async {
            loop {
                let notified = self.open.zero.notified();
                if self.open.n.load(std::sync::atomic::Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(grace, settled).await.is_err() {
            tracing::error!(
                open = self.open.n.load(std::sync::atomic::Ordering::Acquire),
                "requests still unsettled at shutdown; their usage records will be missing"
            );
        }
        let _ = self.close.send(());
        let mut handle = self.handle;
        let flushed = tokio::time::timeout(self.flush_deadline, &mut handle).await;
        if flushed.is_err() {
            tracing::error!(
                deadline_ms = u64::try_from(self.flush_deadline.as_millis()).unwrap_or(u64::MAX),
                "ledger flush deadline passed; printing unwritten records to stderr"
            );
            let _ = self.give_up.send(true);
        }
        let result = match flushed {
            Ok(result) => result,
            // The writer stops retrying at once; what it holds is printed, not stored.
            Err(_) => handle.await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "ledger writer failed");
        }
        // After the open requests settled, so their content records are queued too.
        self.content.shutdown().await;
    }
}
