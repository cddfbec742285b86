//! What admin handlers take from a request, each failing as a [`GatewayError`] (the OpenAI
//! error shape) rather than axum's plain-text rejections.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::state::ControlState;
use crate::token::{surface_off, verify, Verdict};
use switchyard_gateway::auth::bearer;
use switchyard_gateway::error::GatewayError;

/// Admin request bodies are small; this is far above any of them.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Proof that the request carries the admin token. Without a configured token the admin API
/// does not exist: every admin route answers 404, as an unknown route would.
pub struct Admin;

impl FromRequestParts<Arc<ControlState>> for Admin {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ControlState>,
    ) -> Result<Self, Self::Rejection> {
        match verify(state.admin_token.as_ref(), bearer(&parts.headers)) {
            Verdict::Accepted => Ok(Admin),
            Verdict::Refused => Err(GatewayError::AdminUnauthorized),
            Verdict::Off => Err(surface_off(parts)),
        }
    }
}

/// A JSON body; an empty body is `T::default()` only through [`OptionalJson`].
pub struct AdminJson<T>(pub T);

async fn read_json<T: DeserializeOwned>(
    req: Request,
    empty: impl FnOnce() -> Option<T>,
) -> Result<T, GatewayError> {
    let (parts, body) = req.into_parts();
    let bytes =
        switchyard_gateway::body::read_limited(&parts.headers, body, MAX_ADMIN_BODY).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        if let Some(v) = empty() {
            return Ok(v);
        }
        return Err(GatewayError::InvalidRequest {
            message: "This request needs a JSON body.".into(),
            param: None,
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| GatewayError::InvalidRequest {
        message: format!("Invalid JSON body: {e}"),
        param: None,
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AdminJson<T> {
    type Rejection = GatewayError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, || None).await.map(AdminJson)
    }
}

/// A JSON body that may be left out.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = GatewayError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, || Some(T::default()))
            .await
            .map(OptionalJson)
    }
}

/// The one path parameter of a route (`{id}`, `{tenant}`).
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Id(id))
            .map_err(|e| GatewayError::InvalidRequest {
                message: format!("Invalid path: {e}"),
                param: None,
            })
    }
}

/// Query parameters. An unknown one is refused with its name, so a typo (`?tennant=`) is not
/// silently a report over every tenant.
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|Query(map)| Params(map))
            .map_err(|e| GatewayError::InvalidRequest {
                message: format!("Invalid query string: {e}"),
                param: None,
            })
    }
}

impl Params {
    /// Refuses any parameter not in `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<(), GatewayError> {
        let mut unknown: Vec<&str> = self
            .0
            .keys()
            .map(String::as_str)
            .filter(|k| !allowed.contains(k))
            .collect();
        unknown.sort_unstable();
        match unknown.first() {
            None => Ok(()),
            Some(first) => Err(GatewayError::InvalidRequest {
                message: format!(
                    "Unknown query parameter '{first}'; this endpoint takes: {}.",
                    allowed.join(", ")
                ),
                param: Some((*first).to_string()),
            }),
        }
    }

    /// A parameter's value; an empty value (`?tenant=`) counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// One of `choices` (the first is the default).
    pub fn choice(
        &self,
        name: &str,
        choices: &[&'static str],
    ) -> Result<&'static str, GatewayError> {
        match self.get(name) {
            None => Ok(choices.first().copied().unwrap_or_default()),
            Some(v) => choices.iter().copied().find(|c| *c == v).ok_or_else(|| {
                GatewayError::InvalidRequest {
                    message: format!(
                        "Invalid '{name}': '{v}'; expected one of: {}.",
                        choices.join(", ")
                    ),
                    param: Some(name.to_string()),
                }
            }),
        }
    }
}
