//! Shadow traffic: a copy of a request sent to the model's canary pool, its answer measured
//! (TTFT/TTLT histograms with `arm="shadow"`) and discarded. The copy never delays or changes
//! the client's own request, is not billed, and is dropped when no canary worker is free (a
//! shadow must never queue behind, or take capacity from, live traffic).

use std::sync::Arc;
use std::time::Instant;

use switchyard_fleet::{Pick, Pool, Query};
use switchyard_protocol::InferenceRequest;

use crate::state::AppState;

/// Sends a copy of `req` to the canary pool if the model's shadow share says so.
pub fn maybe_spawn(state: &Arc<AppState>, req: &InferenceRequest) {
    if !state.canaries.shadow(&req.model) {
        return;
    }
    let state = state.clone();
    let req = req.clone();
    tokio::spawn(async move {
        let query = Query {
            pool: Pool::Canary,
            ..Query::new(&req.model, "shadow")
        };
        let Pick::Worker(lease) = state.fleet.pick(&query) else {
            tracing::debug!(model = %req.model, "no canary worker free; shadow copy dropped");
            return;
        };
        let id = uuid::Uuid::new_v4().to_string();
        let began = Instant::now();
        let result = match crate::upstream::attempt(&state, &req, &id, lease.worker()).await {
            Ok(reply) => crate::upstream::consume::consume(reply, began).await,
            Err(e) => Err(e.to_string()),
        };
        let total = began.elapsed();
        match &result {
            Ok(ttft) => crate::metrics::shadow_finished(&req.model, true, *ttft, total),
            Err(e) => {
                tracing::info!(model = %req.model, worker = %lease.worker().spec.name, error = %e, "shadow request failed");
                crate::metrics::shadow_finished(&req.model, false, None, total);
            }
        }
    });
}
