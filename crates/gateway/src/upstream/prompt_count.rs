//! Prompt token counts from a worker's own tokenizer, for runtimes whose streams carry no
//! usage. llama-cpp-python's server sends none in streams (it ignores `include_usage`) but has
//! `/extras/tokenize/count`; the count of the prompt rendered in the model's chat format equals
//! the `prompt_tokens` it reports for the same request unstreamed.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_fleet::{RuntimeKind, WorkerSpec};
use switchyard_protocol::{Endpoint, InferenceRequest};

use super::prompt;

/// A count is cheap next to generation, but it must never hold a request up for long.
const COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether this worker's streams need a separate prompt count.
pub fn needed(req: &InferenceRequest, worker: &WorkerSpec) -> bool {
    req.stream && worker.runtime == RuntimeKind::Llamacpp
}

/// The prompt's token count, or `None` if the worker could not say (the caller falls back to
/// an estimate and marks it as such).
pub async fn count(
    client: &reqwest::Client,
    req: &InferenceRequest,
    worker: &WorkerSpec,
) -> Option<u64> {
    let text = match req.endpoint {
        Endpoint::Chat => prompt::render_chat(req, worker.prompt_format),
        Endpoint::Completions => prompt::completion_text(req).ok()?,
    };
    let mut call = client
        .post(worker.endpoint("/extras/tokenize/count"))
        .timeout(COUNT_TIMEOUT)
        .json(&json!({ "input": text, "model": worker.upstream_model() }));
    if let Some(key) = &worker.api_key {
        call = call.bearer_auth(key);
    }
    let response = call.send().await.ok()?.error_for_status().ok()?;
    let body: Value = response.json().await.ok()?;
    body.get("count").and_then(Value::as_u64)
}
