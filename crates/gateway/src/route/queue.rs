//! Waiting for a worker when every eligible one is at its concurrency.
//!
//! A request that finds the fleet saturated waits here until its tier's deadline (a fraction of
//! the tier's TTFT SLO), and on to a later one (a larger fraction) only if the queue's pace says
//! it will be served by then: a 503 costs the availability SLO, a slow first token only the
//! latency percentile, so a request about to be served is not shed; one that would wait past
//! the later deadline gets a quick 503 with `Retry-After` and may go elsewhere. Waiters are served in priority order — the
//! tier's availability SLO first (Business, then Pro, then Hobby), then shorter prompts — and
//! when the queue is full the lowest-priority waiter is shed first, so load shedding falls on
//! the lowest tier and the longest prompts.
//!
//! The queue's mutex is taken only on this slow path; a released worker signals only when
//! someone waits (see `switchyard_fleet::Fleet::release_signal`), and only each model's head
//! waiter listens for it.
//!
//! One piece, over 500 lines with its tests (the code is about 350): the queue's ordering, shedding
//! and wake-up rules interlock, and its tests exercise them together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

use switchyard_fleet::{Fleet, Pick, Pool, Query, WorkerLease};

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
    class: Class,
    shed: Arc<AtomicBool>,
    /// Woken when this waiter may look for a worker (it became the head, or was passed the
    /// turn) or is displaced.
    turn: Arc<Notify>,
    /// Passed the turn by a waiter ahead that found no worker it may use (or, on joining,
    /// no waiter ahead is of its class, so it may look at once).
    passed: bool,
    /// Turns passed to it so far: a waiter clears `passed` only if no new turn came while it
    /// looked.
    passes: u64,
}

/// What decides which workers a waiter may use, beyond the model: two waiters of one class are
/// served by the same workers, so when one finds none free the other need not look.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    pool: Pool,
    tier: String,
    /// Workers this request already failed on (resumed streams and retries avoid them).
    tried: Vec<String>,
}

impl Class {
    fn of(query: &Query<'_>) -> Self {
        Self {
            pool: query.pool,
            tier: query.tier.to_string(),
            tried: query.tried.iter().map(|w| w.spec.name.clone()).collect(),
        }
    }
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
    /// The sheds counted in `switchyard_sheds_total` (`Unavailable` is a 503 for want of any
    /// worker, not a shed).
    pub const COUNTED: [Shed; 3] = [Shed::Deadline, Shed::QueueFull, Shed::Displaced];

    pub fn as_str(self) -> &'static str {
        match self {
            Shed::Deadline => "queue_deadline",
            Shed::QueueFull => "queue_full",
            Shed::Displaced => "displaced_by_higher_tier",
            Shed::Unavailable => "unavailable",
        }
    }
}

/// How long a request may wait for a worker: until `soft`, and on until `hard` only if it is
/// expected to be served by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub soft: Instant,
    pub hard: Instant,
}

impl Deadline {
    /// One deadline, no extension.
    pub fn at(instant: Instant) -> Self {
        Self {
            soft: instant,
            hard: instant,
        }
    }
}

#[derive(Debug, Default)]
struct ModelQueue {
    /// Unordered (small; scanned for the head).
    waiters: Vec<Waiter>,
    /// Waiters that got a worker since this queue formed: the pace at which it drains.
    served: u64,
}

#[derive(Debug)]
pub struct WaitQueue {
    max_waiting: usize,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<String, ModelQueue>>,
}

/// Removes its waiter when the waiting future ends in any way (served, shed, cancelled by a
/// client that went away), and hands the turn to the next waiter if it was the head.
struct Place<'q> {
    queue: &'q WaitQueue,
    model: String,
    id: u64,
    served: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(next) = self.queue.remove(&self.model, self.id, self.served) {
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
    /// At `deadline.soft` a waiter still queued is shed unless, at the pace the queue was
    /// served while it waited, it and those ahead of it would be served before
    /// `deadline.hard`; then it waits on, at most until `deadline.hard`.
    ///
    /// Only the head of a model's queue (the highest priority, the earliest among equals)
    /// listens for released workers; the others sleep until their turn comes. Waking every
    /// waiter on every release, as a first version did, cost O(waiters) task wake-ups per
    /// request and most of the gateway's CPU in a saturated fleet.
    ///
    /// A head that finds no worker it may use (a canary request while only main workers are
    /// free, a tier's reserved capacity, a resumed stream that must avoid a worker) passes the
    /// turn to the next waiter of another class, so a free worker is not left idle behind it.
    pub async fn wait(
        &self,
        fleet: &Fleet,
        query: &Query<'_>,
        priority: Priority,
        deadline: Deadline,
    ) -> Result<WorkerLease, Shed> {
        let signal = fleet.release_signal();
        let _waiting = signal.waiting();
        let joined = Instant::now();
        let (id, shed, turn, served_before) = self.join(query.model, priority, Class::of(query))?;
        let mut place = Place {
            queue: self,
            model: query.model.to_string(),
            id,
            served: false,
        };
        let mut until = deadline.soft;
        loop {
            let released = signal.notified();
            tokio::pin!(released);
            if shed.load(Ordering::Acquire) {
                return Err(Shed::Displaced);
            }
            let (head, passed, passes) = self.standing(query.model, id);
            if head {
                // Registered before looking, so a release between the look and the wait
                // wakes us. Only heads register: a release then walks one listener per model.
                released.as_mut().enable();
            }
            if head || passed {
                match fleet.pick(query) {
                    // Dropping `place` hands the turn on: the next waiter may find a
                    // second free slot.
                    Pick::Worker(lease) => {
                        place.served = true;
                        return Ok(lease);
                    }
                    Pick::Unavailable => return Err(Shed::Unavailable),
                    Pick::Saturated => {
                        // Only a free worker this request may not use is worth another look:
                        // in a saturated fleet nobody behind would find one either.
                        let forward = fleet.has_free_worker(query.model);
                        if let Some(next) = self.pass_on(query.model, id, passes, forward) {
                            next.notify_one();
                        }
                    }
                }
            }
            tokio::select! {
                () = &mut released, if head => {}
                () = turn.notified() => {}
                () = tokio::time::sleep_until(until) => {
                    let now = Instant::now();
                    if until < deadline.hard
                        && self.on_pace(query.model, id, served_before, now - joined, deadline.hard - now)
                    {
                        until = deadline.hard;
                        continue;
                    }
                    return Err(Shed::Deadline);
                }
            }
        }
    }

    /// Waiters currently queued for `model` (for tests and metrics).
    pub fn len(&self, model: &str) -> usize {
        self.lock().get(model).map_or(0, |q| q.waiters.len())
    }

    /// Whether `id`, having waited `waited` while the queue served some waiters, would be
    /// served within `left` at that pace: those ahead of it and itself, one by one.
    fn on_pace(
        &self,
        model: &str,
        id: u64,
        served_before: u64,
        waited: std::time::Duration,
        left: std::time::Duration,
    ) -> bool {
        let all = self.lock();
        let Some(q) = all.get(model) else {
            return false;
        };
        let served = q.served.saturating_sub(served_before);
        if served == 0 {
            // Nothing moved while it waited: no pace to expect anything from.
            return false;
        }
        let order = in_order(&q.waiters);
        let Some(ahead) = order.iter().position(|&i| q.waiters[i].id == id) else {
            return false;
        };
        let per_waiter = waited.as_secs_f64() / served as f64;
        per_waiter * (ahead + 1) as f64 <= left.as_secs_f64()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ModelQueue>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn join(
        &self,
        model: &str,
        priority: Priority,
        class: Class,
    ) -> Result<(u64, Arc<AtomicBool>, Arc<Notify>, u64), Shed> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shed = Arc::new(AtomicBool::new(false));
        let turn = Arc::new(Notify::new());
        let mut all = self.lock();
        let model_queue = all.entry(model.to_string()).or_default();
        let served_before = model_queue.served;
        let queue = &mut model_queue.waiters;
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
        // Nobody ahead of its class found the free worker it may be waiting for: it looks once
        // at once (a worker may have come free between its own first look and joining).
        let passed = !queue
            .iter()
            .any(|w| w.priority >= priority && w.class == class);
        queue.push(Waiter {
            id,
            priority,
            class,
            shed: shed.clone(),
            turn: turn.clone(),
            passed,
            passes: 0,
        });
        Ok((id, shed, turn, served_before))
    }

    /// Whether `id` is the head of `model`'s queue, whether it holds a passed turn, and how
    /// many turns it was passed so far.
    fn standing(&self, model: &str, id: u64) -> (bool, bool, u64) {
        let all = self.lock();
        let Some(q) = all.get(model).map(|q| &q.waiters) else {
            return (false, false, 0);
        };
        let head = head(q).is_some_and(|w| w.id == id);
        match q.iter().find(|w| w.id == id) {
            Some(w) => (head, w.passed, w.passes),
            None => (false, false, 0),
        }
    }

    /// `id` found no worker it may use. Its turn is spent unless another came since it looked
    /// (`seen`); with `forward`, the next waiter that might use a free worker gets a turn.
    fn pass_on(&self, model: &str, id: u64, seen: u64, forward: bool) -> Option<Arc<Notify>> {
        let mut all = self.lock();
        let q = &mut all.get_mut(model)?.waiters;
        let order = in_order(q);
        let at = order.iter().position(|&i| q[i].id == id)?;
        let me = &mut q[order[at]];
        if me.passes == seen {
            me.passed = false;
        }
        if !forward {
            return None;
        }
        let next = next_to_try(q, &order, at + 1)?;
        Some(give_turn(&mut q[next]))
    }

    /// Removes `id` (`served`: it got a worker). If it was the head or held a passed turn, the
    /// turn goes on: to the new head, or to the next waiter that might find a worker (a served
    /// waiter may have left a second free one).
    fn remove(&self, model: &str, id: u64, served: bool) -> Option<Arc<Notify>> {
        let mut all = self.lock();
        let model_queue = all.get_mut(model)?;
        model_queue.served += u64::from(served);
        let q = &mut model_queue.waiters;
        let leaver = q.iter().find(|w| w.id == id)?;
        let had_turn = leaver.passed || head(q).is_some_and(|w| w.id == id);
        // Its place in the serving order: everyone ahead of it stays ahead.
        let at = q
            .iter()
            .filter(|w| {
                (w.priority, std::cmp::Reverse(w.id)) > (leaver.priority, std::cmp::Reverse(id))
            })
            .count();
        q.retain(|w| w.id != id);
        if q.is_empty() {
            all.remove(model);
            return None;
        }
        if !had_turn {
            return None;
        }
        let order = in_order(q);
        let next = next_to_try(q, &order, at)?;
        Some(give_turn(&mut q[next]))
    }
}

fn give_turn(waiter: &mut Waiter) -> Arc<Notify> {
    waiter.passed = true;
    waiter.passes += 1;
    waiter.turn.clone()
}

fn head(queue: &[Waiter]) -> Option<&Waiter> {
    queue
        .iter()
        .max_by(|a, b| a.priority.cmp(&b.priority).then(b.id.cmp(&a.id)))
}

/// Indexes of `queue` in serving order: highest priority first, the earliest among equals.
fn in_order(queue: &[Waiter]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..queue.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&queue[a], &queue[b]);
        b.priority.cmp(&a.priority).then(a.id.cmp(&b.id))
    });
    order
}

/// The first waiter from position `from` of `order` whose class differs from every waiter's
/// ahead of it: those ahead found no worker (or hold the turn), so one of their class would
/// find none either.
fn next_to_try(queue: &[Waiter], order: &[usize], from: usize) -> Option<usize> {
    (from..order.len())
        .find(|&pos| {
            let class = &queue[order[pos]].class;
            order[..pos].iter().all(|&i| &queue[i].class != class)
        })
        .map(|pos| order[pos])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use switchyard_fleet::{PromptFormat, RuntimeKind, WorkerSpec};

    use super::*;

    /// One worker that takes one request at a time.
    fn one_slot_fleet() -> Fleet {
        fleet_of(vec![one_slot("w", Pool::Main)])
    }

    fn fleet_of(specs: Vec<WorkerSpec>) -> Fleet {
        let fleet = Fleet::new(specs).unwrap();
        fleet.workers().iter().for_each(|w| w.set_healthy(true));
        fleet
    }

    fn one_slot(name: &str, pool: Pool) -> WorkerSpec {
        WorkerSpec {
            name: name.into(),
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
            pool,
            trust: Default::default(),
        }
    }

    fn lease(pick: Pick) -> WorkerLease {
        match pick {
            Pick::Worker(lease) => lease,
            other => panic!("expected a free worker, got {other:?}"),
        }
    }

    /// Queues a request of `tier` for `pool`; it ends with the worker it got, or why it was shed.
    fn spawn_waiter(
        fleet: &Arc<Fleet>,
        queue: &Arc<WaitQueue>,
        (tier, pool): (&'static str, Pool),
        priority: Priority,
        deadline: Instant,
    ) -> tokio::task::JoinHandle<Result<String, Shed>> {
        let (fleet, queue) = (fleet.clone(), queue.clone());
        tokio::spawn(async move {
            let query = Query {
                pool,
                ..Query::new("m", tier)
            };
            queue
                .wait(&fleet, &query, priority, Deadline::at(deadline))
                .await
                .map(|lease| lease.worker().spec.name.clone())
        })
    }

    async fn until_queued(queue: &WaitQueue, n: usize) {
        while queue.len("m") < n {
            tokio::task::yield_now().await;
        }
    }

    /// A main and a canary worker, both busy, and a Business request queued at the head for
    /// the canary pool.
    struct CanaryHead {
        fleet: Arc<Fleet>,
        queue: Arc<WaitQueue>,
        main_held: WorkerLease,
        _canary_held: WorkerLease,
        head: tokio::task::JoinHandle<Result<String, Shed>>,
        deadline: Instant,
    }

    async fn canary_head() -> CanaryHead {
        let fleet = Arc::new(fleet_of(vec![
            one_slot("main", Pool::Main),
            one_slot("canary", Pool::Canary),
        ]));
        let queue = Arc::new(WaitQueue::new(100));
        let main_held = lease(fleet.pick(&Query::new("m", "pro")));
        let canary = Query {
            pool: Pool::Canary,
            ..Query::new("m", "pro")
        };
        let _canary_held = lease(fleet.pick(&canary));
        let deadline = Instant::now() + Duration::from_secs(30);
        let head = spawn_waiter(
            &fleet,
            &queue,
            ("business", Pool::Canary),
            Priority::new(9995, 0),
            deadline,
        );
        until_queued(&queue, 1).await;
        CanaryHead {
            fleet,
            queue,
            main_held,
            _canary_held,
            head,
            deadline,
        }
    }

    #[tokio::test]
    async fn a_head_that_cannot_use_the_free_worker_lets_the_next_class_through() {
        let scene = canary_head().await;
        // Behind the canary head, a lower tier waits for any main worker.
        let behind = spawn_waiter(
            &scene.fleet,
            &scene.queue,
            ("hobby", Pool::Main),
            Priority::new(9950, 0),
            scene.deadline,
        );
        until_queued(&scene.queue, 2).await;
        drop(scene.main_held);
        let served = tokio::time::timeout(Duration::from_secs(5), behind)
            .await
            .expect("the main worker serves the waiter behind the canary head")
            .unwrap();
        assert_eq!(served.as_deref(), Ok("main"));
        assert!(
            !scene.head.is_finished(),
            "the canary head still waits for the canary"
        );
        assert_eq!(scene.queue.len("m"), 1);
        scene.head.abort();
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
                    .wait(
                        &fleet,
                        &Query::new("m", "pro"),
                        priority,
                        Deadline::at(deadline),
                    )
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
    async fn a_waiter_that_joins_after_a_worker_came_free_looks_at_once() {
        let scene = canary_head().await;
        // The main worker comes free while only the canary head waits: nobody takes it.
        drop(scene.main_held);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // A request that saw the fleet saturated a moment ago joins only now.
        let late = spawn_waiter(
            &scene.fleet,
            &scene.queue,
            ("hobby", Pool::Main),
            Priority::new(9950, 0),
            scene.deadline,
        );
        let served = tokio::time::timeout(Duration::from_secs(5), late)
            .await
            .expect("the late waiter finds the free main worker at once")
            .unwrap();
        assert_eq!(served.as_deref(), Ok("main"));
        scene.head.abort();
    }

    /// One busy worker and one out of rotation (`take_out`); a request queues; `bring_back`
    /// returns the second worker without any request ending: the queued request must get it
    /// long before its deadline.
    async fn served_once_back(take_out: impl Fn(&Fleet), bring_back: impl Fn(&Fleet)) {
        let fleet = Arc::new(fleet_of(vec![
            one_slot("busy", Pool::Main),
            one_slot("back", Pool::Main),
        ]));
        take_out(&fleet);
        let queue = Arc::new(WaitQueue::new(100));
        let _busy = lease(fleet.pick(&Query::new("m", "pro")));
        assert!(matches!(
            fleet.pick(&Query::new("m", "pro")),
            Pick::Saturated
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        let waiter = spawn_waiter(
            &fleet,
            &queue,
            ("pro", Pool::Main),
            Priority::new(9990, 0),
            deadline,
        );
        until_queued(&queue, 1).await;
        bring_back(&fleet);
        let served = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the returning worker serves the waiter before its deadline")
            .unwrap();
        assert_eq!(served.as_deref(), Ok("back"));
    }

    #[tokio::test]
    async fn a_worker_back_in_rotation_serves_the_queue_at_once() {
        served_once_back(
            |fleet| {
                for _ in 0..3 {
                    fleet.workers()[1].set_healthy(false);
                }
            },
            // Its health check passes again.
            |fleet| fleet.workers()[1].set_healthy(true),
        )
        .await;
    }

    #[tokio::test]
    async fn an_undrained_worker_serves_the_queue_at_once() {
        let target = switchyard_fleet::DrainTarget::Worker("back".into());
        served_once_back(
            |fleet| assert_eq!(fleet.drain(&target, true, "maintenance"), 1),
            |fleet| assert_eq!(fleet.drain(&target, false, "maintenance over"), 1),
        )
        .await;
    }

    #[tokio::test]
    async fn a_displaced_waiter_hears_at_once_that_it_was_shed() {
        let fleet = Arc::new(one_slot_fleet());
        let queue = Arc::new(WaitQueue::new(1));
        let _held = lease(fleet.pick(&Query::new("m", "pro")));
        let deadline = Instant::now() + Duration::from_secs(30);
        let low = spawn_waiter(
            &fleet,
            &queue,
            ("hobby", Pool::Main),
            Priority::new(9950, 0),
            deadline,
        );
        until_queued(&queue, 1).await;
        let high = spawn_waiter(
            &fleet,
            &queue,
            ("business", Pool::Main),
            Priority::new(9995, 0),
            deadline,
        );
        let verdict = tokio::time::timeout(Duration::from_secs(5), low)
            .await
            .expect("the displaced waiter is woken, not left to its deadline")
            .unwrap();
        assert_eq!(verdict, Err(Shed::Displaced));
        assert!(!high.is_finished(), "the newcomer waits for the slot");
        high.abort();
    }

    /// Queues a request that keeps the worker it gets; ends with the lease or the shed, and
    /// when.
    fn spawn_holder(
        fleet: &Arc<Fleet>,
        queue: &Arc<WaitQueue>,
        deadline: Deadline,
    ) -> tokio::task::JoinHandle<(Result<WorkerLease, Shed>, Instant)> {
        let (fleet, queue) = (fleet.clone(), queue.clone());
        tokio::spawn(async move {
            let got = queue
                .wait(
                    &fleet,
                    &Query::new("m", "pro"),
                    Priority::new(9990, 0),
                    deadline,
                )
                .await;
            (got, Instant::now())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_soft_deadline_only_a_waiter_the_queue_will_reach_waits_on() {
        let fleet = Arc::new(one_slot_fleet());
        let queue = Arc::new(WaitQueue::new(100));
        let held = lease(fleet.pick(&Query::new("m", "pro")));
        let t0 = Instant::now();
        let deadline = Deadline {
            soft: t0 + Duration::from_millis(1000),
            hard: t0 + Duration::from_millis(2500),
        };
        let first = spawn_holder(&fleet, &queue, deadline);
        until_queued(&queue, 1).await;
        let second = spawn_holder(&fleet, &queue, deadline);
        until_queued(&queue, 2).await;
        let third = spawn_holder(&fleet, &queue, deadline);
        until_queued(&queue, 3).await;

        // One waiter served in the first second: a pace of one a second.
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(held);
        let (first_lease, _) = first.await.unwrap();
        let first_lease = first_lease.expect("the head is served by the release");

        // At the soft deadline (1 s) the second, next in line, would be served in about 1 s
        // more: within the 1.5 s left, it waits on. The third would need 2 s: shed now.
        let (verdict, at) = third.await.unwrap();
        assert_eq!(verdict.err(), Some(Shed::Deadline));
        assert_eq!(
            at - t0,
            Duration::from_millis(1000),
            "shed at the soft deadline"
        );
        assert!(
            !second.is_finished(),
            "the next in line waits past the soft deadline"
        );

        tokio::time::sleep_until(t0 + Duration::from_millis(1200)).await;
        drop(first_lease);
        let (verdict, at) = second.await.unwrap();
        assert!(
            verdict.is_ok(),
            "served after its soft deadline, before its hard one"
        );
        assert_eq!(at - t0, Duration::from_millis(1200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_that_does_not_move_sheds_at_the_soft_deadline() {
        let fleet = Arc::new(one_slot_fleet());
        let queue = Arc::new(WaitQueue::new(100));
        let _held = lease(fleet.pick(&Query::new("m", "pro")));
        let t0 = Instant::now();
        let waiter = spawn_holder(
            &fleet,
            &queue,
            Deadline {
                soft: t0 + Duration::from_millis(750),
                hard: t0 + Duration::from_millis(1500),
            },
        );
        let (verdict, at) = waiter.await.unwrap();
        assert_eq!(verdict.err(), Some(Shed::Deadline));
        assert_eq!(at - t0, Duration::from_millis(750));
    }
}
