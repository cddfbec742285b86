//! The gauges read from this gateway's own state when `/metrics` is scraped: each worker's
//! state, outstanding requests, ejections in a row and TTFT average, and the retry budget.
//! Reading them here costs nothing per request and cannot go stale: a worker that left the
//! fleet is simply not listed.

use switchyard_fleet::WorkerState;

use super::exposition::{gauge, sample};
use super::{RETRY_BUDGET, WORKER_EJECTIONS, WORKER_OUTSTANDING, WORKER_STATE, WORKER_TTFT_EWMA};
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
}
