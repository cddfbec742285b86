//! Adapter for OpenAI-compatible runtimes (vLLM, SGLang, llama.cpp's server, TGI's Messages
//! API): the body goes through as the client sent it, with the model renamed and the runtime's
//! quirks absorbed; responses come back with the client's model name and a `usage` always set.

use serde_json::{json, Map, Value};
use switchyard_fleet::WorkerSpec;
use switchyard_protocol::{InferenceRequest, Reported};

use super::account::StreamAccount;
use super::adapter::openai_compatible::OpenAiCompatible;
use super::edited_body::EditedBody;
use super::frames::Frames;
use super::translate::{Flow, StreamTranslator};
use crate::error::GatewayError;

/// The body to send: the client's, with what this runtime needs changed.
pub fn request_body<'r>(
    req: &'r InferenceRequest,
    worker: &WorkerSpec,
    runtime: &OpenAiCompatible,
) -> EditedBody<'r> {
    let mut body = EditedBody::new(&req.body);
    body.set("model", Value::String(worker.upstream_model().to_string()));
    if runtime.plain_string_messages && req.endpoint == switchyard_protocol::Endpoint::Chat {
        // llama.cpp templates the chat itself from plain strings; see `prompt::chat_messages`.
        let messages = super::prompt::chat_messages(&req.body, worker.prompt_format);
        body.set("messages", Value::Array(messages));
    }
    if runtime.legacy_max_tokens {
        if let Some(v) = req.body.get("max_completion_tokens") {
            body.set("max_tokens", v.clone());
            body.remove("max_completion_tokens");
        }
    }
    if req.stream && runtime.capabilities.streams_usage {
        // Always ask for usage so that billing uses the runtime's count; the usage chunk is
        // dropped on the way back if the client did not ask for it.
        let mut options = match req.body.get("stream_options") {
            Some(Value::Object(o)) => o.clone(),
            _ => Map::new(),
        };
        options.insert("include_usage".into(), Value::Bool(true));
        body.set("stream_options", Value::Object(options));
    }
    body
}

/// Tokens a choice's chunk holds at four characters a token: its text, reasoning, refusal and
/// tool calls (names and arguments).
fn tokens_by_characters(choice: &Value) -> u64 {
    let chars = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map_or(0, |s| u64::try_from(s.chars().count()).unwrap_or(u64::MAX))
    };
    let delta = choice.get("delta");
    let mut total = chars(choice.get("text"));
    for key in ["content", "reasoning_content", "reasoning", "refusal"] {
        total = total.saturating_add(chars(delta.and_then(|d| d.get(key))));
    }
    if let Some(Value::Array(calls)) = delta.and_then(|d| d.get("tool_calls")) {
        for call in calls {
            total = total
                .saturating_add(chars(call.pointer("/function/name")))
                .saturating_add(chars(call.pointer("/function/arguments")));
        }
    }
    total.div_ceil(4)
}

/// Every text a chunk's choice carries that the output filter must see: the answer, reasoning,
/// a refusal, tool-call arguments.
fn watched_texts(choice: &Value) -> Vec<&str> {
    let mut texts: Vec<&str> = [
        "/delta/content",
        "/text",
        "/delta/reasoning_content",
        "/delta/reasoning",
        "/delta/refusal",
    ]
    .iter()
    .filter_map(|p| choice.pointer(p).and_then(Value::as_str))
    .collect();
    if let Some(Value::Array(calls)) = choice.pointer("/delta/tool_calls") {
        texts.extend(
            calls
                .iter()
                .filter_map(|c| c.pointer("/function/arguments").and_then(Value::as_str)),
        );
    }
    texts
}

/// Relays OpenAI chunks: renames the model, keeps count, and manages the usage chunk.
pub struct OpenAiStream {
    model: Value,
    client_wants_usage: bool,
    account: StreamAccount,
    usage_sent: bool,
    /// The last chunk's id and `created`, for a usage chunk we must make up ourselves.
    last_id: Value,
    last_created: Value,
    object: &'static str,
    /// Count generated tokens from characters, not chunks (see [`Self::count_by_characters`]).
    by_characters: bool,
}

impl OpenAiStream {
    pub fn new(req: &InferenceRequest) -> Self {
        Self {
            model: Value::String(req.model.clone()),
            client_wants_usage: req.include_usage,
            account: StreamAccount::new(req),
            usage_sent: false,
            last_id: Value::Null,
            last_created: Value::Null,
            object: match req.endpoint {
                switchyard_protocol::Endpoint::Chat => "chat.completion.chunk",
                switchyard_protocol::Endpoint::Completions => "text_completion",
            },
            by_characters: false,
        }
    }

    /// The worker answered whole (see `upstream::whole`): one chunk holds the whole answer, so
    /// the gateway's own count of it is its characters (text, reasoning, tool calls) at four a
    /// token, its usual estimate, rather than one token per chunk.
    pub fn count_by_characters(mut self) -> Self {
        self.by_characters = true;
        self
    }

    fn finish(&mut self, out: &mut Frames) {
        if self.client_wants_usage && !self.usage_sent {
            let usage = self.account.usage().usage;
            out.push_json(&json!({
                "id": self.last_id,
                "object": self.object,
                "created": self.last_created,
                "model": self.model,
                "choices": [],
                "usage": usage.to_value(),
            }));
            self.usage_sent = true;
        }
        out.push_done();
    }
}

impl StreamTranslator for OpenAiStream {
    fn on_event(&mut self, data: &str, out: &mut Frames) -> Result<Flow, GatewayError> {
        if data.trim() == "[DONE]" {
            // A runtime that aborts a generation (llama-cpp-python when another request
            // interrupts it) still sends [DONE]; without a finish_reason the answer is cut off
            // and must not reach the client as complete.
            if self.account.finish_reason.is_none() {
                return Err(GatewayError::UpstreamFailed(
                    "the worker ended the stream before the answer finished".into(),
                ));
            }
            self.finish(out);
            return Ok(Flow::Done);
        }
        let mut chunk: Value = serde_json::from_str(data).map_err(|e| {
            GatewayError::UpstreamFailed(format!("worker sent an invalid stream chunk: {e}"))
        })?;
        let Value::Object(obj) = &mut chunk else {
            return Err(GatewayError::UpstreamFailed(
                "worker sent a non-object stream chunk".into(),
            ));
        };
        if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| err.to_string());
            return Err(GatewayError::UpstreamFailed(message));
        }
        // One id for the whole stream, even when it was resumed on another worker.
        match (&self.last_id, obj.get("id")) {
            (Value::Null, Some(id)) => self.last_id = id.clone(),
            (Value::Null, None) => {}
            (first, _) => {
                obj.insert("id".into(), first.clone());
            }
        }
        if let Some(created) = obj.get("created") {
            self.last_created = created.clone();
        }
        let mut has_choices = false;
        if let Some(choices) = obj.get("choices").and_then(Value::as_array) {
            has_choices = !choices.is_empty();
            for c in choices {
                let text = c
                    .pointer("/delta/content")
                    .or_else(|| c.get("text"))
                    .and_then(Value::as_str);
                let has_tool_call = c.pointer("/delta/tool_calls").is_some_and(|t| !t.is_null());
                // Reasoning tokens are generated and billed like the answer's.
                let has_reasoning =
                    ["/delta/reasoning_content", "/delta/reasoning"]
                        .iter()
                        .any(|p| {
                            c.pointer(p)
                                .and_then(Value::as_str)
                                .is_some_and(|r| !r.is_empty())
                        });
                if self.by_characters {
                    self.account.content_chunks += tokens_by_characters(c);
                } else if text.is_some_and(|t| !t.is_empty()) || has_tool_call || has_reasoning {
                    self.account.content_chunks += 1;
                }
                if let Some(t) = text {
                    self.account.relayed(t);
                }
                if self.account.output_watch.is_some() {
                    let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                    for t in watched_texts(c) {
                        self.account.watch(index, t);
                    }
                }
                if let Some(reason) = c.get("finish_reason").and_then(Value::as_str) {
                    self.account.finish_reason = Some(reason.to_string());
                }
            }
        }
        let reported = Reported::from_field(obj.get("usage"));
        let has_usage = reported != Reported::Absent;
        if has_usage {
            self.account.reported = reported;
        }
        if !self.client_wants_usage {
            obj.remove("usage");
            if !has_choices && has_usage {
                return Ok(Flow::Continue); // the usage-only chunk we asked for, not the client
            }
        } else if has_usage {
            // The usage billed: total_tokens recomputed, a resumed stream's counts merged, a
            // report out of bounds replaced by our own count.
            obj.insert("usage".into(), self.account.usage().usage.to_value());
            self.usage_sent = true;
        }
        obj.insert("model".into(), self.model.clone());
        out.push_json(&chunk);
        Ok(Flow::Continue)
    }

    fn end_filtered(&mut self, out: &mut Frames, error: Option<&switchyard_protocol::ErrorBody>) {
        self.account.finish_reason = Some("content_filter".into());
        // The chunk taken back may have carried the usage: it is sent again below.
        self.usage_sent = false;
        let choice = match self.object {
            "text_completion" => json!({"index": 0, "text": "", "finish_reason": "content_filter"}),
            _ => json!({"index": 0, "delta": {}, "finish_reason": "content_filter"}),
        };
        out.push_json(&json!({
            "id": self.last_id,
            "object": self.object,
            "created": self.last_created,
            "model": self.model,
            "choices": [choice],
        }));
        if let Some(error) = error {
            out.push_error(error);
        }
        self.finish(out);
    }

    fn on_eof(&mut self, out: &mut Frames) -> Result<(), GatewayError> {
        // A stream that ended without [DONE] is complete only if it said how it finished.
        if self.account.finish_reason.is_some() {
            self.finish(out);
            Ok(())
        } else {
            Err(GatewayError::UpstreamFailed(
                "the worker closed the stream before it completed".into(),
            ))
        }
    }

    fn account(&self) -> &StreamAccount {
        &self.account
    }

    fn account_mut(&mut self) -> &mut StreamAccount {
        &mut self.account
    }

    fn set_counted_prompt(&mut self, tokens: Option<u64>) {
        self.account.counted_prompt = tokens;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use switchyard_protocol::Endpoint;

    fn req(body: Value) -> InferenceRequest {
        InferenceRequest::from_map(Endpoint::Chat, body.as_object().unwrap().clone()).unwrap()
    }

    fn frames_text(out: &mut Frames) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(f) = out.pop() {
            v.push(String::from_utf8(f.to_vec()).unwrap());
        }
        v
    }

    #[test]
    fn usage_chunk_is_dropped_unless_the_client_asked() {
        let r =
            req(json!({"model":"pub","messages":[{"role":"user","content":"hi"}],"stream":true}));
        let mut t = OpenAiStream::new(&r);
        let mut out = Frames::default();
        t.on_event(r#"{"id":"a","model":"internal","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}"#, &mut out).unwrap();
        t.on_event(r#"{"id":"a","model":"internal","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#, &mut out).unwrap();
        assert_eq!(t.on_event("[DONE]", &mut out).unwrap(), Flow::Done);
        let frames = frames_text(&mut out);
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert!(frames[0].contains(r#""model":"pub""#));
        assert_eq!(frames[1], "data: [DONE]\n\n");
        assert_eq!(
            t.account().reported,
            Reported::Counts(switchyard_protocol::Usage::new(3, 1))
        );
    }

    #[test]
    fn usage_is_made_up_when_the_runtime_sends_none() {
        let r = req(
            json!({"model":"pub","messages":[{"role":"user","content":"12345678"}],
            "stream":true,"stream_options":{"include_usage":true}}),
        );
        let mut t = OpenAiStream::new(&r);
        let mut out = Frames::default();
        for tok in ["a", "b", "c"] {
            t.on_event(&format!(r#"{{"id":"x","created":1,"choices":[{{"index":0,"delta":{{"content":"{tok}"}},"finish_reason":null}}]}}"#), &mut out).unwrap();
        }
        t.on_event(
            r#"{"id":"x","created":1,"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
            &mut out,
        )
        .unwrap();
        t.on_eof(&mut out).unwrap();
        let frames = frames_text(&mut out);
        let usage: Value =
            serde_json::from_str(frames[4].trim_start_matches("data: ").trim()).unwrap();
        assert_eq!(
            usage["usage"],
            json!({"prompt_tokens": 2 + 4, "completion_tokens": 3, "total_tokens": 9})
        );
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(frames[5], "data: [DONE]\n\n");
    }

    /// A whole answer in one chunk is counted by its characters: if the worker's usage is
    /// refused (here: 100,000 completion tokens against max_tokens 50), the gateway bills
    /// its text, reasoning and tool call at four characters a token, not one token a chunk.
    #[test]
    fn a_whole_answer_is_counted_by_its_characters() {
        let r = req(
            json!({"model":"pub","messages":[{"role":"user","content":"hi"}],
            "stream":true,"max_tokens":50}),
        );
        let mut t = OpenAiStream::new(&r).count_by_characters();
        let mut out = Frames::default();
        // 12 + 4 + (1 + 7) = 24 characters: 6 tokens.
        t.on_event(
            r#"{"id":"a","choices":[{"index":0,"delta":{"role":"assistant",
            "content":"Hello there!","reasoning_content":"hmm.",
            "tool_calls":[{"index":0,"id":"t","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            "finish_reason":"tool_calls"}]}"#,
            &mut out,
        )
        .unwrap();
        t.on_event(
            r#"{"id":"a","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":100000}}"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(t.on_event("[DONE]", &mut out).unwrap(), Flow::Done);
        let billed = t.account().usage();
        assert!(billed.rejected.is_some());
        assert_eq!(billed.usage.completion_tokens, 6);
    }

    #[test]
    fn eof_without_finish_is_a_failure_and_error_chunks_fail() {
        let r =
            req(json!({"model":"pub","messages":[{"role":"user","content":"hi"}],"stream":true}));
        let mut t = OpenAiStream::new(&r);
        let mut out = Frames::default();
        t.on_event(
            r#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#,
            &mut out,
        )
        .unwrap();
        assert!(t.on_eof(&mut out).is_err());
        assert!(t
            .on_event(r#"{"error":{"message":"boom"}}"#, &mut out)
            .is_err());
        assert!(t.on_event("not json", &mut out).is_err());
    }

    #[test]
    fn done_without_a_finish_reason_is_a_cut_stream_not_a_complete_one() {
        let r =
            req(json!({"model":"pub","messages":[{"role":"user","content":"hi"}],"stream":true}));
        let mut t = OpenAiStream::new(&r);
        let mut out = Frames::default();
        t.on_event(
            r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}"#,
            &mut out,
        )
        .unwrap();
        assert!(t.on_event("[DONE]", &mut out).is_err());
    }

    #[test]
    fn llamacpp_gets_max_tokens_and_vllm_is_asked_for_usage() {
        let r = req(
            json!({"model":"pub","messages":[{"role":"user","content":"hi"}],"stream":true,
            "max_completion_tokens":5,"custom":1}),
        );
        let spec: WorkerSpec = toml::from_str(
            "name='w'\nurl='http://x'\nruntime='llamacpp'\nmodel='pub'\nupstream_model='file.gguf'",
        )
        .unwrap();
        let sent = |spec: &WorkerSpec| -> Value {
            let call = super::super::adapter::for_runtime(spec.runtime)
                .request(&r, spec)
                .unwrap();
            serde_json::from_slice(&call.body).unwrap()
        };
        let body = sent(&spec);
        assert_eq!(body["max_tokens"], json!(5));
        assert!(body.get("max_completion_tokens").is_none());
        assert_eq!(body["model"], json!("file.gguf"));
        assert_eq!(body["custom"], json!(1));
        let mut vllm = spec.clone();
        vllm.runtime = switchyard_fleet::RuntimeKind::Vllm;
        assert_eq!(
            sent(&vllm)["stream_options"],
            json!({"include_usage": true})
        );
    }
}
