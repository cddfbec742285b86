//! The one error type of the request path, and its two wire shapes: OpenAI's
//! `{"error":{"message","type","param","code"}}` and TGI's `{"error","error_type"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Which API family the failing request came from; decides the error's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Tgi,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SimError {
    /// Malformed request (bad JSON, missing or wrong-typed field).
    #[error("{message}")]
    Invalid {
        message: String,
        param: Option<&'static str>,
    },
    #[error("The model `{0}` does not exist.")]
    ModelNotFound(String),
    /// The request can never fit in the KV cache (vLLM's context-length error).
    #[error(
        "This model's maximum context length is {capacity} tokens. However, you requested \
         {need} tokens ({prompt} in the messages, {completion} in the completion). Please \
         reduce the length of the messages or completion."
    )]
    ContextTooLong {
        need: u64,
        capacity: u64,
        prompt: u32,
        completion: u64,
    },
    /// The worker will not take the request now: refuse fault, queue full, queue timeout.
    #[error("{message}")]
    Unavailable {
        message: &'static str,
        code: &'static str,
    },
    /// Injected internal failure.
    #[error("simulated internal server error (switchyard-sim fault injection)")]
    Internal,
}

impl SimError {
    pub(crate) fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Self {
        SimError::Invalid {
            message: message.into(),
            param,
        }
    }

    fn status(&self, dialect: Dialect) -> StatusCode {
        match (self, dialect) {
            // TGI validates with 422, OpenAI-style servers with 400.
            (SimError::Invalid { .. } | SimError::ContextTooLong { .. }, Dialect::Tgi) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            (SimError::Invalid { .. } | SimError::ContextTooLong { .. }, Dialect::OpenAi) => {
                StatusCode::BAD_REQUEST
            }
            (SimError::ModelNotFound(_), _) => StatusCode::NOT_FOUND,
            (SimError::Unavailable { .. }, _) => StatusCode::SERVICE_UNAVAILABLE,
            (SimError::Internal, _) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OpenAI-shaped error body.
    pub(crate) fn openai_body(&self) -> serde_json::Value {
        let (kind, param, code) = match self {
            SimError::Invalid { param, .. } => ("invalid_request_error", *param, None),
            SimError::ModelNotFound(_) => (
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            ),
            SimError::ContextTooLong { .. } => (
                "invalid_request_error",
                Some("messages"),
                Some("context_length_exceeded"),
            ),
            SimError::Unavailable { code, .. } => ("server_error", None, Some(*code)),
            SimError::Internal => ("server_error", None, Some("internal_error")),
        };
        json!({"error": {"message": self.to_string(), "type": kind, "param": param, "code": code}})
    }

    /// The TGI-shaped error body (also used as an SSE error event by TGI streams).
    pub(crate) fn tgi_body(&self) -> serde_json::Value {
        let kind = match self {
            SimError::Invalid { .. } | SimError::ContextTooLong { .. } => "validation",
            SimError::ModelNotFound(_) => "not_found",
            SimError::Unavailable { .. } => "overloaded",
            SimError::Internal => "generation",
        };
        json!({"error": self.to_string(), "error_type": kind})
    }

    pub(crate) fn into_response(self, dialect: Dialect) -> Response {
        let status = self.status(dialect);
        let body = match dialect {
            Dialect::OpenAi => self.openai_body(),
            Dialect::Tgi => self.tgi_body(),
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Tell well-behaved clients when to come back, as overloaded servers do.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<crate::kv::KvError> for SimError {
    fn from(e: crate::kv::KvError) -> Self {
        match e {
            crate::kv::KvError::TooLarge { need, capacity } => SimError::ContextTooLong {
                need,
                capacity,
                prompt: 0,
                completion: need,
            },
            crate::kv::KvError::QueueFull => SimError::Unavailable {
                message: "switchyard-sim: KV cache full and request queue full; try again later",
                code: "queue_full",
            },
            crate::kv::KvError::Timeout => SimError::Unavailable {
                message: "switchyard-sim: timed out waiting for KV cache space",
                code: "queue_timeout",
            },
        }
    }
}
