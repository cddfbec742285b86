//! Resuming a stream that broke mid-way on another worker.
//!
//! Once a stream's first token has reached the client it cannot be retried from scratch: the
//! client has the beginning. But a preemptible GPU that dies mid-answer need not end the
//! answer. The gateway knows the text it has relayed, so it asks another worker to go on from
//! there — the same request, with that text as a final, partial assistant message and
//! `continue_final_message` (vLLM and SGLang), or appended to the prompt (completions) — and
//! relays the new worker's tokens into the same client stream, under the same id. The client
//! sees a pause, not an error.
//!
//! Only where it is faithful: one choice (`n = 1`), no tools, no logprobs, a plain-text prompt;
//! at most `upstream.max_resumes` times per stream, each within the retry budget. Usage is
//! merged: the tokens relayed before plus the new worker's completion, its prompt minus that
//! text (an estimate, marked as such in the ledger).

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{json, Value};
use switchyard_fleet::{Worker, WorkerLease, WorkerSpec};
use switchyard_protocol::{Endpoint, InferenceRequest};

use super::relay::Upstream;
use crate::error::GatewayError;
use crate::route::RouteCtx;
use crate::state::AppState;

/// Added to a resumed stream's queue priority: above any tier's availability SLO in basis
/// points (at most 10,000).
const RESUME_PRIORITY: u32 = 10_000;

/// Whether a stream of `req` on `worker` could be resumed elsewhere if it broke.
pub fn resumable(state: &AppState, req: &InferenceRequest, worker: &WorkerSpec) -> bool {
    let body = &req.body;
    let caps = super::adapter::for_runtime(worker.runtime).capabilities();
    let set = |k: &str| {
        body.get(k)
            .is_some_and(|v| !v.is_null() && v != &json!(false))
    };
    state.config.upstream.max_resumes > 0
        && crate::route::adaptive(state)
        && req.stream
        && req.n == 1
        && !set("tools")
        && !set("functions")
        && !set("logprobs")
        && !set("echo")
        && match req.endpoint {
            Endpoint::Chat => caps.continues_chat,
            Endpoint::Completions => {
                caps.continues_completion && body.get("prompt").is_some_and(Value::is_string)
            }
        }
}

/// What a relay needs to resume its stream.
pub struct Resume {
    state: Arc<AppState>,
    req: InferenceRequest,
    route: RouteCtx,
    request_id: String,
    tried: Vec<Arc<Worker>>,
    left: u32,
}

impl Resume {
    pub fn new(
        state: Arc<AppState>,
        req: InferenceRequest,
        route: RouteCtx,
        request_id: String,
        first_worker: Arc<Worker>,
    ) -> Self {
        let left = state.config.upstream.max_resumes;
        Self {
            state,
            req,
            route,
            request_id,
            tried: vec![first_worker],
            left,
        }
    }

    /// A future that finds another worker and opens the continuation of the stream after
    /// `text` (`tokens` of it relayed); `None` when resuming is spent or not allowed now.
    pub fn continuation(
        &mut self,
        text: &str,
        tokens: u64,
    ) -> Option<BoxFuture<'static, Result<(Upstream, WorkerLease), GatewayError>>> {
        if self.left == 0 || !self.state.retry_budget.try_withdraw() {
            return None;
        }
        self.left -= 1;
        let req = continue_after(&self.req, text, tokens)?;
        let state = self.state.clone();
        // A started answer outranks every request not yet started: in a saturated fleet's
        // queue it goes first, and may wait twice as long (the client already has text and
        // is waiting for the rest; a fresh request can still go elsewhere).
        let mut route = self.route.clone();
        route.priority.slo_bp = route.priority.slo_bp.saturating_add(RESUME_PRIORITY);
        route.queue_for *= 2;
        let tried = self.tried.clone();
        let request_id = self.request_id.clone();
        tracing::warn!(
            request_id,
            tokens,
            "stream broke mid-way; resuming on another worker"
        );
        Some(Box::pin(async move {
            let deadline = tokio::time::Instant::now() + route.queue_for;
            let lease = crate::route::retry(&state, &route, &tried, deadline).await?;
            let upstream = super::open_stream(&state, &req, &request_id, lease.worker()).await?;
            crate::metrics::retry(&req.model, crate::metrics::Retry::Resume);
            Ok((upstream, lease))
        }))
    }

    /// The worker a continuation went to, so a second resumption avoids it too.
    pub fn tried(&mut self, worker: &Arc<Worker>) {
        self.tried.push(worker.clone());
    }
}

/// The request that goes on after `text`, with the completion budget left.
fn continue_after(req: &InferenceRequest, text: &str, tokens: u64) -> Option<InferenceRequest> {
    let mut body = req.body.clone();
    let max = req.max_tokens.map(u64::from);
    if let Some(max) = max {
        let left = max.saturating_sub(tokens).max(1);
        body.remove("max_completion_tokens");
        body.insert("max_tokens".into(), json!(left));
    }
    match req.endpoint {
        Endpoint::Chat => {
            let Some(Value::Array(messages)) = body.get_mut("messages") else {
                return None;
            };
            messages.push(json!({"role": "assistant", "content": text}));
            body.insert("continue_final_message".into(), json!(true));
            body.insert("add_generation_prompt".into(), json!(false));
        }
        Endpoint::Completions => {
            let prompt = body.get("prompt")?.as_str()?.to_string();
            body.insert("prompt".into(), json!(prompt + text));
        }
    }
    InferenceRequest::from_map(req.endpoint, body).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_continuation_carries_the_text_and_the_budget_left() {
        let body = json!({"model": "m", "stream": true, "max_tokens": 20,
            "messages": [{"role": "user", "content": "count"}]});
        let req =
            InferenceRequest::from_map(Endpoint::Chat, body.as_object().unwrap().clone()).unwrap();
        let next = continue_after(&req, "one two", 2).unwrap();
        assert_eq!(next.body["max_tokens"], 18);
        assert_eq!(
            next.body["messages"][1],
            json!({"role": "assistant", "content": "one two"})
        );
        assert_eq!(next.body["continue_final_message"], true);
        assert_eq!(next.body["add_generation_prompt"], false);
        assert_eq!(next.max_tokens, Some(18));
    }

    #[test]
    fn a_completion_continuation_extends_the_prompt() {
        let body =
            json!({"model": "m", "stream": true, "prompt": "Once", "max_completion_tokens": 5});
        let req =
            InferenceRequest::from_map(Endpoint::Completions, body.as_object().unwrap().clone())
                .unwrap();
        let next = continue_after(&req, " upon a", 2).unwrap();
        assert_eq!(next.body["prompt"], "Once upon a");
        assert_eq!(next.body["max_tokens"], 3);
        assert!(next.body.get("max_completion_tokens").is_none());
    }
}
