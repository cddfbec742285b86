//! What a worker's failure means: a transport error or a 5xx is the worker's (retryable,
//! counts against its health); a 429 or 503 means the worker is busy (retryable, not a health
//! failure); any other 4xx is the client's, relayed as the worker said it.
//!
//! Worker names and runtime internals (stack traces, file paths) go to the log, never to the
//! client: the client learns what kind of failure it was.

use http::Response;
use hyper::body::Incoming;
use serde_json::Value;

use crate::error::GatewayError;

/// Timeouts are ours (deadlines around the call), so a transport error is a connection that
/// could not be made or broke.
pub fn transport(worker: &str, e: &hyper_util::client::legacy::Error) -> GatewayError {
    if switchyard_fleet::hop::local_exhaustion(e) {
        // Not the worker's fault, and another worker would fare no better: no ejection, no
        // retry; the client may try again shortly.
        tracing::error!(worker, error = %e, source = ?std::error::Error::source(e), "the gateway is out of file descriptors or socket memory: a worker call could not be made");
        return GatewayError::Unavailable(
            "The gateway has no room for another connection to a worker right now.".into(),
        );
    }
    tracing::warn!(worker, error = %e, source = ?std::error::Error::source(e), "worker transport error");
    if e.is_connect() {
        GatewayError::UpstreamFailed("could not connect to a worker".into())
    } else {
        GatewayError::UpstreamFailed("the connection to the worker failed".into())
    }
}

/// Reads an error response (at most 64 KiB of it) and classifies it.
pub async fn rejection(worker: &str, response: Response<Incoming>) -> GatewayError {
    const MAX_ERROR_BODY: usize = 64 * 1024;
    let status = response.status();
    // An error body larger than the limit is not read at all; the status still classifies it.
    let body = super::client::read_body(response.into_body(), MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    let body = &body[..];
    let json: Option<Value> = serde_json::from_slice(body).ok();
    // OpenAI `{"error":{"message":..}}`, TGI `{"error":"..","error_type":..}`, FastAPI `{"detail":..}`.
    let detail = json
        .as_ref()
        .and_then(|j| j.get("error").or_else(|| j.get("detail")));
    let message = match detail {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| Value::Object(o.clone()).to_string()),
        Some(other) => other.to_string(),
        None if body.is_empty() => status.canonical_reason().unwrap_or("error").to_string(),
        None => String::from_utf8_lossy(body).into_owned(),
    };
    let field = |name: &str| {
        detail
            .and_then(|d| d.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let code = status.as_u16();
    if code == 429 || code == 503 {
        tracing::info!(worker, %status, %message, "worker busy");
        return GatewayError::UpstreamOverloaded;
    }
    if status.is_server_error() || code == 408 {
        tracing::warn!(worker, %status, %message, "worker error");
        return GatewayError::UpstreamFailed(format!("the worker answered {status}"));
    }
    GatewayError::UpstreamRejected {
        status: code,
        message,
        kind: field("type").unwrap_or_else(|| "invalid_request_error".into()),
        param: field("param"),
        code: field("code"),
    }
}
