//! Who is calling the registration API: the operator's shared fleet token (any worker), or a
//! per-agent token from the store (the workers it registered, within its scope). Both are
//! compared as SHA-256 digests; a per-agent token is looked up on every request, so a
//! revocation through any replica holds on the next one.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use switchyard_fleet::Worker;
use switchyard_metering::keys::hash_secret;
use switchyard_metering::store::AgentToken;

use super::AGENT_LABEL;
use crate::state::ControlState;
use crate::token::{verify, Verdict};
use switchyard_gateway::auth::bearer;
use switchyard_gateway::error::GatewayError;

pub enum FleetAgent {
    /// The shared `SWITCHYARD_FLEET_TOKEN`: the operator's own agents, any worker.
    Operator,
    /// A per-agent token: registers within its scope, and acts only on its own workers.
    Scoped(Box<AgentToken>),
}

impl FleetAgent {
    /// The token id recorded on what this agent registers.
    pub fn id(&self) -> Option<&str> {
        match self {
            FleetAgent::Operator => None,
            FleetAgent::Scoped(t) => Some(&t.id),
        }
    }

    /// A per-agent token acts only where ownership can be shown: while this replica has
    /// changes the store has not taken (it is unreachable), its view of who registered what may
    /// be behind, so a scoped agent waits (503) rather than act on a stale view. The operator's
    /// token is not held back.
    pub fn in_step(&self, sync: &crate::fleet_sync::FleetSync) -> Result<(), GatewayError> {
        match self {
            FleetAgent::Operator => Ok(()),
            FleetAgent::Scoped(_) if sync.in_step_with_store() => Ok(()),
            FleetAgent::Scoped(_) => Err(GatewayError::Unavailable(
                "The fleet store cannot be reached; an agent token's workers cannot be changed until it is back. Retry shortly.".into(),
            )),
        }
    }

    /// Refuses acting on a worker another agent registered. The operator's token may act on
    /// any; a worker registered with the operator's token belongs to no per-agent token.
    pub fn may_act_on(&self, worker: &Worker) -> Result<(), GatewayError> {
        match self {
            FleetAgent::Operator => Ok(()),
            FleetAgent::Scoped(t) if worker.labels.get(AGENT_LABEL) == Some(&t.id) => Ok(()),
            FleetAgent::Scoped(_) => Err(GatewayError::Forbidden(format!(
                "Worker '{}' was registered by another agent; this token may act only on its own workers.",
                worker.spec.name
            ))),
        }
    }
}

impl FromRequestParts<Arc<ControlState>> for FleetAgent {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ControlState>,
    ) -> Result<Self, Self::Rejection> {
        let presented = bearer(&parts.headers);
        if verify(state.fleet_token.as_ref(), presented) == Verdict::Accepted {
            return Ok(FleetAgent::Operator);
        }
        let Some(presented) = presented else {
            return Err(GatewayError::FleetUnauthorized);
        };
        let found = state
            .directory
            .store()
            .agent_token_by_hash(&hash_secret(presented))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot look up an agent token");
                GatewayError::Unavailable(
                    "The state store cannot be reached, so agent tokens cannot be checked now; retry shortly.".into(),
                )
            })?;
        match found {
            Some(token) if token.revoked_at_ms.is_none() => Ok(FleetAgent::Scoped(Box::new(token))),
            Some(token) => {
                tracing::warn!(agent_token = %token.id, "a revoked agent token was presented");
                Err(GatewayError::FleetUnauthorized)
            }
            None => Err(GatewayError::FleetUnauthorized),
        }
    }
}
