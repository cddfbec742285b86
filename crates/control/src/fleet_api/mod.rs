//! The registration API, under `/fleet/v1` on the gateway's own listener: how workers run by
//! `switchyard agent` join the fleet, hold their place by heartbeat, drain and leave.
//!
//! - Every route takes `Authorization: Bearer <token>`: a per-agent token made through the admin
//!   API (`/admin/v1/agent-tokens`: scoped to providers, models, regions and a maximum price;
//!   it acts only on the workers it registered, which carry its id as the label
//!   `switchyard.agent`), or the operator's shared fleet token (any worker). Both are secrets
//!   distinct from the admin token: agents run on rented machines, and a leaked agent token
//!   must not open the tenants and keys. Compared as SHA-256 digests; missing, wrong or
//!   revoked is 401.
//! - A registration holds a lease of `fleet.lease_ms`; heartbeats renew it, and workers whose
//!   lease ran out leave the fleet. Registrations, leases and drains live in the shared store
//!   and reach every gateway on it ([`crate::fleet_sync`]), so an agent may speak to any
//!   replica behind a load balancer. Requests already on a removed worker finish: they hold
//!   the worker, not the registry.
//! - A worker from the config file can be seen here but not replaced, drained or removed:
//!   the file is the operator's word (409).
//! - Errors are [`GatewayError`]s, in the same OpenAI shape as everything else.

mod auth;
mod drain;
mod heartbeat;
mod identity;
mod registration;
pub mod view;
mod worker;
mod workers;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use switchyard_fleet::FleetError;

use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

/// Labels under this prefix are the gateway's to set; a registration may not carry them.
pub const RESERVED_LABEL_PREFIX: &str = "switchyard.";
/// The per-agent token that registered a worker (absent: the operator's fleet token).
pub const AGENT_LABEL: &str = "switchyard.agent";

/// The registration routes, to be merged into the gateway's router before its state is set.
pub fn router() -> Router<Arc<ControlState>> {
    Router::new()
        .route("/fleet/v1/workers", post(workers::register))
        .route(
            "/fleet/v1/workers/{name}",
            get(worker::show).delete(worker::remove),
        )
        .route(
            "/fleet/v1/workers/{name}/heartbeat",
            post(heartbeat::heartbeat),
        )
        .route("/fleet/v1/workers/{name}/drain", post(drain::drain))
}

/// A fleet failure as the registration API reports it.
fn fleet_error(e: FleetError) -> GatewayError {
    match e {
        FleetError::UnknownWorker(name) => not_registered(&name),
        FleetError::StaticName(name) => static_worker(&name),
        FleetError::InvalidWorker(message) => GatewayError::InvalidRequest {
            message,
            param: None,
        },
        FleetError::DuplicateName(name) => {
            GatewayError::Conflict(format!("A worker named '{name}' already exists."))
        }
    }
}

/// 404 tells an agent to register again (its lease ran out, or the gateway restarted).
fn not_registered(name: &str) -> GatewayError {
    GatewayError::NotFound(format!(
        "Worker '{name}' is not registered (its lease may have run out); register it again."
    ))
}

fn static_worker(name: &str) -> GatewayError {
    GatewayError::Conflict(format!(
        "Worker '{name}' is declared in the gateway's config file; the registration API cannot change it."
    ))
}
