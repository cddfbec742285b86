//! The registry of workers by model, and the choice of one for a request.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::worker::{Worker, WorkerSpec};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FleetError {
    #[error("duplicate worker name '{0}'")]
    DuplicateName(String),
    #[error("{0}")]
    InvalidWorker(String),
}

/// Every worker, grouped by the model clients ask for. Built once from the config; the
/// per-worker state it points to changes, the grouping does not.
#[derive(Debug, Default)]
pub struct Fleet {
    workers: Vec<Arc<Worker>>,
    by_model: BTreeMap<String, Vec<Arc<Worker>>>,
    /// Rotates the scan start so that equally loaded workers take turns.
    cursor: AtomicUsize,
}

impl Fleet {
    pub fn new(specs: Vec<WorkerSpec>) -> Result<Self, FleetError> {
        let mut names = HashSet::new();
        let mut fleet = Fleet::default();
        for spec in specs {
            spec.validate().map_err(FleetError::InvalidWorker)?;
            if !names.insert(spec.name.clone()) {
                return Err(FleetError::DuplicateName(spec.name));
            }
            let worker = Arc::new(Worker::new(spec));
            fleet
                .by_model
                .entry(worker.spec.model.clone())
                .or_default()
                .push(worker.clone());
            fleet.workers.push(worker);
        }
        Ok(fleet)
    }

    pub fn workers(&self) -> &[Arc<Worker>] {
        &self.workers
    }

    /// Models with at least one worker, healthy or not, in name order.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.by_model.keys().map(String::as_str)
    }

    pub fn serves(&self, model: &str) -> bool {
        self.by_model.contains_key(model)
    }

    /// The healthy worker of `model` with the fewest outstanding requests, skipping those in
    /// `tried` (workers that already failed this request). Ties go round-robin.
    pub fn pick(&self, model: &str, tried: &[Arc<Worker>]) -> Option<WorkerLease> {
        let candidates = self.by_model.get(model)?;
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<&Arc<Worker>> = None;
        for i in 0..candidates.len() {
            let w = &candidates[(start + i) % candidates.len()];
            if !w.is_healthy() || tried.iter().any(|t| Arc::ptr_eq(t, w)) {
                continue;
            }
            if best.is_none_or(|b| w.outstanding() < b.outstanding()) {
                best = Some(w);
            }
        }
        best.map(|w| WorkerLease::new(w.clone()))
    }
}

/// A request's hold on a worker: counts as outstanding until dropped, whatever path the
/// request ends by (success, error, client disconnect).
#[derive(Debug)]
pub struct WorkerLease {
    worker: Arc<Worker>,
}

impl WorkerLease {
    fn new(worker: Arc<Worker>) -> Self {
        worker.acquire();
        Self { worker }
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
        }
    }

    fn fleet(n: usize) -> Fleet {
        let f = Fleet::new((0..n).map(|i| spec(&format!("w{i}"), "m")).collect()).unwrap();
        f.workers().iter().for_each(|w| w.set_healthy(true));
        f
    }

    #[test]
    fn picks_the_least_loaded_healthy_worker() {
        let f = fleet(3);
        let _a = f.pick("m", &[]).unwrap();
        let _b = f.pick("m", &[]).unwrap();
        let c = f.pick("m", &[]).unwrap();
        // Three leases on three workers: each worker has exactly one.
        assert!(f.workers().iter().all(|w| w.outstanding() == 1));
        drop(c);
        let d = f.pick("m", &[]).unwrap();
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
            assert_eq!(f.pick("m", &[]).unwrap().worker().name(), "w1");
        }
        let tried = vec![f.workers()[1].clone()];
        assert!(f.pick("m", &tried).is_none());
        assert!(f.pick("other", &[]).is_none());
    }

    #[test]
    fn workers_start_unready_and_failures_eject() {
        let f = Fleet::new(vec![spec("w0", "m")]).unwrap();
        assert!(f.pick("m", &[]).is_none(), "no health check yet");
        let w = &f.workers()[0];
        w.set_healthy(true);
        w.record_failure(2);
        assert!(w.is_healthy());
        w.record_failure(2);
        assert!(!w.is_healthy());
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
