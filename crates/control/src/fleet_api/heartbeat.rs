//! `POST /fleet/v1/workers/{name}/heartbeat`: renews a registered worker's lease, in the
//! shared store and here; a worker registered through another gateway is loaded from the store.
//! 404 means no gateway knows the worker any more (lease ran out, removed): register again.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::auth::FleetAgent;
use super::fleet_error;
use super::view::LeaseView;
use crate::admin::extract::Id;
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

pub async fn heartbeat(
    agent: FleetAgent,
    State(state): State<Arc<ControlState>>,
    Id(name): Id,
) -> Result<Json<LeaseView>, GatewayError> {
    agent.in_step(&state.fleet_sync)?;
    if let Some(worker) = state.fleet_sync.known(&name).await {
        agent.may_act_on(&worker)?;
    }
    let settings = state.config.fleet_settings();
    let worker = state
        .fleet_sync
        .heartbeat(&name)
        .await
        .map_err(fleet_error)?;
    Ok(Json(LeaseView {
        name: worker.spec.name.clone(),
        lease_ms: settings.lease_ms,
        heartbeat_ms: settings.heartbeat_ms,
        state: worker.state(),
    }))
}
