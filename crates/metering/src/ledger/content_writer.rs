//! The queue and writer task that carry content records ([`ContentRecord`]) to the store off
//! the request path.
//!
//! Unlike usage records, content records may be dropped: a full queue drops the record (the
//! caller counts and logs it) rather than make a request wait or hold memory without bound.
//! They get their own queue and writer task so that a burst of large content records can never
//! delay or crowd out the usage records invoices are made from.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::content::ContentRecord;
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct ContentConfig {
    pub queue: usize,
    pub batch: usize,
}

impl Default for ContentConfig {
    fn default() -> Self {
        Self {
            queue: 1024,
            batch: 64,
        }
    }
}

/// The sending side: cheap to clone.
#[derive(Clone)]
pub struct ContentQueue {
    tx: mpsc::Sender<ContentRecord>,
}

/// A place in the queue, taken on the request path before any redaction work is spent, so a
/// record that would be dropped costs nothing.
pub struct ContentSlot {
    permit: mpsc::OwnedPermit<ContentRecord>,
}

impl ContentSlot {
    pub fn send(self, record: ContentRecord) {
        self.permit.send(record);
    }
}

pub struct ContentTask {
    handle: JoinHandle<()>,
    close: tokio::sync::oneshot::Sender<()>,
}

impl ContentQueue {
    pub fn spawn(store: Arc<dyn Store>, config: ContentConfig) -> (ContentQueue, ContentTask) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let (close, closed) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(write_loop(store, rx, closed, config.batch.max(1)));
        (ContentQueue { tx }, ContentTask { handle, close })
    }

    /// A slot if the queue has room; `None` when it is full (or closed): drop the record.
    pub fn try_reserve(&self) -> Option<ContentSlot> {
        self.tx
            .clone()
            .try_reserve_owned()
            .ok()
            .map(|permit| ContentSlot { permit })
    }
}

impl ContentTask {
    /// Stops taking records, writes what is queued (and what holders of a slot still send).
    pub async fn shutdown(self) {
        let _ = self.close.send(());
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "content log writer failed");
        }
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<ContentRecord>,
    mut closed: tokio::sync::oneshot::Receiver<()>,
    batch_size: usize,
) {
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, batch_size) => {
                if n == 0 {
                    break;
                }
                write(&*store, &mut batch).await;
            }
            _ = &mut closed => {
                // Outstanding slots may still send after `close`; `recv_many` returns 0 once
                // they are all used or dropped and the queue is empty.
                rx.close();
                while rx.recv_many(&mut batch, batch_size).await > 0 {
                    write(&*store, &mut batch).await;
                }
                break;
            }
        }
    }
}

/// A few attempts, then the batch is dropped: content logs are best effort, and a store that
/// keeps failing must not pile them up in memory.
async fn write(store: &dyn Store, batch: &mut Vec<ContentRecord>) {
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=3 {
        match store.insert_content(batch).await {
            Ok(()) => break,
            Err(e) if attempt == 3 => {
                tracing::error!(error = %e, records = batch.len(), "content log write failed; records dropped");
            }
            Err(e) => {
                tracing::warn!(error = %e, records = batch.len(), "content log write failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
    batch.clear();
}
