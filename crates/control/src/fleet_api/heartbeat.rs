//! `POST /fleet/v1/workers/{name}/heartbeat`: renews a registered worker's lease. 404 means
//! the gateway no longer knows the worker (lease ran out, gateway restarted): register again.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;

use super::auth::FleetAgent;
use super::fleet_error;
use super::view::LeaseView;
use crate::admin::extract::Id;
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

pub async fn heartbeat(
    _: FleetAgent,
    State(state): State<Arc<ControlState>>,
    Id(name): Id,
) -> Result<Json<LeaseView>, GatewayError> {
    let settings = state.config.fleet_settings();
    let worker = state
        .fleet
        .heartbeat(&name, Duration::from_millis(settings.lease_ms))
        .map_err(fleet_error)?;
    Ok(Json(LeaseView {
        name: worker.spec.name.clone(),
        lease_ms: settings.lease_ms,
        heartbeat_ms: settings.heartbeat_ms,
        state: worker.state(),
    }))
}
