//! Waiting for a worker when every eligible one is at its concurrency.
//!
//! A request that finds the fleet saturated waits here, at most until its tier's deadline (a
//! fraction of the tier's TTFT SLO: waiting longer would break the SLO anyway, and a quick 503
//! with `Retry-After` lets a client go elsewhere). Waiters are served in priority order — the
//! tier's availability SLO first (Business, then Pro, then Hobby), then shorter prompts — and
//! when the queue is full the lowest-priority waiter is shed first, so load shedding falls on
//! the lowest tier and the longest prompts.
//!
//! The queue's mutex is taken only on this slow path; a released worker signals only when
//! someone waits (see `switchyard_fleet::Fleet::release_signal`), and only each model's head
//! waiter listens for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

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
    /// Woken when this waiter becomes the head of its model's queue, or is displaced.
    turn: Arc<Notify>,
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
/// client that went away), and hands the turn to the next waiter if it was the head.
struct Place<'q> {
    queue: &'q WaitQueue,
    model: String,
    id: u64,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(next) = self.queue.remove(&self.model, self.id) {
            next.notify_one();
        }
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
    ///
    /// Only the head of a model's queue (the highest priority, the earliest among equals)
    /// listens for released workers; the others sleep until their turn comes. Waking every
    /// waiter on every release, as a first version did, cost O(waiters) task wake-ups per
    /// request and most of the gateway's CPU in a saturated fleet.
    pub async fn wait(
        &self,
        fleet: &Fleet,
        query: &Query<'_>,
        priority: Priority,
        deadline: Instant,
    ) -> Result<WorkerLease, Shed> {
        let signal = fleet.release_signal();
        let _waiting = signal.waiting();
        let (id, shed, turn) = self.join(query.model, priority)?;
        let _place = Place {
            queue: self,
            model: query.model.to_string(),
            id,
        };
        loop {
            let released = signal.notified();
            tokio::pin!(released);
            if shed.load(Ordering::Acquire) {
                return Err(Shed::Displaced);
            }
            let head = self.is_head(query.model, id);
            if head {
                // Registered before looking, so a release between the look and the wait
                // wakes us. Only heads register: a release then walks one listener per model.
                released.as_mut().enable();
                match fleet.pick(query) {
                    // Dropping `_place` hands the turn on: the next waiter may find a
                    // second free slot.
                    Pick::Worker(lease) => return Ok(lease),
                    Pick::Unavailable => return Err(Shed::Unavailable),
                    Pick::Saturated => {}
                }
            }
            tokio::select! {
                () = &mut released, if head => {}
                () = turn.notified() => {}
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

    fn join(
        &self,
        model: &str,
        priority: Priority,
    ) -> Result<(u64, Arc<AtomicBool>, Arc<Notify>), Shed> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shed = Arc::new(AtomicBool::new(false));
        let turn = Arc::new(Notify::new());
        let mut all = self.lock();
        let queue = all.entry(model.to_string()).or_default();
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
                    // It must wake to see its verdict.
                    evicted.turn.notify_one();
                }
                _ => return Err(Shed::QueueFull),
            }
        }
        queue.push(Waiter {
            id,
            priority,
            shed: shed.clone(),
            turn: turn.clone(),
        });
        Ok((id, shed, turn))
    }

    /// Whether `id` is the highest-priority waiter of `model` (the earliest among equals).
    fn is_head(&self, model: &str, id: u64) -> bool {
        let all = self.lock();
        all.get(model)
            .and_then(|q| head(q))
            .is_some_and(|w| w.id == id)
    }

    /// Removes `id`; if it was the head, returns the new head's turn to wake.
    fn remove(&self, model: &str, id: u64) -> Option<Arc<Notify>> {
        let mut all = self.lock();
        let q = all.get_mut(model)?;
        let was_head = head(q).is_some_and(|w| w.id == id);
        q.retain(|w| w.id != id);
        if q.is_empty() {
            all.remove(model);
            return None;
        }
        was_head.then(|| head(q).map(|w| w.turn.clone())).flatten()
    }
}

fn head(queue: &[Waiter]) -> Option<&Waiter> {
    queue
        .iter()
        .max_by(|a, b| a.priority.cmp(&b.priority).then(b.id.cmp(&a.id)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use switchyard_fleet::{PromptFormat, RuntimeKind, WorkerSpec};

    use super::*;

    /// One worker that takes one request at a time.
    fn one_slot_fleet() -> Fleet {
        let fleet = Fleet::new(vec![WorkerSpec {
            name: "w".into(),
            url: "http://127.0.0.1:1".into(),
            runtime: RuntimeKind::Vllm,
            model: "m".into(),
            upstream_model: None,
            provider: "p".into(),
            region: "r".into(),
            gpu: "g".into(),
            price_per_hour: 1.0,
            max_concurrency: 1,
            api_key: None,
            prompt_format: PromptFormat::default(),
            tiers: Vec::new(),
            pool: Default::default(),
        }])
        .unwrap();
        fleet.workers().iter().for_each(|w| w.set_healthy(true));
        fleet
    }

    #[tokio::test]
    async fn many_waiters_are_served_one_per_release_in_priority_order() {
        let fleet = Arc::new(one_slot_fleet());
        let queue = Arc::new(WaitQueue::new(100));
        let Pick::Worker(mut held) = fleet.pick(&Query::new("m", "pro")) else {
            panic!("the free worker must be picked");
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let (served_tx, mut served) = tokio::sync::mpsc::unbounded_channel();
        // 40 waiters; every fourth is of a higher tier, and shorter prompts go first.
        for i in 0..40u64 {
            let (fleet, queue, served_tx) = (fleet.clone(), queue.clone(), served_tx.clone());
            let priority = Priority::new(if i % 4 == 0 { 9995 } else { 9990 }, 1000 - i);
            tokio::spawn(async move {
                let lease = queue
                    .wait(&fleet, &Query::new("m", "pro"), priority, deadline)
                    .await;
                let _ = served_tx.send((i, lease));
            });
        }
        while queue.len("m") < 40 {
            tokio::task::yield_now().await;
        }
        let mut order = Vec::new();
        for _ in 0..40 {
            drop(held);
            let (i, lease) = tokio::time::timeout(Duration::from_secs(5), served.recv())
                .await
                .expect("a release serves the next waiter")
                .expect("waiters report");
            held = lease.expect("served, not shed");
            order.push(i);
        }
        let mut expected: Vec<u64> = (0..40).filter(|i| i % 4 == 0).rev().collect();
        expected.extend((0..40).filter(|i| i % 4 != 0).rev());
        assert_eq!(order, expected, "higher tier first, then shorter prompts");
        assert_eq!(queue.len("m"), 0);
    }

    #[tokio::test]
    async fn a_displaced_waiter_hears_at_once_that_it_was_shed() {
        let fleet = Arc::new(one_slot_fleet());
        let queue = Arc::new(WaitQueue::new(1));
        let Pick::Worker(_held) = fleet.pick(&Query::new("m", "pro")) else {
            panic!("the free worker must be picked");
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let low = {
            let (fleet, queue) = (fleet.clone(), queue.clone());
            tokio::spawn(async move {
                queue
                    .wait(
                        &fleet,
                        &Query::new("m", "hobby"),
                        Priority::new(9950, 0),
                        deadline,
                    )
                    .await
                    .map(|_| ())
            })
        };
        while queue.len("m") < 1 {
            tokio::task::yield_now().await;
        }
        let high = {
            let (fleet, queue) = (fleet.clone(), queue.clone());
            tokio::spawn(async move {
                queue
                    .wait(
                        &fleet,
                        &Query::new("m", "business"),
                        Priority::new(9995, 0),
                        deadline,
                    )
                    .await
                    .map(|_| ())
            })
        };
        let verdict = tokio::time::timeout(Duration::from_secs(5), low)
            .await
            .expect("the displaced waiter is woken, not left to its deadline")
            .unwrap();
        assert_eq!(verdict, Err(Shed::Displaced));
        assert!(!high.is_finished(), "the newcomer waits for the slot");
        high.abort();
    }
}
