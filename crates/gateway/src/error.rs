//! The gateway's one error type, and the one place it becomes an HTTP response.
//!
//! Every failure on the request path is a [`GatewayError`]. Each knows its origin (the client,
//! policy, an upstream worker, or the gateway itself), its status, and whether trying another
//! worker is safe. `IntoResponse` turns it into the OpenAI error shape; [`GatewayError::body`]
//! gives the same JSON for the SSE error event that ends a stream broken mid-way.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use switchyard_protocol::{ErrorBody, InvalidRequest};

/// Where a failure came from. A client's or policy's error never counts against a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Policy,
    Upstream,
    Internal,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error("Request body is {size} bytes or more; the limit is {limit} bytes.")]
    BodyTooLarge { size: u64, limit: usize },
    /// The client sent its body too slowly (`[server] body_timeout_ms`, `body_min_bytes_per_s`).
    #[error("{0}")]
    BodyTimeout(String),
    /// Refused at the door: too many connections from this client, or in all.
    #[error("Too many connections {}. Close some and try again.", if *per_client { "from your address" } else { "to this gateway" })]
    TooManyConnections { per_client: bool },
    #[error("You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.")]
    MissingApiKey,
    #[error("Incorrect API key provided.")]
    InvalidApiKey,
    #[error("This API key has been revoked.")]
    KeyRevoked,
    #[error("This API key has expired.")]
    KeyExpired,
    #[error("{0}")]
    Forbidden(String),
    /// A content filter refused the request (input) or ended the answer (output).
    #[error("{0}")]
    ContentFilter(String),
    /// A dependency the answer needs (the state store) cannot be reached now; the message
    /// says which.
    #[error("{0}")]
    Unavailable(String),
    /// The moderation endpoint could not judge the request and the policy is fail-closed.
    #[error("The content filter cannot check requests right now. Try again shortly.")]
    ModerationUnavailable,
    /// A limit refused the request; `retry_after` is `None` when waiting will not help.
    #[error("{message}")]
    RateLimited {
        message: String,
        code: &'static str,
        retry_after: Option<u64>,
    },
    #[error("Insufficient credit: this request may cost up to {needed}, and {balance} is available. Add credit to continue.")]
    InsufficientCredit { balance: String, needed: String },
    #[error("{message}")]
    PromptTooLong { message: String },
    #[error("Invalid admin token.")]
    AdminUnauthorized,
    /// The registration API refused a missing, wrong or revoked token.
    #[error("Missing, invalid or revoked agent token. Send it as 'Authorization: Bearer TOKEN' (an agent token from the admin API, or the fleet token).")]
    FleetUnauthorized,
    /// An admin API resource (tenant, key) that does not exist; the message names it.
    #[error("{0}")]
    NotFound(String),
    /// An admin API change that clashes with what exists (a duplicate tenant id).
    #[error("{0}")]
    Conflict(String),
    #[error("The model '{0}' does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("Unknown route: {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("Method {method} is not allowed on {path}.")]
    MethodNotAllowed { method: String, path: String },
    #[error("No healthy worker is serving model '{0}' right now. Try again shortly.")]
    NoHealthyWorker(String),
    #[error("The upstream worker did not answer in time ({0}).")]
    UpstreamTimeout(String),
    #[error("The upstream worker failed: {0}")]
    UpstreamFailed(String),
    #[error("Every worker for this model is busy. Try again shortly.")]
    UpstreamOverloaded,
    /// Load shedding: the fleet was saturated and this request's place went to others.
    #[error("The service is at capacity and shed this request ({0}). Try again shortly.")]
    Shed(&'static str),
    /// A worker refused the request as the client's fault (4xx). Relayed as the worker said it.
    #[error("{message}")]
    UpstreamRejected {
        status: u16,
        message: String,
        kind: String,
        param: Option<String>,
        code: Option<String>,
    },
    #[error("The gateway is shutting down.")]
    ShuttingDown,
    /// The shared limits (Redis) cannot be reached and `[limits] on_redis_down = "reject"`.
    #[error("Rate limits cannot be checked right now. Try again in {retry_after} s.")]
    LimitsUnavailable { retry_after: u64 },
    #[error("Internal error: {0}")]
    Internal(String),
}

impl From<InvalidRequest> for GatewayError {
    fn from(e: InvalidRequest) -> Self {
        GatewayError::InvalidRequest {
            message: e.message,
            param: e.param,
        }
    }
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::InvalidRequest { .. } | GatewayError::ContentFilter(_) => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::TooManyConnections { per_client: true } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::TooManyConnections { per_client: false } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::MissingApiKey
            | GatewayError::InvalidApiKey
            | GatewayError::KeyRevoked
            | GatewayError::KeyExpired
            | GatewayError::AdminUnauthorized
            | GatewayError::FleetUnauthorized => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::InsufficientCredit { .. } => StatusCode::PAYMENT_REQUIRED,
            GatewayError::PromptTooLong { .. } => StatusCode::BAD_REQUEST,
            GatewayError::ModelNotFound(_)
            | GatewayError::RouteNotFound { .. }
            | GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::Conflict(_) => StatusCode::CONFLICT,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::NoHealthyWorker(_)
            | GatewayError::ShuttingDown
            | GatewayError::UpstreamOverloaded
            | GatewayError::Shed(_)
            | GatewayError::LimitsUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::UpstreamFailed(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamRejected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::ModerationUnavailable | GatewayError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    pub fn origin(&self) -> Origin {
        match self {
            GatewayError::InvalidRequest { .. }
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::BodyTimeout(_)
            | GatewayError::MissingApiKey
            | GatewayError::InvalidApiKey
            | GatewayError::KeyRevoked
            | GatewayError::KeyExpired
            | GatewayError::AdminUnauthorized
            | GatewayError::FleetUnauthorized
            | GatewayError::NotFound(_)
            | GatewayError::Conflict(_)
            | GatewayError::ModelNotFound(_)
            | GatewayError::RouteNotFound { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::PromptTooLong { .. }
            | GatewayError::ContentFilter(_)
            | GatewayError::UpstreamRejected { .. } => Origin::Client,
            GatewayError::TooManyConnections { .. } => Origin::Policy,
            GatewayError::NoHealthyWorker(_)
            | GatewayError::ShuttingDown
            | GatewayError::Shed(_)
            | GatewayError::Forbidden(_)
            | GatewayError::RateLimited { .. }
            | GatewayError::InsufficientCredit { .. } => Origin::Policy,
            GatewayError::UpstreamTimeout(_)
            | GatewayError::UpstreamFailed(_)
            | GatewayError::UpstreamOverloaded => Origin::Upstream,
            GatewayError::Internal(_)
            | GatewayError::LimitsUnavailable { .. }
            | GatewayError::ModerationUnavailable
            | GatewayError::Unavailable(_) => Origin::Internal,
        }
    }

    /// Whether the same request may be sent to another worker: only for worker failures that
    /// happened before anything reached the client (the caller guarantees the latter).
    pub fn is_retryable(&self) -> bool {
        self.origin() == Origin::Upstream
    }

    /// OpenAI's `type` field.
    fn kind(&self) -> &str {
        match self {
            GatewayError::InvalidRequest { .. }
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::BodyTimeout(_)
            | GatewayError::MissingApiKey
            | GatewayError::InvalidApiKey
            | GatewayError::KeyRevoked
            | GatewayError::KeyExpired
            | GatewayError::AdminUnauthorized
            | GatewayError::FleetUnauthorized
            | GatewayError::NotFound(_)
            | GatewayError::Conflict(_)
            | GatewayError::ModelNotFound(_)
            | GatewayError::RouteNotFound { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::PromptTooLong { .. }
            | GatewayError::ContentFilter(_) => "invalid_request_error",
            GatewayError::TooManyConnections { .. } => "rate_limit_error",
            GatewayError::Forbidden(_) => "permission_error",
            GatewayError::RateLimited { .. } => "rate_limit_error",
            GatewayError::InsufficientCredit { .. } => "insufficient_quota",
            GatewayError::UpstreamRejected { kind, .. } => kind,
            GatewayError::NoHealthyWorker(_)
            | GatewayError::UpstreamTimeout(_)
            | GatewayError::UpstreamFailed(_)
            | GatewayError::UpstreamOverloaded
            | GatewayError::Shed(_)
            | GatewayError::ShuttingDown => "upstream_error",
            GatewayError::Internal(_)
            | GatewayError::LimitsUnavailable { .. }
            | GatewayError::ModerationUnavailable
            | GatewayError::Unavailable(_) => "server_error",
        }
    }

    /// OpenAI's `code` field.
    fn code(&self) -> Option<&str> {
        Some(match self {
            GatewayError::InvalidRequest { .. } => return None,
            GatewayError::BodyTooLarge { .. } => "request_too_large",
            GatewayError::BodyTimeout(_) => "request_timeout",
            GatewayError::TooManyConnections { .. } => "too_many_connections",
            GatewayError::MissingApiKey => "missing_api_key",
            GatewayError::InvalidApiKey => "invalid_api_key",
            GatewayError::KeyRevoked => "api_key_revoked",
            GatewayError::KeyExpired => "api_key_expired",
            GatewayError::AdminUnauthorized => "invalid_admin_token",
            GatewayError::FleetUnauthorized => "invalid_fleet_token",
            GatewayError::NotFound(_) => "not_found",
            GatewayError::Conflict(_) => "conflict",
            GatewayError::Forbidden(_) => "permission_denied",
            GatewayError::ContentFilter(_) => "content_filter",
            GatewayError::RateLimited { code, .. } => code,
            GatewayError::InsufficientCredit { .. } => "insufficient_credit",
            GatewayError::PromptTooLong { .. } => "context_length_exceeded",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::RouteNotFound { .. } => "unknown_url",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::NoHealthyWorker(_) => "no_healthy_worker",
            GatewayError::UpstreamTimeout(_) => "upstream_timeout",
            GatewayError::UpstreamFailed(_) => "upstream_failed",
            GatewayError::UpstreamOverloaded => "upstream_overloaded",
            GatewayError::Shed(_) => "overloaded_shed",
            GatewayError::UpstreamRejected { code, .. } => return code.as_deref(),
            GatewayError::ShuttingDown => "shutting_down",
            GatewayError::LimitsUnavailable { .. } => "limits_unavailable",
            GatewayError::Internal(_) => "internal_error",
            GatewayError::ModerationUnavailable => "moderation_unavailable",
            GatewayError::Unavailable(_) => "temporarily_unavailable",
        })
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidRequest { param, .. }
            | GatewayError::UpstreamRejected { param, .. } => param.as_deref(),
            GatewayError::ModelNotFound(_) => Some("model"),
            GatewayError::PromptTooLong { .. } => Some("messages"),
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(
            self.to_string(),
            self.kind(),
            self.param().map(str::to_string),
            self.code().map(str::to_string),
        )
    }

    /// Seconds a client should wait before trying again, where waiting helps.
    fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::NoHealthyWorker(_)
            | GatewayError::ShuttingDown
            | GatewayError::UpstreamOverloaded => Some(1),
            GatewayError::Shed(_) => Some(2),
            GatewayError::TooManyConnections { .. } => Some(1),
            GatewayError::RateLimited { retry_after, .. } => *retry_after,
            GatewayError::LimitsUnavailable { retry_after } => Some(*retry_after),
            GatewayError::ModerationUnavailable | GatewayError::Unavailable(_) => Some(2),
            _ => None,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), self.body().to_json()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_follow_openai() {
        let cases = [
            (GatewayError::InvalidApiKey, 401, "invalid_api_key"),
            (
                GatewayError::ModelNotFound("x".into()),
                404,
                "model_not_found",
            ),
            (
                GatewayError::BodyTooLarge { size: 9, limit: 8 },
                413,
                "request_too_large",
            ),
            (
                GatewayError::NoHealthyWorker("x".into()),
                503,
                "no_healthy_worker",
            ),
            (
                GatewayError::UpstreamTimeout("x".into()),
                504,
                "upstream_timeout",
            ),
            (
                GatewayError::BodyTimeout("x".into()),
                408,
                "request_timeout",
            ),
            (
                GatewayError::TooManyConnections { per_client: true },
                429,
                "too_many_connections",
            ),
            (
                GatewayError::TooManyConnections { per_client: false },
                503,
                "too_many_connections",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status);
            assert_eq!(err.body().error.code.as_deref(), Some(code));
        }
    }

    #[test]
    fn only_worker_failures_are_retried() {
        assert!(GatewayError::UpstreamFailed("x".into()).is_retryable());
        assert!(GatewayError::UpstreamTimeout("x".into()).is_retryable());
        assert!(!GatewayError::InvalidApiKey.is_retryable());
        let rejected = GatewayError::UpstreamRejected {
            status: 400,
            message: "too long".into(),
            kind: "invalid_request_error".into(),
            param: None,
            code: None,
        };
        assert!(!rejected.is_retryable());
        assert_eq!(rejected.origin(), Origin::Client);
    }
}
