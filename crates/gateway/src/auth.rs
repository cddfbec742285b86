//! Step "auth": who is calling, and may they call this endpoint. Keys are looked up in the
//! directory by the SHA-256 of the presented secret (see `switchyard_metering::keys`).

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use switchyard_metering::directory::{unix_ms, AuthError, Directory, KeyEntry};

use crate::error::GatewayError;

/// The endpoint names scopes speak of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Chat,
    Completions,
    Models,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Chat => "chat",
            Scope::Completions => "completions",
            Scope::Models => "models",
        }
    }
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then_some(token)
}

pub fn authenticate(
    directory: &Directory,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<Arc<KeyEntry>, GatewayError> {
    let secret = bearer(headers).ok_or(GatewayError::MissingApiKey)?;
    let key = directory
        .authenticate(secret, unix_ms())
        .map_err(|e| match e {
            AuthError::Unknown => GatewayError::InvalidApiKey,
            AuthError::Revoked => GatewayError::KeyRevoked,
            AuthError::Expired => GatewayError::KeyExpired,
        })?;
    let endpoints = &key.key.scopes.endpoints;
    if !endpoints.is_empty() && !endpoints.iter().any(|e| e == scope.name()) {
        return Err(GatewayError::Forbidden(format!(
            "This API key may not use the {} endpoint.",
            scope.name()
        )));
    }
    Ok(key)
}

/// Whether the key and its tenant's tier may use `model`.
pub fn check_model(key: &KeyEntry, model: &str) -> Result<(), GatewayError> {
    let allowed = |list: &[String]| list.is_empty() || list.iter().any(|m| m == model);
    if !allowed(&key.key.scopes.models) {
        return Err(GatewayError::Forbidden(format!(
            "This API key may not use model '{model}'."
        )));
    }
    if !allowed(&key.limits.models) {
        return Err(GatewayError::Forbidden(format!(
            "Model '{model}' is not included in your tier ({}).",
            key.tenant.tenant.tier
        )));
    }
    Ok(())
}
