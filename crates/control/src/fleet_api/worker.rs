//! `GET /fleet/v1/workers/{name}` (its state, what it is serving, its lease) and
//! `DELETE /fleet/v1/workers/{name}` (it leaves the fleet).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::auth::FleetAgent;
use super::view::{RemovedView, WorkerView};
use super::{fleet_error, not_registered};
use crate::admin::extract::Id;
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

pub async fn show(
    agent: FleetAgent,
    State(state): State<Arc<ControlState>>,
    Id(name): Id,
) -> Result<Json<WorkerView>, GatewayError> {
    let worker = state
        .fleet_sync
        .known(&name)
        .await
        .ok_or_else(|| not_registered(&name))?;
    agent.may_act_on(&worker)?;
    Ok(Json(WorkerView::of(&worker)))
}

/// Requests still on the worker finish (they hold it); `outstanding` says how many there were
/// on this gateway. Removed from the shared store too: every gateway drops it.
pub async fn remove(
    agent: FleetAgent,
    State(state): State<Arc<ControlState>>,
    Id(name): Id,
) -> Result<Json<RemovedView>, GatewayError> {
    agent.in_step(&state.fleet_sync)?;
    if let Some(worker) = state.fleet_sync.known(&name).await {
        agent.may_act_on(&worker)?;
    }
    let outstanding = state.fleet_sync.remove(&name).await.map_err(fleet_error)?;
    Ok(Json(RemovedView {
        name,
        removed: true,
        outstanding,
    }))
}
