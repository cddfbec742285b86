//! What every request handler shares. Built once at start; nothing in it is locked per request.
//! The control plane holds it too (behind its own state), and reads it; it adds nothing here.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use switchyard_fleet::Fleet;
use switchyard_metering::directory::Directory;
use switchyard_metering::ledger::Ledger;

use switchyard_config::Config;

pub struct AppState {
    pub config: Config,
    pub fleet: Arc<Fleet>,
    pub directory: Arc<Directory>,
    /// Limits shared with the other replicas in Redis; `None`: counted in this process.
    pub shared_limits: Option<Arc<switchyard_metering::shared_limits::SharedLimits>>,
    pub ledger: Ledger,
    /// Models registered workers have served (see [`crate::registered_models`]).
    pub registered_models: crate::registered_models::RegisteredModels,
    /// Set once shutdown begins: `/readyz` answers 503 so load balancers stop sending.
    pub shutting_down: AtomicBool,
    /// For calls to services other than workers (the moderation hook, alert webhooks); a
    /// worker's calls go through its own clients (`Worker::hop`).
    pub client: reqwest::Client,
    /// Caps retries and hedges across all requests (see [`crate::upstream::budget`]).
    pub retry_budget: crate::upstream::budget::RetryBudget,
    /// Caps hedges separately, at `hedge_budget_ratio` of the hedgeable requests.
    pub hedge_budget: crate::upstream::budget::RetryBudget,
    /// Requests waiting for a saturated fleet.
    pub queue: crate::route::queue::WaitQueue,
    /// Conversation → the worker that served its last turn.
    pub sticky: crate::route::sticky::StickyTable,
    pub canaries: crate::route::canary::Canaries,
    /// The latest figures read from workers' own `/metrics`, published by the control
    /// plane's scraper (see [`crate::metrics::worker_figures`]).
    pub worker_metrics: Arc<crate::metrics::worker_figures::WorkerMetrics>,
    /// Input and output blocklists per tier (see [`crate::filter`]).
    pub filters: crate::filter::ContentFilters,
    /// The time SLA records are stamped and judged by: heartbeats, maintenance notices, the
    /// report's "now". The system clock, except in tests that move time on.
    pub clock: Arc<dyn switchyard_metering::clock::Clock>,
    /// This process, as its heartbeats and open requests name it, and when it started.
    pub instance: String,
    pub started_at_ms: i64,
}
