//! The gauges read from this gateway's own state when `/metrics` is scraped: each worker's
//! state, outstanding requests, ejections in a row and TTFT average, and the retry budget.
//! Reading them here costs nothing per request and cannot go stale: a worker that left the
//! fleet is simply not listed.

use switchyard_fleet::WorkerState;

use std::sync::atomic::Ordering;

use switchyard_slo::objectives::{MAX_5XX_PPM, MAX_THROTTLED_PPM};

use super::exposition::{counter, gauge, sample};
use super::{
    BUILD_INFO, LEDGER_DEAD_LETTERS, LEDGER_UNWRITTEN, LEDGER_WRITE_FAILURES, LEDGER_WRITTEN,
    LIMITS_REDIS_UP, LIMITS_REPLICAS, RETRY_BUDGET, SLO_OBJECTIVE, WORKER_EJECTIONS,
    WORKER_OUTSTANDING, WORKER_STATE, WORKER_TTFT_EWMA, WORKER_USAGE_REJECTED,
};
use crate::state::AppState;

const STATES: [(WorkerState, &str); 6] = [
    (WorkerState::Starting, "starting"),
    (WorkerState::Ready, "ready"),
    (WorkerState::Unhealthy, "unhealthy"),
    (WorkerState::Ejected, "ejected"),
    (WorkerState::Probation, "probation"),
    (WorkerState::Draining, "draining"),
];

pub fn render(out: &mut String, state: &AppState) {
    let workers = state.fleet.workers();
    gauge(
        out,
        WORKER_STATE,
        "1 for the state each worker is in (starting, ready, unhealthy, ejected, probation, draining), 0 for the others.",
    );
    for w in &workers {
        let now = w.state();
        let s = &w.spec;
        for (st, name) in STATES {
            let labels = [
                ("worker", s.name.as_str()),
                ("model", s.model.as_str()),
                ("provider", s.provider.as_str()),
                ("region", s.region.as_str()),
                ("state", name),
            ];
            sample(out, WORKER_STATE, &labels, f64::from(u8::from(now == st)));
        }
    }
    gauge(
        out,
        WORKER_OUTSTANDING,
        "Requests the gateway has outstanding on each worker.",
    );
    for w in &workers {
        let labels = [
            ("worker", w.spec.name.as_str()),
            ("model", w.spec.model.as_str()),
        ];
        sample(out, WORKER_OUTSTANDING, &labels, f64::from(w.outstanding()));
    }
    gauge(out, WORKER_EJECTIONS, "Ejections in a row of each worker.");
    let views: Vec<_> = workers.iter().map(|w| (w, w.health_view())).collect();
    for (w, view) in &views {
        let labels = [
            ("worker", w.spec.name.as_str()),
            ("model", w.spec.model.as_str()),
        ];
        sample(out, WORKER_EJECTIONS, &labels, f64::from(view.ejections));
    }
    counter(
        out,
        WORKER_USAGE_REJECTED,
        "Usage reports of each worker refused (out of bounds or malformed) and billed by the gateway's own count instead.",
    );
    for (w, view) in &views {
        let labels = [
            ("worker", w.spec.name.as_str()),
            ("model", w.spec.model.as_str()),
        ];
        let n = view.usage_rejected.as_ref().map_or(0, |r| r.count);
        sample(out, WORKER_USAGE_REJECTED, &labels, n as f64);
    }
    gauge(
        out,
        WORKER_TTFT_EWMA,
        "Each worker's TTFT moving average in seconds, as routing sees it.",
    );
    for (w, view) in &views {
        if let Some(ms) = view.ttft_ewma_ms {
            let labels = [
                ("worker", w.spec.name.as_str()),
                ("model", w.spec.model.as_str()),
            ];
            sample(out, WORKER_TTFT_EWMA, &labels, ms / 1e3);
        }
    }
    gauge(
        out,
        RETRY_BUDGET,
        "Whole retries or hedges the retry budget allows right now.",
    );
    sample(
        out,
        RETRY_BUDGET,
        &[],
        state.retry_budget.available() as f64,
    );
    if let Some(shared) = &state.shared_limits {
        gauge(
            out,
            LIMITS_REDIS_UP,
            "1 while the shared limits' Redis answers; 0 while admissions follow limits.on_redis_down.",
        );
        sample(
            out,
            LIMITS_REDIS_UP,
            &[],
            f64::from(u8::from(shared.health().is_up())),
        );
        gauge(
            out,
            LIMITS_REPLICAS,
            "Gateway replicas alive in Redis at the last heartbeat: the local fallback divides each limit by it.",
        );
        sample(out, LIMITS_REPLICAS, &[], f64::from(shared.replicas()));
    }
    let ledger = state.ledger.stats();
    for (name, help, value) in [
        (
            LEDGER_WRITTEN,
            "Ledger records (usage and refusals) stored.",
            &ledger.written,
        ),
        (
            LEDGER_DEAD_LETTERS,
            "Ledger records the store refused, kept in the dead-letter table with the reason.",
            &ledger.dead_lettered,
        ),
        (
            LEDGER_WRITE_FAILURES,
            "Failed ledger write attempts (each was retried or split).",
            &ledger.failed_writes,
        ),
        (
            LEDGER_UNWRITTEN,
            "Ledger records printed to stderr because they could not be stored before the shutdown deadline.",
            &ledger.unwritten,
        ),
    ] {
        counter(out, name, help);
        sample(out, name, &[], value.load(Ordering::Relaxed) as f64);
    }
    gauge(
        out,
        SLO_OBJECTIVE,
        "The SLA's objectives as ratios by tier: availability (good share), errors_5xx and throttled (most allowed).",
    );
    for (tier, limits) in &state.config.tiers {
        let availability = f64::from(limits.slo_availability_bp) / 10_000.0;
        for (objective, value) in [
            ("availability", availability),
            ("errors_5xx", MAX_5XX_PPM as f64 / 1e6),
            ("throttled", MAX_THROTTLED_PPM as f64 / 1e6),
        ] {
            let labels = [("tier", tier.as_str()), ("objective", objective)];
            sample(out, SLO_OBJECTIVE, &labels, value);
        }
    }
    gauge(
        out,
        BUILD_INFO,
        "Always 1: the running build's version and commit.",
    );
    sample(
        out,
        BUILD_INFO,
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", env!("SWITCHYARD_COMMIT")),
        ],
        1.0,
    );
    process(out);
}

/// The standard `process_*` metrics (what every Prometheus client library exports), read from
/// the operating system at scrape time. Where the platform cannot tell, a metric is absent.
fn process(out: &mut String) {
    let p = metrics_process::collector::collect();
    let as_f64 = |v: Option<u64>| v.map_or(f64::NAN, |v| v as f64);
    counter(
        out,
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
    );
    sample(
        out,
        "process_cpu_seconds_total",
        &[],
        p.cpu_seconds_total.unwrap_or(f64::NAN),
    );
    for (name, help, value) in [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_memory_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_memory_bytes,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds,
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
        (
            "process_threads",
            "Number of OS threads in the process.",
            p.threads,
        ),
    ] {
        gauge(out, name, help);
        sample(out, name, &[], as_f64(value));
    }
}
