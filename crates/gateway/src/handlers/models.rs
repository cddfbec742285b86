//! `GET /v1/models`: the models the fleet serves (a model is listed while any worker of it is
//! configured, healthy or not, so that clients' model lists do not flicker with worker health).

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use switchyard_protocol::response::{ModelCard, ModelList};

use crate::error::GatewayError;
use crate::state::AppState;

pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<ModelList>, GatewayError> {
    let key = crate::auth::authenticate(&state.directory, &headers, crate::auth::Scope::Models)?;
    let members = state.fleet.snapshot();
    let data = members
        .by_model
        .iter()
        .filter(|(model, _)| crate::auth::check_model(&key, model).is_ok())
        .map(|(model, workers)| {
            let model = model.as_str();
            let owners: Vec<&str> = workers.iter().map(|w| w.spec.provider.as_str()).collect();
            let simulated = workers
                .iter()
                .any(|w| w.spec.gpu == switchyard_config::SIMULATED_GPU);
            ModelCard {
                id: model.to_string(),
                object: "model",
                created: 0,
                owned_by: if simulated {
                    "switchyard-sim (simulated workers)".to_string()
                } else {
                    format!("switchyard ({})", dedup(owners).join(", "))
                },
            }
        })
        .collect();
    Ok(Json(ModelList {
        object: "list",
        data,
    }))
}

fn dedup(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v.dedup();
    v
}
