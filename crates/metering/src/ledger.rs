//! The ledger writer: usage records leave the request path through a bounded queue and are
//! written in batches by one task, off the hot path. A record is never dropped: when the queue
//! is full, the record waits in a spawned task instead (the request itself is already done);
//! a failed batch is retried until it is written; shutdown drains the queue before returning.
//!
//! Requests the gateway refused before any worker (a 503 with no healthy worker, a 429 from
//! our limiter) take the same queue as a [`Refusal`]: they bill nothing but count for the SLA,
//! and recording one must cost the request path no more than a usage record does.
//!
//! Opt-in content records (see [`crate::content`]) have a queue and writer of their own, started
//! and drained with the ledger: they may be dropped, usage records may not.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::content::{ContentConfig, ContentQueue, ContentTask};
use crate::model::UsageRecord;
use crate::sli::Refusal;
use crate::store::Store;

/// How long the writer waits for more records before writing a partial batch.
const LINGER: Duration = Duration::from_millis(25);

#[derive(Debug, Clone)]
pub struct LedgerConfig {
    pub queue: usize,
    pub batch: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            queue: 65_536,
            batch: 512,
        }
    }
}

/// What the queue carries.
#[derive(Debug)]
enum Entry {
    Usage(UsageRecord),
    Refusal(Refusal),
}

impl Entry {
    fn request_id(&self) -> &str {
        match self {
            Entry::Usage(r) => &r.request_id,
            Entry::Refusal(r) => &r.request_id,
        }
    }
}

#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Entry>,
    open: Arc<OpenCount>,
    content: ContentQueue,
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
    open: Arc<OpenCount>,
    content: ContentTask,
}

impl Ledger {
    pub fn spawn(store: Arc<dyn Store>, config: LedgerConfig) -> (Ledger, LedgerTask) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let (close, closed) = tokio::sync::oneshot::channel();
        let (content, content_task) = ContentQueue::spawn(store.clone(), ContentConfig::default());
        let handle = tokio::spawn(write_loop(store, rx, closed, config.batch.max(1)));
        let open = Arc::new(OpenCount::default());
        (
            Ledger {
                tx,
                open: open.clone(),
                content,
            },
            LedgerTask {
                handle,
                close,
                open,
                content: content_task,
            },
        )
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
                    }
                    drop(open);
                });
            }
            Err(mpsc::error::TrySendError::Closed(entry)) => {
                tracing::error!(request_id = %entry.request_id(), "ledger closed; record not written");
            }
        }
    }
}

impl LedgerTask {
    /// Waits (at most `grace`) for open requests to settle, then stops taking records, writes
    /// everything queued, and returns when it is stored.
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
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "ledger writer failed");
        }
        // After the open requests settled, so their content records are queued too.
        self.content.shutdown().await;
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Entry>,
    mut closed: tokio::sync::oneshot::Receiver<()>,
    batch_size: usize,
) {
    let mut batch = Vec::with_capacity(batch_size);
    let mut closing = false;
    loop {
        if closing {
            rx.close();
            while rx.recv_many(&mut batch, batch_size).await > 0 {
                write(&*store, &mut batch).await;
            }
            break;
        }
        tokio::select! {
            n = rx.recv_many(&mut batch, batch_size) => {
                if n == 0 {
                    break;
                }
                // Let a batch fill for a moment: one transaction per request would cost more
                // CPU than the request itself (each is a round trip to SQLite's thread and a
                // sync), and on a small machine that CPU is taken from the requests.
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
                write(&*store, &mut batch).await;
            }
            _ = &mut closed => closing = true,
        }
    }
}

async fn write(store: &dyn Store, batch: &mut Vec<Entry>) {
    let mut usage = Vec::with_capacity(batch.len());
    let mut refusals = Vec::new();
    for entry in batch.drain(..) {
        match entry {
            Entry::Usage(r) => usage.push(r),
            Entry::Refusal(r) => refusals.push(r),
        }
    }
    // Two transactions, each idempotent per request id, so each may be retried on its own.
    retry("usage", usage.len(), || store.insert_usage(&usage)).await;
    retry("refusals", refusals.len(), || {
        store.insert_refusals(&refusals)
    })
    .await;
}

async fn retry<'a, F, Fut>(what: &str, records: usize, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::store::Result<()>> + 'a,
{
    if records == 0 {
        return;
    }
    let mut backoff = Duration::from_millis(50);
    loop {
        match attempt().await {
            Ok(()) => return,
            Err(e) => {
                // Inserts are idempotent per request id, so retrying a half-applied batch is safe.
                tracing::error!(error = %e, records, what, "ledger write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
