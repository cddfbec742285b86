//! Resuming a stream that broke mid-way on another worker: whether a stream can be, and the
//! request that goes on from its text. Finding the worker is `crate::dispatch::resume`'s.
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

use serde_json::{json, Value};
use switchyard_fleet::WorkerSpec;
use switchyard_protocol::{Endpoint, InferenceRequest};

use crate::state::AppState;

/// Whether a stream of `req` on `worker` could be resumed elsewhere if it broke.
pub fn resumable(state: &AppState, req: &InferenceRequest, worker: &WorkerSpec) -> bool {
    let body = &req.body;
    let caps = super::adapter::for_runtime(worker.runtime).capabilities();
    let set = |k: &str| {
        body.get(k)
            .is_some_and(|v| !v.is_null() && v != &json!(false))
    };
    state.config.upstream.max_resumes > 0
        && state.config.routing.adaptive()
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

/// The request that goes on after `text`, with the completion budget left.
pub(crate) fn continue_after(
    req: &InferenceRequest,
    text: &str,
    tokens: u64,
) -> Option<InferenceRequest> {
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
