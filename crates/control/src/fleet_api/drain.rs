//! `POST /fleet/v1/workers/{name}/drain`: the agent is about to stop its worker. The worker
//! gets no new requests; those it is serving finish. The agent then polls
//! `GET /fleet/v1/workers/{name}` until `outstanding` is 0, and deletes the registration.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::auth::FleetAgent;
use super::registered;
use super::view::DrainingView;
use crate::admin::extract::Id;
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

pub async fn drain(
    _: FleetAgent,
    State(state): State<Arc<ControlState>>,
    Id(name): Id,
) -> Result<Json<DrainingView>, GatewayError> {
    let worker = registered(&state, &name)?;
    worker.set_draining(true, "draining: its agent is shutting down");
    Ok(Json(DrainingView {
        name: worker.spec.name.clone(),
        state: worker.state(),
        outstanding: worker.outstanding(),
    }))
}
