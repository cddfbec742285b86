//! Health checks of the gateway process itself (for load balancers and orchestrators; not the
//! synthetic probes of workers): `/healthz` (the process answers) and `/readyz` (at least one
//! worker is healthy, so requests can succeed, and the gateway is not shutting down).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Value>) {
    let workers = state.fleet.workers();
    let healthy = workers.iter().filter(|w| w.is_healthy()).count();
    // Once shutdown has begun, a load balancer must send elsewhere, whatever the workers say.
    let draining = state.shutting_down.load(Ordering::Acquire);
    let status = if healthy > 0 && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "healthy_workers": healthy,
            "workers": workers.len(),
            "draining": draining,
        })),
    )
}
