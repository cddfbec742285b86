//! The registry of workers by model, and the choice of one for a request.
//!
//! Membership changes (a worker registers, its lease runs out, an operator removes it) swap in
//! a new immutable snapshot; requests read the current snapshot without a lock. Per-worker
//! state lives in the shared [`Worker`]s, so a snapshot swap never loses it.
//!
//! One piece, over 500 lines with its tests (the code is about 370): the membership snapshot and
//! the operations that swap it.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::breaker::{OutlierConfig, WorkerState};
use crate::hop::Hops;
use crate::signal::ReleaseSignal;
use crate::worker::{Worker, WorkerSource, WorkerSpec};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FleetError {
    #[error("duplicate worker name '{0}'")]
    DuplicateName(String),
    #[error("{0}")]
    InvalidWorker(String),
    #[error("worker '{0}' is declared in the config file; a registration cannot replace it")]
    StaticName(String),
    #[error("no worker named '{0}'")]
    UnknownWorker(String),
}

/// One immutable view of the fleet's membership.
#[derive(Debug, Default)]
pub struct Members {
    pub workers: Vec<Arc<Worker>>,
    pub by_model: BTreeMap<String, Vec<Arc<Worker>>>,
}

impl Members {
    fn build(workers: Vec<Arc<Worker>>) -> Self {
        let mut by_model: BTreeMap<String, Vec<Arc<Worker>>> = BTreeMap::new();
        for w in &workers {
            by_model
                .entry(w.spec.model.clone())
                .or_default()
                .push(w.clone());
        }
        Self { workers, by_model }
    }
}

/// What a drain command applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainTarget {
    Worker(String),
    Provider(String),
    Region(String),
}

impl DrainTarget {
    pub fn matches(&self, w: &Worker) -> bool {
        match self {
            DrainTarget::Worker(n) => &w.spec.name == n,
            DrainTarget::Provider(p) => &w.spec.provider == p,
            DrainTarget::Region(r) => &w.spec.region == r,
        }
    }
}

/// Every worker, grouped by the model clients ask for.
#[derive(Debug)]
pub struct Fleet {
    pub(crate) members: ArcSwap<Members>,
    /// Serializes membership changes (rare); never taken by a request.
    write: Mutex<()>,
    policy: OutlierConfig,
    hops: Arc<Hops>,
    signal: Arc<ReleaseSignal>,
    /// Rotates the scan start so that equally loaded workers take turns.
    pub(crate) cursor: AtomicUsize,
}

impl Default for Fleet {
    fn default() -> Self {
        Self::empty(OutlierConfig::default(), Hops::shared_default())
    }
}

impl Fleet {
    pub fn new(specs: Vec<WorkerSpec>) -> Result<Self, FleetError> {
        Self::with_policy(specs, OutlierConfig::default())
    }

    fn empty(policy: OutlierConfig, hops: Arc<Hops>) -> Self {
        Self {
            hops,
            members: ArcSwap::from_pointee(Members::default()),
            write: Mutex::new(()),
            policy,
            signal: Arc::new(ReleaseSignal::default()),
            cursor: AtomicUsize::new(0),
        }
    }

    pub fn with_policy(specs: Vec<WorkerSpec>, policy: OutlierConfig) -> Result<Self, FleetError> {
        Self::with_hops(specs, policy, Hops::shared_default())
    }

    /// The fleet of the config file's workers, reached through `hops` (which also reach every
    /// worker registered later).
    pub fn with_hops(
        specs: Vec<WorkerSpec>,
        policy: OutlierConfig,
        hops: Arc<Hops>,
    ) -> Result<Self, FleetError> {
        let mut names = HashSet::new();
        let mut workers = Vec::new();
        for spec in specs {
            spec.validate().map_err(FleetError::InvalidWorker)?;
            if !names.insert(spec.name.clone()) {
                return Err(FleetError::DuplicateName(spec.name));
            }
            let hop = hops.clients(&spec).map_err(FleetError::InvalidWorker)?;
            workers.push(Arc::new(Worker::with(
                spec,
                WorkerSource::Static,
                policy.clone(),
                BTreeMap::new(),
                hop,
            )));
        }
        let fleet = Self::empty(policy, hops);
        workers.iter().for_each(|w| w.adopt(&fleet.signal));
        fleet.members.store(Arc::new(Members::build(workers)));
        Ok(fleet)
    }

    /// How this fleet reaches its workers.
    pub fn hops(&self) -> &Hops {
        &self.hops
    }

    /// Signalled when a worker slot comes free while requests queue for one.
    pub fn release_signal(&self) -> &ReleaseSignal {
        &self.signal
    }

    /// The current membership.
    pub fn snapshot(&self) -> Arc<Members> {
        self.members.load_full()
    }

    pub fn workers(&self) -> Vec<Arc<Worker>> {
        self.members.load().workers.clone()
    }

    pub fn worker(&self, name: &str) -> Option<Arc<Worker>> {
        self.members
            .load()
            .workers
            .iter()
            .find(|w| w.spec.name == name)
            .cloned()
    }

    /// Models with at least one worker, healthy or not, in name order.
    pub fn models(&self) -> Vec<String> {
        self.members.load().by_model.keys().cloned().collect()
    }

    pub fn serves(&self, model: &str) -> bool {
        self.members.load().by_model.contains_key(model)
    }

    /// Adds a registered worker, or renews its lease when the same registration comes again.
    /// A registration with changed labels replaces the worker (its counters start afresh; the
    /// requests it is serving keep their hold on the old one). Returns the worker and whether
    /// it is new.
    pub fn register(
        &self,
        mut spec: WorkerSpec,
        labels: BTreeMap<String, String>,
        lease: Duration,
    ) -> Result<(Arc<Worker>, bool), FleetError> {
        self.hops.settle_registered(&mut spec);
        spec.validate().map_err(FleetError::InvalidWorker)?;
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.members.load_full();
        if let Some(existing) = current.workers.iter().find(|w| w.spec.name == spec.name) {
            if existing.source == WorkerSource::Static {
                return Err(FleetError::StaticName(spec.name));
            }
            if same_registration(existing, &spec, &labels) {
                existing.renew_lease(lease);
                return Ok((existing.clone(), false));
            }
        }
        let hop = self
            .hops
            .clients(&spec)
            .map_err(FleetError::InvalidWorker)?;
        let worker = Arc::new(Worker::with(
            spec,
            WorkerSource::Registered,
            self.policy.clone(),
            labels,
            hop,
        ));
        worker.renew_lease(lease);
        worker.adopt(&self.signal);
        let mut workers: Vec<Arc<Worker>> = Vec::with_capacity(current.workers.len() + 1);
        for w in &current.workers {
            if w.spec.name == worker.spec.name {
                w.mark_removed();
            } else {
                workers.push(w.clone());
            }
        }
        workers.push(worker.clone());
        self.members.store(Arc::new(Members::build(workers)));
        tracing::info!(worker = %worker.spec.name, model = %worker.spec.model, provider = %worker.spec.provider, "worker registered");
        Ok((worker, true))
    }

    /// Renews a registered worker's lease.
    pub fn heartbeat(&self, name: &str, lease: Duration) -> Result<Arc<Worker>, FleetError> {
        let worker = self
            .worker(name)
            .ok_or_else(|| FleetError::UnknownWorker(name.to_string()))?;
        if worker.source == WorkerSource::Static {
            return Err(FleetError::StaticName(name.to_string()));
        }
        worker.renew_lease(lease);
        Ok(worker)
    }

    /// Takes a worker out of the registry. Requests it is serving finish (they hold it).
    pub fn remove(&self, name: &str) -> Option<Arc<Worker>> {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.members.load_full();
        let gone = current
            .workers
            .iter()
            .find(|w| w.spec.name == name)?
            .clone();
        gone.mark_removed();
        let workers = current
            .workers
            .iter()
            .filter(|w| !Arc::ptr_eq(w, &gone))
            .cloned()
            .collect();
        self.members.store(Arc::new(Members::build(workers)));
        tracing::warn!(worker = name, "worker removed from the fleet");
        Some(gone)
    }

    /// Whether some registered worker's lease ran out by this process's clock (where several
    /// gateways share a store, the store's lease is asked before the worker goes).
    pub fn any_lease_expired(&self) -> bool {
        self.members
            .load()
            .workers
            .iter()
            .any(|w| w.lease_expired())
    }

    /// Removes registered workers whose lease ran out; returns their names.
    pub fn expire_leases(&self) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .load()
            .workers
            .iter()
            .filter(|w| w.lease_expired())
            .map(|w| w.spec.name.clone())
            .collect();
        for name in &expired {
            tracing::warn!(worker = %name, "lease expired: no heartbeat in time");
            self.remove(name);
        }
        expired
    }

    /// Drains (or undrains) every worker `target` matches; returns how many changed.
    pub fn drain(&self, target: &DrainTarget, draining: bool, why: &str) -> usize {
        let changed = self
            .members
            .load()
            .workers
            .iter()
            .filter(|w| target.matches(w))
            .filter(|w| w.set_draining(draining, why))
            .count();
        if changed > 0 && !draining {
            // Undrained workers take requests again: queued ones may use them now.
            self.signal.released();
        }
        changed
    }

    /// The next worker of `model` in turn that passes active health checks, ignoring load,
    /// latency and live-traffic failures: the naive baseline `bench/chaos` compares against.
    pub fn pick_round_robin(&self, model: &str) -> Option<WorkerLease> {
        let members = self.members.load();
        let candidates = members.by_model.get(model)?;
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..candidates.len())
            .map(|i| &candidates[(start + i) % candidates.len()])
            .find(|w| w.passes_health_checks())
            .map(|w| WorkerLease::new(w.clone()))
    }

    /// Ejects `worker` if its first tokens after prompts of about `prompt_tokens` tokens are
    /// far slower than its pool's after prompts of the same size class (see [`crate::ttft`]):
    /// a worker that served one tenant's long prompts is compared with long prompts only.
    /// Not when that would take out more of the pool than `max_ejected_percent`, nor when the
    /// rest of the pool has no room for the requests it is running. Returns whether it did.
    pub fn check_ttft_outlier(&self, worker: &Worker, prompt_tokens: u64) -> bool {
        let policy = &self.policy;
        let class = crate::ttft::class_of(prompt_tokens);
        let Some((ewma, samples)) = worker.health().ttft_of_size(class) else {
            return false;
        };
        if samples < policy.ttft_min_samples || worker.state() != WorkerState::Ready {
            return false;
        }
        let members = self.members.load();
        let Some(pool) = members.by_model.get(&worker.spec.model) else {
            return false;
        };
        let mut ewmas: Vec<u64> = pool
            .iter()
            .filter(|w| w.is_healthy())
            .filter_map(|w| w.health().ttft_of_size(class).map(|(e, _)| e))
            .collect();
        if ewmas.len() < 2 {
            return false; // no pool to compare with
        }
        ewmas.sort_unstable();
        // The lower median: in a pool of two, the slow one is compared with the fast one.
        let median = ewmas[(ewmas.len() - 1) / 2];
        let excess_us = policy.ttft_min_excess_ms.saturating_mul(1000);
        let slow = (ewma as f64) > median as f64 * policy.ttft_factor
            && ewma > median.saturating_add(excess_us);
        if !slow {
            return false;
        }
        let out = pool.iter().filter(|w| !w.is_healthy()).count() + 1;
        if out * 100 > pool.len() * policy.max_ejected_percent as usize {
            return false;
        }
        // A slow worker's requests move to the rest of the pool when it is ejected. Where the
        // rest has no free slot for them, ejection turns slow answers into queued and shed
        // ones; the worker stays, and routing's expected-wait score already sends it less.
        let room: u64 = pool
            .iter()
            .filter(|w| !std::ptr::eq(&***w, worker) && w.is_healthy())
            .map(|w| u64::from(w.spec.max_concurrency.saturating_sub(w.outstanding())))
            .sum();
        if room < u64::from(worker.outstanding()) {
            return false;
        }
        worker.health().eject(
            &worker.spec.name,
            WorkerState::Ready,
            &format!(
                "TTFT outlier: EWMA {:.0} ms against the pool's median {:.0} ms (prompts of {})",
                ewma as f64 / 1000.0,
                median as f64 / 1000.0,
                crate::ttft::class_label(class)
            ),
        )
    }
}

fn same_registration(w: &Worker, spec: &WorkerSpec, labels: &BTreeMap<String, String>) -> bool {
    let a = &w.spec;
    a.url == spec.url
        && a.runtime == spec.runtime
        && a.model == spec.model
        && a.upstream_model == spec.upstream_model
        && a.provider == spec.provider
        && a.region == spec.region
        && a.gpu == spec.gpu
        && a.price_per_hour == spec.price_per_hour
        && a.max_concurrency == spec.max_concurrency
        && a.api_key == spec.api_key
        && a.prompt_format == spec.prompt_format
        && a.tiers == spec.tiers
        && a.pool == spec.pool
        && a.trust == spec.trust
        && &w.labels == labels
}

/// A request's hold on a worker: counts as outstanding until dropped, whatever path the
/// request ends by (success, error, client disconnect).
#[derive(Debug)]
pub struct WorkerLease {
    worker: Arc<Worker>,
}

impl WorkerLease {
    pub(crate) fn new(worker: Arc<Worker>) -> Self {
        worker.acquire();
        Self { worker }
    }

    /// A lease on a free slot of `worker`, or `None` if another request took the last one
    /// since it was seen free.
    pub(crate) fn try_new(worker: &Arc<Worker>) -> Option<Self> {
        worker.try_acquire().then(|| Self {
            worker: worker.clone(),
        })
    }

    pub fn worker(&self) -> &Arc<Worker> {
        &self.worker
    }
}

impl Drop for WorkerLease {
    fn drop(&mut self) {
        self.worker.release();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pick::{Pick, Query};

    fn lease(p: Pick) -> WorkerLease {
        match p {
            Pick::Worker(l) => l,
            other => panic!("no worker: {other:?}"),
        }
    }
    use crate::runtime::{PromptFormat, RuntimeKind};

    fn spec(name: &str, model: &str) -> WorkerSpec {
        WorkerSpec {
            name: name.into(),
            url: "http://127.0.0.1:1".into(),
            runtime: RuntimeKind::Vllm,
            model: model.into(),
            upstream_model: None,
            provider: "p".into(),
            region: "r".into(),
            gpu: "g".into(),
            price_per_hour: 1.0,
            max_concurrency: 8,
            api_key: None,
            prompt_format: PromptFormat::default(),
            tiers: Vec::new(),
            pool: Default::default(),
            trust: Default::default(),
        }
    }

    fn fleet(n: usize) -> Fleet {
        let f = Fleet::new((0..n).map(|i| spec(&format!("w{i}"), "m")).collect()).unwrap();
        f.workers().iter().for_each(|w| w.set_healthy(true));
        f
    }

    /// A slow worker whose requests the rest of the pool has no room for stays in rotation:
    /// ejecting it would queue and shed them. With room, it is ejected.
    #[test]
    fn a_slow_worker_stays_while_the_rest_of_the_pool_is_full() {
        let f = fleet(3);
        let workers = f.workers();
        let (a, b, c) = (&workers[0], &workers[1], &workers[2]);
        let ms = std::time::Duration::from_millis;
        for _ in 0..10 {
            a.record_ttft(ms(2_000), 200);
            b.record_ttft(ms(100), 200);
            c.record_ttft(ms(120), 200);
        }
        let slots = |w: &Worker| w.spec.max_concurrency;
        for _ in 0..slots(b) {
            b.acquire();
        }
        for _ in 0..slots(c) {
            c.acquire();
        }
        a.acquire();
        assert!(
            !f.check_ttft_outlier(a, 200),
            "nowhere for its request to go"
        );
        assert!(a.is_healthy());
        b.release();
        assert!(f.check_ttft_outlier(a, 200), "one free slot elsewhere");
        assert!(!a.is_healthy());
    }

    /// One tenant's long prompts, all served by one worker, make its first tokens slow; it is
    /// compared with the pool's first tokens after prompts of the same size, not after short
    /// ones, and stays in rotation. Slow on short prompts too, it is ejected.
    #[test]
    fn a_worker_is_judged_against_prompts_of_its_own_size() {
        let f = fleet(3);
        let workers = f.workers();
        let (a, b, c) = (&workers[0], &workers[1], &workers[2]);
        let ms = std::time::Duration::from_millis;
        for _ in 0..10 {
            a.record_ttft(ms(3_000), 30_000); // a long prompt: slow to its first token
            b.record_ttft(ms(100), 200);
            c.record_ttft(ms(120), 200);
        }
        assert!(
            !f.check_ttft_outlier(a, 30_000),
            "no peer served a long prompt"
        );
        assert!(a.is_healthy());
        // The same worker slow on short prompts too: an outlier among short prompts.
        for _ in 0..10 {
            a.record_ttft(ms(2_000), 200);
        }
        assert!(f.check_ttft_outlier(a, 200));
        assert!(
            a.health_view()
                .reason
                .contains("prompts of under 1024 tokens"),
            "{}",
            a.health_view().reason
        );
    }

    #[test]
    fn picks_the_least_loaded_healthy_worker() {
        let f = fleet(3);
        let _a = lease(f.pick(&Query::new("m", "pro")));
        let _b = lease(f.pick(&Query::new("m", "pro")));
        let c = lease(f.pick(&Query::new("m", "pro")));
        // Three leases on three workers: each worker has exactly one.
        assert!(f.workers().iter().all(|w| w.outstanding() == 1));
        drop(c);
        let d = lease(f.pick(&Query::new("m", "pro")));
        assert_eq!(
            d.worker().outstanding(),
            1,
            "the freed worker is chosen again"
        );
    }

    #[test]
    fn unhealthy_and_tried_workers_are_skipped() {
        let f = fleet(2);
        f.workers()[0].set_healthy(false);
        for _ in 0..5 {
            assert_eq!(lease(f.pick(&Query::new("m", "pro"))).worker().name(), "w1");
        }
        let tried = vec![f.workers()[1].clone()];
        assert!(!matches!(
            f.pick(&Query {
                tried: &tried,
                ..Query::new("m", "pro")
            }),
            Pick::Worker(_)
        ));
        assert!(matches!(
            f.pick(&Query::new("other", "pro")),
            Pick::Unavailable
        ));
    }

    #[test]
    fn workers_start_unready_and_failures_eject() {
        let f = Fleet::new(vec![spec("w0", "m")]).unwrap();
        assert!(
            matches!(f.pick(&Query::new("m", "pro")), Pick::Unavailable),
            "no health check yet"
        );
        let w = &f.workers()[0];
        w.set_healthy(true);
        w.record_failure(2);
        assert!(w.is_healthy());
        w.record_failure(2);
        assert!(!w.is_healthy());
    }

    #[test]
    fn a_worker_on_probation_with_its_request_in_flight_is_busy_not_gone() {
        let policy = OutlierConfig {
            base_ejection_ms: 20,
            max_ejection_ms: 80,
            ..OutlierConfig::default()
        };
        let f = Fleet::with_policy(vec![spec("w0", "m")], policy).unwrap();
        let w = &f.workers()[0];
        w.set_healthy(true);
        w.record_failure(1);
        crate::breaker::test_clock::advance(40);
        w.set_healthy(true);
        assert_eq!(w.state(), WorkerState::Probation);
        let _proving = lease(f.pick(&Query::new("m", "pro")));
        // The model's only worker is busy proving itself: the next request queues, not 503.
        assert!(matches!(f.pick(&Query::new("m", "pro")), Pick::Saturated));
    }

    #[test]
    fn config_errors_are_named() {
        let dup = Fleet::new(vec![spec("a", "m"), spec("a", "m")]).unwrap_err();
        assert_eq!(dup, FleetError::DuplicateName("a".into()));
        let mut bad = spec("b", "m");
        bad.url = "ftp://x".into();
        assert!(
            matches!(Fleet::new(vec![bad]), Err(FleetError::InvalidWorker(m)) if m.contains("worker 'b'"))
        );
    }
}
