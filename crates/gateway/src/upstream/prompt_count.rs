//! Prompt token counts from a worker's own tokenizer, for runtimes whose streams carry no
//! usage. llama-cpp-python's server sends none in streams (it ignores `include_usage`) but has
//! `/extras/tokenize/count`; the count of the prompt rendered in the model's chat format equals
//! the `prompt_tokens` it reports for the same request unstreamed.
//!
//! The count is asked for only once the stream has ended: llama-cpp-python serves one request
//! at a time and, by default, a new request interrupts the running one, so counting alongside
//! the generation would delay or cut it. The future built here is lazy; the relay polls it when
//! it reaches the end of the stream, with a deadline.

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};
use switchyard_fleet::WorkerSpec;

/// A lazy count of `text` (the prompt as the worker will tokenize it) by the worker's
/// tokenizer at `path`; the future yields `None` if the worker cannot say.
pub fn count(
    client: &reqwest::Client,
    text: String,
    worker: &WorkerSpec,
    path: &str,
) -> BoxFuture<'static, Option<u64>> {
    let mut call = client
        .post(worker.endpoint(path))
        .json(&json!({ "input": text, "model": worker.upstream_model() }));
    if let Some(key) = &worker.api_key {
        call = call.bearer_auth(key);
    }
    async move {
        let response = call.send().await.ok()?.error_for_status().ok()?;
        let body: Value = response.json().await.ok()?;
        body.get("count").and_then(Value::as_u64)
    }
    .boxed()
}
