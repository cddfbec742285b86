//! `POST /fleet/v1/workers/{name}/drain`: the agent is about to stop its worker. The worker
//! gets no new requests; those it is serving finish. The agent then polls
//! `GET /fleet/v1/workers/{name}` until `outstanding` is 0, and deletes the registration. The
//! drain is recorded in the shared store: no gateway sends the worker anything new.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use switchyard_fleet::{DrainTarget, FleetError, WorkerSource};

use super::auth::FleetAgent;
use super::view::DrainingView;
use super::{fleet_error, not_registered};
use crate::admin::extract::Id;
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

pub async fn drain(
    agent: FleetAgent,
    State(state): State<Arc<ControlState>>,
    Id(name): Id,
) -> Result<Json<DrainingView>, GatewayError> {
    if let Some(w) = state.fleet.worker(&name) {
        if w.source == WorkerSource::Static {
            return Err(fleet_error(FleetError::StaticName(name)));
        }
    }
    let worker = state
        .fleet_sync
        .known(&name)
        .await
        .ok_or_else(|| not_registered(&name))?;
    agent.in_step(&state.fleet_sync)?;
    agent.may_act_on(&worker)?;
    let target = DrainTarget::Worker(name.clone());
    state
        .fleet_sync
        .drain(
            &target,
            true,
            "draining: its agent is shutting down",
            &[&name],
        )
        .await;
    Ok(Json(DrainingView {
        name: worker.spec.name.clone(),
        state: worker.state(),
        outstanding: worker.outstanding(),
    }))
}
