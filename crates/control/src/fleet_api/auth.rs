//! Proof that a registration API request carries the fleet token.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::state::ControlState;
use crate::token::{surface_off, verify, Verdict};
use switchyard_gateway::auth::bearer;
use switchyard_gateway::error::GatewayError;

/// An agent holding the fleet token. Without a configured token the registration API does
/// not exist: every route answers 404, as an unknown route would.
pub struct FleetAgent;

impl FromRequestParts<Arc<ControlState>> for FleetAgent {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ControlState>,
    ) -> Result<Self, Self::Rejection> {
        match verify(state.fleet_token.as_ref(), bearer(&parts.headers)) {
            Verdict::Accepted => Ok(FleetAgent),
            Verdict::Refused => Err(GatewayError::FleetUnauthorized),
            Verdict::Off => Err(surface_off(parts)),
        }
    }
}
