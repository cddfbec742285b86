//! HTTP handlers: the routes of the OpenAI API, `/metrics`, and the process health checks
//! (`/healthz`, `/readyz`).

pub mod health;
pub mod inference;
pub mod metrics;
pub mod models;

use axum::extract::Request;
use axum::http::Method;

use crate::error::GatewayError;

/// Unknown routes get the OpenAI error shape too, not an empty 404.
pub async fn not_found(request: Request) -> GatewayError {
    GatewayError::RouteNotFound {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
    }
}

pub async fn method_not_allowed(method: Method, request: Request) -> GatewayError {
    GatewayError::MethodNotAllowed {
        method: method.to_string(),
        path: request.uri().path().to_string(),
    }
}
