//! `POST /fleet/v1/workers`: a worker joins the fleet, or renews its registration.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::Value;

use super::auth::FleetAgent;
use super::fleet_error;
use super::registration::Registration;
use super::view::RegisteredView;
use super::{identity, AGENT_LABEL};
use crate::admin::extract::AdminJson;
use crate::fleet_sync::Registered;
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

/// The same registration again (an agent that restarted, or lost a heartbeat's answer) renews
/// the lease and keeps the worker's breaker and figures; changed labels replace the worker.
/// A new worker starts unready and joins rotation on its first passing health check. Written
/// to the shared store first: every gateway on it learns of the worker.
///
/// A per-agent token registers only within its scope (403 names what is outside it) and may
/// not take over a name another agent holds (409); what it registers carries its id.
pub async fn register(
    agent: FleetAgent,
    State(state): State<Arc<ControlState>>,
    AdminJson(body): AdminJson<Value>,
) -> Result<Json<RegisteredView>, GatewayError> {
    let Registration {
        mut spec,
        mut labels,
    } = Registration::parse(body)?;
    // Before the store: the stored registration says how its certificate is checked.
    let hops = state.fleet.hops();
    hops.settle_registered(&mut spec);
    if let Some(why) = hops.refuses(&spec) {
        return Err(GatewayError::InvalidRequest {
            message: format!("{why}."),
            param: Some("url".into()),
        });
    }
    if let FleetAgent::Scoped(token) = &agent {
        if let Some(why) = token.scope.refuses(
            &spec.provider,
            &spec.model,
            &spec.region,
            spec.price_per_hour,
        ) {
            return Err(GatewayError::Forbidden(format!("{why}.")));
        }
        labels.insert(AGENT_LABEL.to_string(), token.id.clone());
    }
    agent.in_step(&state.fleet_sync)?;
    if let Some(needs) = state.config.models.get(&spec.model) {
        identity::check(&spec.model, needs, &labels)?;
    }
    // A static worker's name is refused below, by the registry (the config file's word).
    let registered = state
        .fleet_sync
        .known(&spec.name)
        .await
        .filter(|w| w.source != switchyard_fleet::WorkerSource::Static);
    if let Some(existing) = registered {
        if existing.labels.get(AGENT_LABEL).map(String::as_str) != agent.id() {
            return Err(GatewayError::Conflict(format!(
                "A worker named '{}' is registered by another agent; choose another name.",
                spec.name
            )));
        }
        // Same name, another machine or other weights: not a renewal. Out it goes; a fresh
        // registration starts it over (health checks, breaker, figures).
        if let Some(label) = identity::changed(&existing.labels, &labels) {
            let _ = state.fleet_sync.remove(&spec.name).await;
            tracing::warn!(worker = %spec.name, label, "a worker's identity changed during its lease: taken out of the fleet");
            return Err(GatewayError::Conflict(format!(
                "Worker '{}' reported another {label} during its lease: it was taken out of the fleet; register it again.",
                spec.name
            )));
        }
    }
    let settings = state.config.fleet_settings();
    let Registered { worker, new } = state
        .fleet_sync
        .register(spec, labels)
        .await
        .map_err(fleet_error)?;
    if new {
        tracing::info!(
            worker = %worker.spec.name,
            url = %worker.spec.url,
            model = %worker.spec.model,
            provider = %worker.spec.provider,
            agent_token = agent.id().unwrap_or("fleet token"),
            "worker registered"
        );
    }
    Ok(Json(RegisteredView {
        name: worker.spec.name.clone(),
        new,
        lease_ms: settings.lease_ms,
        heartbeat_ms: settings.heartbeat_ms,
        state: worker.state(),
    }))
}
