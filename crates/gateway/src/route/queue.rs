//! Waiting for a worker when every eligible one is at its concurrency.
//!
//! A request that finds the fleet saturated waits here, at most until its tier's deadline (a
//! fraction of the tier's TTFT SLO: waiting longer would break the SLO anyway, and a quick 503
//! with `Retry-After` lets a client go elsewhere). Waiters are served in priority order — the
//! tier's availability SLO first (Business, then Pro, then Hobby), then shorter prompts — and
//! when the queue is full the lowest-priority waiter is shed first, so load shedding falls on
//! the lowest tier and the longest prompts.
//!
//! The queue's mutex is taken only on this slow path; a released worker wakes the waiters only
//! when there are any (see `switchyard_fleet::Fleet::release_signal`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use switchyard_fleet::signal::ReleaseSignal;
use switchyard_fleet::{Fleet, Pick, Query, WorkerLease};

/// Higher is served first and shed last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Priority {
    /// The tier's availability SLO in basis points (9995 > 9990 > 9950).
    pub slo_bp: u32,
    /// Shorter prompts first: `u64::MAX - prompt tokens`.
    pub shortness: u64,
}

impl Priority {
    pub fn new(slo_bp: u32, prompt_tokens: u64) -> Self {
        Self {
            slo_bp,
            shortness: u64::MAX - prompt_tokens,
        }
    }
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    priority: Priority,
    shed: Arc<AtomicBool>,
}

/// Why a waiting request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// Its deadline passed with the fleet still saturated.
    Deadline,
    /// The queue was full of requests of at least its priority.
    QueueFull,
    /// A higher-priority request took its place.
    Displaced,
    /// The model's workers left rotation while it waited.
    Unavailable,
}

impl Shed {
    pub fn as_str(self) -> &'static str {
        match self {
            Shed::Deadline => "queue_deadline",
            Shed::QueueFull => "queue_full",
            Shed::Displaced => "displaced_by_higher_tier",
            Shed::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug)]
pub struct WaitQueue {
    max_waiting: usize,
    next_id: AtomicU64,
    /// Waiters by model, unordered (small; scanned for the head).
    waiting: Mutex<HashMap<String, Vec<Waiter>>>,
}

/// Removes its waiter when the waiting future ends in any way (served, shed, cancelled by a
/// client that went away).
struct Place<'q> {
    queue: &'q WaitQueue,
    signal: &'q ReleaseSignal,
    model: String,
    id: u64,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.queue.remove(&self.model, self.id);
        // If this was the head, the next waiter is now: let it look.
        self.signal.wake();
    }
}

impl WaitQueue {
    pub fn new(max_waiting: usize) -> Self {
        Self {
            max_waiting,
            next_id: AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until `query` gets a worker, the deadline passes, or the request is shed.
    pub async fn wait(
        &self,
        fleet: &Fleet,
        query: &Query<'_>,
        priority: Priority,
        deadline: Instant,
    ) -> Result<WorkerLease, Shed> {
        let signal = fleet.release_signal();
        let _waiting = signal.waiting();
        let (id, shed, displaced) = self.join(query.model, priority)?;
        if displaced {
            signal.wake(); // the displaced waiter must see its verdict
        }
        let _place = Place {
            queue: self,
            signal,
            model: query.model.to_string(),
            id,
        };
        loop {
            // Registered before looking, so a release between the look and the wait wakes us.
            let notified = signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if shed.load(Ordering::Acquire) {
                return Err(Shed::Displaced);
            }
            if self.is_head(query.model, id) {
                match fleet.pick(query) {
                    Pick::Worker(lease) => {
                        // The next waiter may find a second free slot.
                        signal.wake();
                        return Ok(lease);
                    }
                    Pick::Unavailable => return Err(Shed::Unavailable),
                    Pick::Saturated => {}
                }
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => return Err(Shed::Deadline),
            }
        }
    }

    /// Waiters currently queued for `model` (for tests and metrics).
    pub fn len(&self, model: &str) -> usize {
        self.lock().get(model).map_or(0, Vec::len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Waiter>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn join(&self, model: &str, priority: Priority) -> Result<(u64, Arc<AtomicBool>, bool), Shed> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shed = Arc::new(AtomicBool::new(false));
        let mut all = self.lock();
        let queue = all.entry(model.to_string()).or_default();
        let mut displaced = false;
        if queue.len() >= self.max_waiting {
            // Full: the lowest-priority waiter (the latest among equals) makes room, if it is
            // below the newcomer; otherwise the newcomer is the one shed.
            let lowest = queue
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| a.priority.cmp(&b.priority).then(b.id.cmp(&a.id)))
                .map(|(i, w)| (i, w.priority));
            match lowest {
                Some((i, p)) if p < priority => {
                    let evicted = queue.swap_remove(i);
                    evicted.shed.store(true, Ordering::Release);
                    displaced = true;
                }
                _ => return Err(Shed::QueueFull),
            }
        }
        queue.push(Waiter {
            id,
            priority,
            shed: shed.clone(),
        });
        Ok((id, shed, displaced))
    }

    /// Whether `id` is the highest-priority waiter of `model` (the earliest among equals).
    fn is_head(&self, model: &str, id: u64) -> bool {
        let all = self.lock();
        all.get(model)
            .and_then(|q| {
                q.iter()
                    .max_by(|a, b| a.priority.cmp(&b.priority).then(b.id.cmp(&a.id)))
            })
            .is_some_and(|w| w.id == id)
    }

    fn remove(&self, model: &str, id: u64) {
        let mut all = self.lock();
        if let Some(q) = all.get_mut(model) {
            q.retain(|w| w.id != id);
            if q.is_empty() {
                all.remove(model);
            }
        }
    }
}
