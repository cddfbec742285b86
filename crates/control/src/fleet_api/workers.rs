//! `POST /fleet/v1/workers`: a worker joins the fleet, or renews its registration.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::Value;

use super::auth::FleetAgent;
use super::fleet_error;
use super::registration::Registration;
use super::view::RegisteredView;
use crate::admin::extract::AdminJson;
use crate::fleet_sync::Registered;
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

/// The same registration again (an agent that restarted, or lost a heartbeat's answer) renews
/// the lease and keeps the worker's breaker and figures; changed labels replace the worker.
/// A new worker starts unready and joins rotation on its first passing health check. Written
/// to the shared store first: every gateway on it learns of the worker.
pub async fn register(
    _: FleetAgent,
    State(state): State<Arc<ControlState>>,
    AdminJson(body): AdminJson<Value>,
) -> Result<Json<RegisteredView>, GatewayError> {
    let Registration { spec, labels } = Registration::parse(body)?;
    let settings = state.config.fleet_settings();
    let Registered { worker, new } = state
        .fleet_sync
        .register(spec, labels)
        .await
        .map_err(fleet_error)?;
    Ok(Json(RegisteredView {
        name: worker.spec.name.clone(),
        new,
        lease_ms: settings.lease_ms,
        heartbeat_ms: settings.heartbeat_ms,
        state: worker.state(),
    }))
}
