//! Endpoints that are not generation: health and model listing (as vLLM and TGI answer
//! them) and the simulator's own control plane under `/sim/` for tests and chaos runs
//! driven from another process.

use crate::config::FaultConfig;
use crate::state::SimState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

/// Shown as `owned_by`, so nobody mistakes the simulator for a real model.
pub(crate) const OWNED_BY: &str = "switchyard-sim (simulated worker)";

/// vLLM answers 200 with an empty body; `{}` keeps JSON clients happy too.
pub(crate) async fn health(State(st): State<Arc<SimState>>) -> Json<Value> {
    st.counters.health_check();
    Json(json!({}))
}

pub(crate) async fn models(State(st): State<Arc<SimState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": st.cfg.model,
            "object": "model",
            "created": st.created,
            "owned_by": OWNED_BY,
            "root": st.cfg.model,
            "parent": null,
            "max_model_len": st.cfg.kv_capacity_tokens,
        }],
    }))
}

/// A subset of TGI's `GET /info`, enough for an adapter to learn the model id and limits.
pub(crate) async fn info(State(st): State<Arc<SimState>>) -> Json<Value> {
    Json(json!({
        "model_id": st.cfg.model,
        "model_sha": null,
        "model_pipeline_tag": "text-generation",
        "max_total_tokens": st.cfg.kv_capacity_tokens,
        "max_concurrent_requests": st.cfg.max_queue,
        "router": "switchyard-sim",
        "version": env!("CARGO_PKG_VERSION"),
        "sha": null,
        "docker_label": "switchyard-sim (simulated worker)",
    }))
}

pub(crate) async fn stats(State(st): State<Arc<SimState>>) -> Json<crate::SimStats> {
    Json(st.counters.snapshot())
}

pub(crate) async fn get_faults(State(st): State<Arc<SimState>>) -> Json<FaultConfig> {
    Json(st.faults())
}

/// Replaces the fault settings; missing fields take their defaults (faults off).
pub(crate) async fn put_faults(State(st): State<Arc<SimState>>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice::<FaultConfig>(&body)
        .map_err(|e| e.to_string())
        .and_then(|f| f.validate().map(|()| f));
    match parsed {
        Ok(f) => {
            st.set_faults(f.clone());
            Json(f).into_response()
        }
        Err(msg) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": msg, "type": "invalid_request_error", "param": null, "code": null}})),
        )
            .into_response(),
    }
}

pub(crate) async fn last_request(State(st): State<Arc<SimState>>) -> Json<Value> {
    Json(st.last_request())
}
