//! Step "upstream" of the request path: send the request to the chosen worker through the
//! adapter for its runtime, and try another worker when one fails before the first byte has
//! reached the client. After that point a failure can only end the stream (see [`relay`]).

pub mod account;
mod classify;
pub mod client;
mod frames;
pub mod openai;
mod prompt;
mod prompt_count;
pub mod relay;
pub mod tgi;
mod translate;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use switchyard_fleet::{WireApi, Worker, WorkerLease};
use switchyard_protocol::{InferenceRequest, Usage};

use crate::error::GatewayError;
use crate::settle::Settlement;
use crate::state::AppState;
use relay::Relay;

/// A non-streamed answer larger than this is refused rather than held in memory. Generous: a
/// long completion with logprobs for every token is a few MB.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// A worker's answer, ready for the client.
pub enum Reply {
    Full {
        /// The response body as JSON text.
        body: Bytes,
        usage: Usage,
        estimated: bool,
    },
    /// The first frame is in hand (so the stream is committed); the relay carries the rest.
    Stream { first: Bytes, relay: Box<Relay> },
}

/// Tries up to `max_attempts` workers, never the same one twice, until one answers.
pub async fn forward(
    state: &AppState,
    req: &InferenceRequest,
    request_id: &str,
    settlement: &mut Settlement,
) -> Result<(Reply, WorkerLease), GatewayError> {
    let mut tried: Vec<Arc<Worker>> = Vec::new();
    let mut last_error = None;
    for _ in 0..state.config.upstream.max_attempts {
        let Some(lease) = crate::route::choose(state, req, &tried) else {
            break;
        };
        let worker = lease.worker().clone();
        settlement.attempt(&worker);
        match attempt(state, req, request_id, &worker).await {
            Ok(reply) => return Ok((reply, lease)),
            Err(e) if e.is_retryable() => {
                tracing::warn!(request_id, worker = %worker.spec.name, error = %e, "attempt failed; trying another worker");
                // A busy worker is not a broken one: it stays in rotation.
                if !matches!(e, GatewayError::UpstreamOverloaded) {
                    worker.record_failure(state.config.upstream.eject_after_failures);
                }
                tried.push(worker);
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| GatewayError::NoHealthyWorker(req.model.clone())))
}

async fn attempt(
    state: &AppState,
    req: &InferenceRequest,
    request_id: &str,
    worker: &Worker,
) -> Result<Reply, GatewayError> {
    let spec = &worker.spec;
    let api = spec.runtime.wire_api();
    let (path, body) = match api {
        WireApi::OpenAi => (
            req.endpoint.path(),
            Value::Object(openai::request_body(req, spec)),
        ),
        WireApi::TgiNative => (tgi::path(req), tgi::request_body(req, spec)?),
    };
    // Built now, polled only when the stream ends (see `prompt_count`).
    let prompt_count = match &body {
        Value::Object(map) if prompt_count::needed(req, spec) => {
            prompt_count::count(&state.client, req.endpoint, map, spec)
        }
        _ => None,
    };
    let body = serde_json::to_vec(&body).map_err(|e| GatewayError::Internal(e.to_string()))?;
    let uri = worker.uri(path).ok_or_else(|| {
        GatewayError::Internal(format!("worker '{}' has an invalid URL", spec.name))
    })?;
    let upstream = &state.config.upstream;
    let deadline = if req.stream {
        upstream.first_token_timeout_ms
    } else {
        upstream.request_timeout_ms
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(deadline);
    let call = state.upstream.post_json(spec, uri, request_id, body);
    let response = tokio::time::timeout_at(deadline, call)
        .await
        .map_err(|_| GatewayError::UpstreamTimeout("no response from the worker".into()))??;
    if !response.status().is_success() {
        return Err(classify::rejection(&spec.name, response).await);
    }

    if !req.stream {
        let read = client::read_body(response.into_body(), MAX_RESPONSE_BYTES);
        let bytes = tokio::time::timeout_at(deadline, read)
            .await
            .map_err(|_| {
                GatewayError::UpstreamTimeout(format!(
                    "worker '{}' did not finish in time",
                    spec.name
                ))
            })?
            .map_err(|e| {
                tracing::warn!(worker = %spec.name, error = %e, "reading the worker's response failed");
                GatewayError::UpstreamFailed("the worker's response could not be read".into())
            })?;
        let (body, usage, estimated) = match api {
            WireApi::OpenAi => openai::complete(req, &bytes)?,
            WireApi::TgiNative => tgi::complete(req, &bytes)?,
        };
        worker.record_success();
        return Ok(Reply::Full {
            body,
            usage,
            estimated,
        });
    }

    let translator: Box<dyn translate::StreamTranslator> = match api {
        WireApi::OpenAi => Box::new(openai::OpenAiStream::new(req)),
        WireApi::TgiNative => Box::new(tgi::TgiStream::new(req)),
    };
    let mut relay = Relay::new(
        http_body_util::BodyDataStream::new(response.into_body()).boxed(),
        translator,
        prompt_count,
        Duration::from_millis(upstream.stall_timeout_ms),
        upstream.eject_after_failures,
    );
    let first = tokio::time::timeout_at(deadline, relay.first_frame())
        .await
        .map_err(|_| {
            GatewayError::UpstreamTimeout("no first token from the worker in time".into())
        })??;
    Ok(Reply::Stream {
        first,
        relay: Box::new(relay),
    })
}
