//! Step "route": which worker gets the request. Today: the least-loaded healthy worker of the
//! model. Routing policies (tier, region, cost, stickiness) extend this one function.

use std::sync::Arc;

use switchyard_fleet::{Worker, WorkerLease};
use switchyard_protocol::InferenceRequest;

use crate::state::AppState;

pub fn choose(
    state: &AppState,
    req: &InferenceRequest,
    tried: &[Arc<Worker>],
) -> Option<WorkerLease> {
    state.fleet.pick(&req.model, tried)
}
