//! The one check of a control-plane token (the admin token, the fleet token) against what a
//! request presents. Only SHA-256 digests are held and compared, in constant time. A surface
//! whose token is not configured does not exist: its routes answer 404, as unknown routes do.

use axum::http::request::Parts;
use switchyard_gateway::error::GatewayError;
use switchyard_metering::keys::{digests_equal, hash_secret};

/// What a presented token amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No token is configured: the surface is off.
    Off,
    Accepted,
    /// Missing or wrong.
    Refused,
}

pub fn verify(expected: Option<&[u8; 32]>, presented: Option<&str>) -> Verdict {
    match (expected, presented) {
        (None, _) => Verdict::Off,
        (Some(expected), Some(token)) if digests_equal(expected, &hash_secret(token)) => {
            Verdict::Accepted
        }
        (Some(_), _) => Verdict::Refused,
    }
}

/// The answer of a surface that is off: the same 404 as an unknown route.
pub fn surface_off(parts: &Parts) -> GatewayError {
    GatewayError::RouteNotFound {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_token_is_accepted() {
        let expected = hash_secret("sy-admin-0123456789abcdef");
        assert_eq!(verify(None, Some("anything")), Verdict::Off);
        assert_eq!(
            verify(Some(&expected), Some("sy-admin-0123456789abcdef")),
            Verdict::Accepted
        );
        assert_eq!(
            verify(Some(&expected), Some("sy-admin-0123456789abcdeX")),
            Verdict::Refused
        );
        assert_eq!(verify(Some(&expected), None), Verdict::Refused);
    }
}
