//! Step "upstream" of the request path: one attempt on one worker, through the adapter for its
//! runtime, up to its first frame; then the relay of the rest (see [`relay`]). Which workers
//! are tried, and when another one is, is `crate::dispatch`'s.

pub mod account;
pub mod adapter;
pub mod budget;
mod classify;
pub mod client;
pub mod collect;
pub mod consume;
mod edited_body;
mod frames;
pub mod openai;
mod openai_chunk;
mod prompt;
mod prompt_count;
pub mod relay;
pub mod resume;
pub mod tgi;
mod translate;
mod whole;

use crate::filter::FilterScope;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use switchyard_fleet::Worker;
use switchyard_protocol::InferenceRequest;

use crate::error::GatewayError;
use crate::state::AppState;
use relay::Relay;

/// A worker's answer as it starts: the first frame is in hand (so the worker is committed to),
/// the relay carries the rest. Every request reaches workers as a stream; an unstreamed one is
/// assembled from it for its client (see [`collect`]).
pub struct Reply {
    pub first: Bytes,
    pub relay: Box<Relay>,
}

pub async fn attempt(
    state: &AppState,
    req: &InferenceRequest,
    request_id: &str,
    worker: &Worker,
) -> Result<Reply, GatewayError> {
    attempt_with(state, req, request_id, worker, false, None, !req.stream).await
}

/// [`attempt`], keeping a stream's text for the content log when `capture` is set, watching
/// it with the output filters of `filters` (its tier and tenant), and `collected` when the
/// client asked for a whole answer
/// (the request path passes a streamed copy of its request, so `req` cannot say).
pub(crate) async fn attempt_with(
    state: &AppState,
    req: &InferenceRequest,
    request_id: &str,
    worker: &Worker,
    capture: bool,
    filters: Option<FilterScope<'_>>,
    collected: bool,
) -> Result<Reply, GatewayError> {
    // Always a stream upstream (see `collect`); callers on the request path pass one already.
    let streamed;
    let req = if req.stream {
        req
    } else {
        streamed = req.as_streamed();
        &streamed
    };
    let spec = &worker.spec;
    let adapter = adapter::for_runtime(spec.runtime);
    let call = adapter.request(req, spec)?;
    // Built now, polled only when the stream ends (see `prompt_count`).
    let prompt_count = match (call.prompt_to_count, adapter.capabilities().tokenize_path) {
        (Some(text), Some(path)) => Some(prompt_count::count(&worker.hop().http, text, spec, path)),
        _ => None,
    };
    let (path, body) = (call.path, call.body);
    let upstream = &state.config.upstream;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(upstream.first_token_timeout_ms);
    let response = send(worker, path, body, request_id, deadline).await?;
    // A worker that answers whole despite `stream: true`: its answer becomes the events a
    // stream of it would have been (see `whole`), with no first token seen before it.
    let whole = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| adapter.is_whole_answer(v));
    let events: relay::Upstream = if whole {
        let limit = Duration::from_millis(upstream.request_timeout_ms);
        let bytes = tokio::time::timeout(
            limit,
            client::read_body(response.into_body(), whole::MAX_WHOLE_ANSWER),
        )
        .await
        .map_err(|_| {
            GatewayError::UpstreamTimeout(format!("worker '{}' did not finish in time", spec.name))
        })?
        .map_err(|e| {
            tracing::warn!(worker = %spec.name, error = %e, "reading the worker's response failed");
            GatewayError::UpstreamFailed("the worker's response could not be read".into())
        })?;
        let events = adapter.whole_as_events(req.endpoint, &bytes)?;
        futures::stream::once(async move { Ok(events) }).boxed()
    } else {
        http_body_util::BodyDataStream::new(response.into_body()).boxed()
    };

    let translator = adapter.translator(req, whole);
    let mut relay = Relay::new(
        events,
        translator,
        prompt_count,
        Duration::from_millis(upstream.stall_timeout_ms),
        // The naive baseline never ejects on live traffic.
        if state.config.routing.adaptive() {
            upstream.eject_after_failures
        } else {
            u32::MAX
        },
    );
    relay.checkpoint_every(Duration::from_millis(state.config.state.checkpoint_ms));
    if whole {
        relay.no_first_token();
    }
    if collected {
        // Before the first frame: the first read may already end the answer (a filter match),
        // and how it ends depends on who reads it.
        relay.for_unstreamed_client();
    }
    if capture {
        relay.capture_content();
    }
    if let Some(scope) = filters {
        if let Some(watch) = state.filters.output_watch(scope) {
            relay.watch_output(watch, scope.tier);
        }
    }
    if resume::resumable(state, req, spec) {
        relay.keep_text_for_resume();
    }
    let first = tokio::time::timeout_at(deadline, relay.first_frame())
        .await
        .map_err(|_| {
            GatewayError::UpstreamTimeout("no first token from the worker in time".into())
        })??;
    Ok(Reply {
        first,
        relay: Box::new(relay),
    })
}

/// POSTs `body` to `path` on `worker` and returns the response once its status is a success;
/// a refusal comes back classified.
async fn send(
    worker: &Worker,
    path: &str,
    body: Vec<u8>,
    request_id: &str,
    deadline: tokio::time::Instant,
) -> Result<http::Response<hyper::body::Incoming>, GatewayError> {
    let spec = &worker.spec;
    let uri = worker.uri(path).ok_or_else(|| {
        GatewayError::Internal(format!("worker '{}' has an invalid URL", spec.name))
    })?;
    let call = client::post_json(worker, uri, request_id, body);
    let response = tokio::time::timeout_at(deadline, call)
        .await
        .map_err(|_| GatewayError::UpstreamTimeout("no response from the worker".into()))??;
    if !response.status().is_success() {
        return Err(classify::rejection(&spec.name, response).await);
    }
    Ok(response)
}

/// Opens a stream of raw SSE bytes on a worker (for a resumed stream, whose events the
/// original relay goes on translating: resumable runtimes speak the OpenAI API).
pub(crate) async fn open_stream(
    state: &AppState,
    req: &InferenceRequest,
    request_id: &str,
    worker: &Worker,
) -> Result<relay::Upstream, GatewayError> {
    let call = adapter::for_runtime(worker.spec.runtime).request(req, &worker.spec)?;
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(state.config.upstream.first_token_timeout_ms);
    let response = send(worker, call.path, call.body, request_id, deadline).await?;
    Ok(http_body_util::BodyDataStream::new(response.into_body()).boxed())
}
