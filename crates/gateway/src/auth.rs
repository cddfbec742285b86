//! Step 2 of the request path: who is calling. Keys are kept only as SHA-256 digests; a
//! presented key is hashed and looked up, so the comparison never touches the secret itself
//! and its timing does not depend on how much of a stored key matched.

use std::collections::HashMap;

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

use crate::error::GatewayError;

/// Who a request is from. Grows tenant, tier and scopes with the tenancy work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_name: String,
}

#[derive(Debug, Default)]
pub struct KeyRing {
    by_digest: HashMap<[u8; 32], Principal>,
}

impl KeyRing {
    pub fn add(&mut self, name: &str, secret: &str) {
        self.by_digest.insert(
            digest(secret),
            Principal {
                key_name: name.to_string(),
            },
        );
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<&Principal, GatewayError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(GatewayError::MissingApiKey)?;
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(GatewayError::MissingApiKey)?;
        self.by_digest
            .get(&digest(key))
            .ok_or(GatewayError::InvalidApiKey)
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[test]
    fn known_unknown_and_missing_keys() {
        let mut ring = KeyRing::default();
        ring.add("dev", "sk-dev-0123456789abcdef");
        assert_eq!(
            ring.authenticate(&headers("Bearer sk-dev-0123456789abcdef"))
                .unwrap()
                .key_name,
            "dev"
        );
        assert!(matches!(
            ring.authenticate(&headers("Bearer sk-dev-0123456789abcdeX")),
            Err(GatewayError::InvalidApiKey)
        ));
        assert!(matches!(
            ring.authenticate(&headers("Basic abc")),
            Err(GatewayError::MissingApiKey)
        ));
        assert!(matches!(
            ring.authenticate(&HeaderMap::new()),
            Err(GatewayError::MissingApiKey)
        ));
    }
}
