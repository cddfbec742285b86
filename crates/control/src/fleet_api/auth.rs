//! Proof that a registration API request carries the fleet token.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use switchyard_metering::keys::{digests_equal, hash_secret};

use crate::state::ControlState;
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
        let Some(expected) = &state.fleet_token else {
            return Err(GatewayError::RouteNotFound {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
            });
        };
        let presented = bearer(&parts.headers).ok_or(GatewayError::FleetUnauthorized)?;
        // Compare digests, in constant time: the token itself is never compared.
        if digests_equal(expected, &hash_secret(presented)) {
            Ok(FleetAgent)
        } else {
            Err(GatewayError::FleetUnauthorized)
        }
    }
}
