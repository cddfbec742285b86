//! Step "route": which worker gets the request. The fleet's adaptive choice (expected wait,
//! other providers first on retry), or the naive round-robin baseline kept for comparison.

use std::sync::Arc;

use switchyard_fleet::{Worker, WorkerLease};
use switchyard_protocol::InferenceRequest;

use crate::config::RoutingPolicy;
use crate::state::AppState;

pub fn choose(
    state: &AppState,
    req: &InferenceRequest,
    tried: &[Arc<Worker>],
) -> Option<WorkerLease> {
    match state.config.routing.policy {
        RoutingPolicy::Adaptive => state.fleet.pick(&req.model, tried),
        RoutingPolicy::RoundRobin if tried.is_empty() => state.fleet.pick_round_robin(&req.model),
        RoutingPolicy::RoundRobin => None,
    }
}

/// Whether this policy retries, hedges and ejects on live traffic.
pub fn adaptive(state: &AppState) -> bool {
    state.config.routing.policy == RoutingPolicy::Adaptive
}
