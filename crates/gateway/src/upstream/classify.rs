//! What a worker's failure means: a transport error or a 5xx/429 is the worker's (retryable,
//! counts against its health); any other 4xx is the client's, relayed as the worker said it.

use serde_json::Value;

use crate::error::GatewayError;

pub fn transport(worker: &str, e: reqwest::Error) -> GatewayError {
    if e.is_timeout() {
        GatewayError::UpstreamTimeout(format!("worker '{worker}' timed out"))
    } else if e.is_connect() {
        GatewayError::UpstreamFailed(format!("cannot connect to worker '{worker}'"))
    } else {
        GatewayError::UpstreamFailed(format!("worker '{worker}': {e}"))
    }
}

/// Reads an error response (bounded) and classifies it.
pub async fn rejection(worker: &str, response: reqwest::Response) -> GatewayError {
    const MAX_ERROR_BODY: usize = 64 * 1024;
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let body = &body[..body.len().min(MAX_ERROR_BODY)];
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
    if status.is_server_error() || code == 408 || code == 429 {
        return GatewayError::UpstreamFailed(format!(
            "worker '{worker}' answered {status}: {message}"
        ));
    }
    GatewayError::UpstreamRejected {
        status: code,
        message,
        kind: field("type").unwrap_or_else(|| "invalid_request_error".into()),
        param: field("param"),
        code: field("code"),
    }
}
