//! KV cache admission. A request reserves (prompt + max_tokens) × n tokens before prefill
//! and keeps them until it ends, like a paged-attention engine that must be sure a
//! sequence can finish. Requests that do not fit wait in a strict FIFO queue (no
//! overtaking by smaller requests, like vLLM's FCFS scheduler), bounded in length and
//! in time. Every reservation and queue ticket is a Drop guard, so a request whose
//! future is dropped (client gone, connection killed) frees its space at once.
//!
//! The lock is a std Mutex held only for a few arithmetic operations, never across
//! an await.

use crate::stats::Counters;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum KvError {
    #[error("request needs {need} KV tokens but the cache holds only {capacity}")]
    TooLarge { need: u64, capacity: u64 },
    #[error("KV cache full and the wait queue is full")]
    QueueFull,
    #[error("timed out waiting for KV cache space")]
    Timeout,
}

#[derive(Debug)]
pub(crate) struct KvCache {
    capacity: u64,
    max_queue: usize,
    queue_timeout: Duration,
    state: Mutex<KvState>,
    /// Sequences holding a reservation; the decode slowdown reads it every token.
    running_seqs: AtomicU64,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct KvState {
    used: u64,
    next_id: u64,
    waiters: VecDeque<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    tokens: u64,
    seqs: u64,
    grant: oneshot::Sender<()>,
}

/// Space held in the cache; released on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    kv: Arc<KvCache>,
    tokens: u64,
    seqs: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.kv.release(self.tokens, self.seqs);
    }
}

/// A place in the wait queue; on drop it leaves the queue, or gives back space that
/// was granted to it but never picked up.
struct Ticket {
    kv: Arc<KvCache>,
    id: u64,
    tokens: u64,
    seqs: u64,
    rx: oneshot::Receiver<()>,
    picked_up: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.kv.counters.queued.fetch_sub(1, Ordering::Relaxed);
        if self.picked_up {
            return;
        }
        let mut st = self.kv.lock();
        if let Some(pos) = st.waiters.iter().position(|w| w.id == self.id) {
            st.waiters.remove(pos);
            // Leaving the head of the queue may unblock the requests behind it.
            self.kv.grant_waiters(&mut st);
        } else {
            // Granted between the timeout/cancel and now: hand the space back.
            drop(st);
            self.kv.release(self.tokens, self.seqs);
        }
    }
}

impl KvCache {
    pub(crate) fn new(
        capacity: u64,
        max_queue: usize,
        queue_timeout: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            capacity,
            max_queue,
            queue_timeout,
            state: Mutex::new(KvState::default()),
            running_seqs: AtomicU64::new(0),
            counters,
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// KV tokens reserved right now.
    pub(crate) fn used(&self) -> u64 {
        self.lock().used
    }

    pub(crate) fn running_seqs(&self) -> u64 {
        self.running_seqs.load(Ordering::Relaxed)
    }

    /// Reserves `tokens` for `seqs` sequences, waiting in the FIFO queue if needed.
    pub(crate) async fn reserve(
        self: &Arc<Self>,
        tokens: u64,
        seqs: u64,
    ) -> Result<Reservation, KvError> {
        if tokens > self.capacity {
            return Err(KvError::TooLarge {
                need: tokens,
                capacity: self.capacity,
            });
        }
        let (id, rx) = {
            let mut st = self.lock();
            if st.waiters.is_empty() && st.used + tokens <= self.capacity {
                st.used += tokens;
                self.running_seqs.fetch_add(seqs, Ordering::Relaxed);
                return Ok(self.reservation(tokens, seqs));
            }
            if st.waiters.len() >= self.max_queue {
                return Err(KvError::QueueFull);
            }
            let (tx, rx) = oneshot::channel();
            st.next_id += 1;
            let id = st.next_id;
            st.waiters.push_back(Waiter {
                id,
                tokens,
                seqs,
                grant: tx,
            });
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
            (id, rx)
        };
        let mut ticket = Ticket {
            kv: Arc::clone(self),
            id,
            tokens,
            seqs,
            rx,
            picked_up: false,
        };
        match tokio::time::timeout(self.queue_timeout, &mut ticket.rx).await {
            Ok(Ok(())) => {
                ticket.picked_up = true;
                Ok(self.reservation(tokens, seqs))
            }
            // Timed out (or the sender vanished, which only a bug could cause): the
            // ticket's Drop leaves the queue or returns a grant that raced the timeout.
            Ok(Err(_)) | Err(_) => Err(KvError::Timeout),
        }
    }

    fn reservation(self: &Arc<Self>, tokens: u64, seqs: u64) -> Reservation {
        Reservation {
            kv: Arc::clone(self),
            tokens,
            seqs,
        }
    }

    fn release(&self, tokens: u64, seqs: u64) {
        self.running_seqs.fetch_sub(seqs, Ordering::Relaxed);
        let mut st = self.lock();
        st.used = st.used.saturating_sub(tokens);
        self.grant_waiters(&mut st);
    }

    /// Grants space to waiters in arrival order while the head of the queue fits.
    fn grant_waiters(&self, st: &mut KvState) {
        while let Some(head) = st.waiters.front() {
            if st.used + head.tokens > self.capacity {
                break;
            }
            let Some(w) = st.waiters.pop_front() else {
                break;
            };
            st.used += w.tokens;
            self.running_seqs.fetch_add(w.seqs, Ordering::Relaxed);
            if w.grant.send(()).is_err() {
                // The waiter is already gone; undo its grant.
                st.used -= w.tokens;
                self.running_seqs.fetch_sub(w.seqs, Ordering::Relaxed);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, KvState> {
        // A panic while holding this lock leaves only integers behind, so keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(capacity: u64, max_queue: usize, timeout_ms: u64) -> (Arc<KvCache>, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let kv = Arc::new(KvCache::new(
            capacity,
            max_queue,
            Duration::from_millis(timeout_ms),
            Arc::clone(&counters),
        ));
        (kv, counters)
    }

    #[tokio::test]
    async fn too_large_is_refused_at_once() {
        let (kv, _) = cache(100, 4, 1000);
        assert_eq!(
            kv.reserve(101, 1).await.err(),
            Some(KvError::TooLarge {
                need: 101,
                capacity: 100
            })
        );
    }

    #[tokio::test]
    async fn waiter_is_served_fifo_when_space_frees() {
        let (kv, counters) = cache(100, 4, 10_000);
        let first = kv.reserve(80, 1).await;
        assert!(first.is_ok());
        let kv2 = Arc::clone(&kv);
        let waiting = tokio::spawn(async move { kv2.reserve(50, 2).await.map(|r| r.tokens) });
        while counters.queued.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        // A small request must not overtake the queued one.
        let kv3 = Arc::clone(&kv);
        let small = tokio::spawn(async move { kv3.reserve(10, 1).await.map(|r| r.tokens) });
        while counters.queued.load(Ordering::Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert_eq!(waiting.await.ok().and_then(Result::ok), Some(50));
        assert_eq!(small.await.ok().and_then(Result::ok), Some(10));
        assert_eq!(kv.used(), 0);
        assert_eq!(kv.running_seqs(), 0);
    }

    #[tokio::test]
    async fn queue_full_and_timeout() {
        let (kv, counters) = cache(10, 1, 30);
        let held = kv.reserve(10, 1).await;
        assert!(held.is_ok());
        let kv2 = Arc::clone(&kv);
        let waiting = tokio::spawn(async move { kv2.reserve(5, 1).await.err() });
        while counters.queued.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(kv.reserve(5, 1).await.err(), Some(KvError::QueueFull));
        assert_eq!(waiting.await.ok().flatten(), Some(KvError::Timeout));
        assert_eq!(counters.queued.load(Ordering::Relaxed), 0);
        drop(held);
        assert_eq!(kv.used(), 0);
    }

    #[tokio::test]
    async fn cancelled_waiter_leaves_the_queue() {
        let (kv, counters) = cache(10, 4, 10_000);
        let held = kv.reserve(10, 1).await;
        let kv2 = Arc::clone(&kv);
        let waiting = tokio::spawn(async move { kv2.reserve(5, 1).await.is_ok() });
        while counters.queued.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        waiting.abort();
        assert!(waiting.await.is_err());
        assert_eq!(counters.queued.load(Ordering::Relaxed), 0);
        drop(held);
        assert_eq!(kv.used(), 0);
        assert_eq!(kv.running_seqs(), 0);
    }
}
