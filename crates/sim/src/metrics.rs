//! `GET /metrics`: a few of vLLM's own gauges, under vLLM's names and from the simulator's
//! real state, so that whatever reads a real vLLM's metrics (the gateway's worker scraper)
//! can be tested end to end against the simulator.

use crate::state::SimState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) async fn metrics(State(st): State<Arc<SimState>>) -> Response {
    let stats = st.counters.snapshot();
    let waiting = st.counters.queued.load(Ordering::Relaxed);
    // Requests holding KV space: in flight and not waiting for it.
    let running = stats.in_flight.saturating_sub(waiting);
    let capacity = st.kv.capacity().max(1);
    let usage = st.kv.used() as f64 / capacity as f64;
    let model = st.cfg.model.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    for (name, kind, help, value) in [
        (
            "vllm:gpu_cache_usage_perc",
            "gauge",
            "GPU KV-cache usage. 1 means 100 percent usage.",
            usage,
        ),
        (
            "vllm:num_requests_running",
            "gauge",
            "Number of requests currently running on GPU.",
            running as f64,
        ),
        (
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            waiting as f64,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{{model_name=\"{model}\"}} {value}");
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        out,
    )
        .into_response()
}
