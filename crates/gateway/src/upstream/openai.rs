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
use super::openai_chunk::{self, ChoiceFacts, Chunk};
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

/// Relays OpenAI chunks: renames the model, keeps count, and manages the usage chunk.
pub struct OpenAiStream {
    model: Value,
    /// `model` as JSON, as it is written into relayed chunks.
    model_json: String,
    client_wants_usage: bool,
    account: StreamAccount,
    usage_sent: bool,
    /// The last chunk's id and `created`, for a usage chunk we must make up ourselves.
    last_id: Value,
    /// `last_id` as JSON, once it is set.
    last_id_json: Option<String>,
    last_created: Value,
    object: &'static str,
    /// Count generated tokens from characters, not chunks (see [`Self::count_by_characters`]).
    by_characters: bool,
}

impl OpenAiStream {
    pub fn new(req: &InferenceRequest) -> Self {
        let model = Value::String(req.model.clone());
        Self {
            model_json: model.to_string(),
            model,
            client_wants_usage: req.include_usage,
            account: StreamAccount::new(req),
            usage_sent: false,
            last_id: Value::Null,
            last_id_json: None,
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

    /// Counts what one choice carries.
    fn take_choice(&mut self, c: ChoiceFacts<'_>) {
        // Reasoning tokens are generated and billed like the answer's.
        if self.by_characters {
            self.account.content_chunks += c.tokens_by_characters;
        } else if c.text.is_some_and(|t| !t.is_empty()) || c.has_tool_call || c.has_reasoning {
            self.account.content_chunks += 1;
        }
        if let Some(t) = c.text {
            self.account.relayed(t);
        }
        for t in c.watched {
            self.account.watch(c.index, t);
        }
        if let Some(reason) = c.finish_reason {
            self.account.finish_reason = Some(reason.to_string());
        }
    }

    /// The common chunk (no usage, no error), read in place: its bytes go to the client as
    /// the worker wrote them, with the client's model name and the stream's one id. `None`
    /// when they cannot (then nothing was counted yet).
    fn relay_as_written(&mut self, data: &str, chunk: &Chunk<'_>) -> Option<Vec<u8>> {
        // Read before anything changes: a value the general path refuses goes there whole.
        let created = match chunk.created() {
            Some(c) => Some(serde_json::from_str::<Value>(c).ok()?),
            None => None,
        };
        let mut replace: [(&str, &str); 2] = [("", ""); 2];
        let mut replaced = 0;
        let mut append: [(&str, &str); 2] = [("", ""); 2];
        let mut appended = 0;
        // One id for the whole stream, even when it was resumed on another worker.
        let first_id = self.last_id_json.take();
        match (&first_id, chunk.id()) {
            (None, Some(id)) => {
                self.last_id = serde_json::from_str(id).ok()?;
                self.last_id_json = (!self.last_id.is_null()).then(|| id.to_string());
            }
            (None, None) => {}
            (Some(first), Some(id)) if first == id => {}
            (Some(first), Some(id)) => {
                replace[replaced] = (id, first);
                replaced += 1;
            }
            (Some(first), None) => {
                append[appended] = ("id", first);
                appended += 1;
            }
        }
        match chunk.model() {
            Some(model) if model == self.model_json => {}
            Some(model) => {
                replace[replaced] = (model, &self.model_json);
                replaced += 1;
            }
            None => {
                append[appended] = ("model", &self.model_json);
                appended += 1;
            }
        }
        let frame = openai_chunk::edited_frame(data, &replace[..replaced], &append[..appended]);
        if first_id.is_some() {
            self.last_id_json = first_id;
        }
        let frame = frame?;
        if let Some(created) = created {
            self.last_created = created;
        }
        let watch = self.account.output_watch.is_some();
        for c in chunk.choices(watch) {
            self.take_choice(c);
        }
        Some(frame)
    }

    /// Any chunk, read as a `Value`, edited and written again: usage reports, errors, and
    /// whatever [`Chunk::read`] leaves to this general path.
    fn relay_rewritten(&mut self, data: &str, out: &mut Frames) -> Result<Flow, GatewayError> {
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
            (Value::Null, Some(id)) => {
                self.last_id = id.clone();
                self.last_id_json = (!id.is_null()).then(|| id.to_string());
            }
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
            let watch = self.account.output_watch.is_some();
            for c in choices {
                self.take_choice(openai_chunk::facts_of_value(c, watch));
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
        if let Some(chunk) = Chunk::read(data) {
            if let Some(frame) = self.relay_as_written(data, &chunk) {
                out.push_frame(frame);
                return Ok(Flow::Continue);
            }
        }
        self.relay_rewritten(data, out)
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

    /// The common chunk goes to the client as the worker wrote it (spacing, key order, fields
    /// the gateway does not know), with only the model name changed; the id stays the first
    /// chunk's.
    #[test]
    fn a_plain_chunk_is_forwarded_as_written_with_the_model_renamed() {
        let r =
            req(json!({"model":"pub","messages":[{"role":"user","content":"hi"}],"stream":true}));
        let mut t = OpenAiStream::new(&r);
        let mut out = Frames::default();
        let first = r#"{"id":"a", "model":"internal","x_vendor":{"k":[1,2]},"choices":[{"index":0,"delta":{"content":"tab\tq\"uote"},"finish_reason":null}]}"#;
        t.on_event(first, &mut out).unwrap();
        t.on_event(
            r#"{"id":"other","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}]}"#,
            &mut out,
        )
        .unwrap();
        let frames = frames_text(&mut out);
        assert_eq!(
            frames[0],
            "data: {\"id\":\"a\", \"model\":\"pub\",\"x_vendor\":{\"k\":[1,2]},\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tab\\tq\\\"uote\"},\"finish_reason\":null}]}\n\n"
        );
        assert_eq!(
            frames[1],
            "data: {\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"},\"model\":\"pub\"}\n\n"
                .replace("},\"model", "}],\"model")
        );
        assert_eq!(t.account().content_chunks, 2);
        assert_eq!(t.account().finish_reason.as_deref(), Some("stop"));
    }

    /// A chunk whose JSON spans lines is written again on one line: forwarded as it is, its
    /// line break would end the SSE event in the middle.
    #[test]
    fn a_chunk_with_a_line_break_is_rewritten_on_one_line() {
        let r =
            req(json!({"model":"pub","messages":[{"role":"user","content":"hi"}],"stream":true}));
        let mut t = OpenAiStream::new(&r);
        let mut out = Frames::default();
        t.on_event(
            "{\"id\":\"a\",\n\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}",
            &mut out,
        )
        .unwrap();
        let frames = frames_text(&mut out);
        assert_eq!(frames[0].matches('\n').count(), 2, "{frames:?}");
        assert!(frames[0].contains(r#""model":"pub""#));
    }

    /// What the client receives and what is billed do not depend on which path read a chunk:
    /// every chunk the in-place reading takes gives the same frames (as JSON) and the same
    /// account as the general path.
    mod paths_agree {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = Option<Value>> {
            prop_oneof![
                Just(None),
                Just(Some(Value::Null)),
                Just(Some(json!(""))),
                Just(Some(json!("tok"))),
                Just(Some(json!("q\"\\ \u{e9}\t"))),
                Just(Some(json!(7))),
            ]
        }

        fn choice() -> impl Strategy<Value = Value> {
            (
                prop_oneof![
                    Just(None),
                    Just(Some(json!(0))),
                    Just(Some(json!(1))),
                    Just(Some(Value::Null))
                ],
                prop_oneof![Just(0u8), Just(1), Just(2)],
                (text(), text(), text(), text()),
                prop_oneof![
                    Just(None),
                    Just(Some(Value::Null)),
                    Just(Some(json!([]))),
                    Just(Some(
                        json!([{"index":0,"function":{"name":"f","arguments":"{\"a\":1}"}}])
                    )),
                ],
                text(),
                prop_oneof![
                    Just(None),
                    Just(Some(Value::Null)),
                    Just(Some(json!("stop")))
                ],
            )
                .prop_map(
                    |(
                        index,
                        delta_kind,
                        (content, reasoning, refusal, reasoning2),
                        calls,
                        text,
                        finish,
                    )| {
                        let mut c = Map::new();
                        if let Some(i) = index {
                            c.insert("index".into(), i);
                        }
                        match delta_kind {
                            0 => {}
                            1 => {
                                c.insert("delta".into(), Value::Null);
                            }
                            _ => {
                                let mut d = Map::new();
                                for (k, v) in [
                                    ("content", content),
                                    ("reasoning_content", reasoning),
                                    ("refusal", refusal),
                                    ("reasoning", reasoning2),
                                    ("tool_calls", calls),
                                ] {
                                    if let Some(v) = v {
                                        d.insert(k.into(), v);
                                    }
                                }
                                c.insert("delta".into(), Value::Object(d));
                            }
                        }
                        if let Some(t) = text {
                            c.insert("text".into(), t);
                        }
                        if let Some(f) = finish {
                            c.insert("finish_reason".into(), f);
                        }
                        Value::Object(c)
                    },
                )
        }

        fn chunk() -> impl Strategy<Value = Value> {
            (
                prop_oneof![
                    Just(None),
                    Just(Some(Value::Null)),
                    Just(Some(json!("a"))),
                    Just(Some(json!("b")))
                ],
                prop_oneof![
                    Just(None),
                    Just(Some(json!("internal"))),
                    Just(Some(json!("pub")))
                ],
                prop_oneof![Just(None), Just(Some(json!(17))), Just(Some(Value::Null))],
                prop_oneof![
                    Just(None),
                    Just(Some(Value::Null)),
                    proptest::collection::vec(
                        prop_oneof![4 => choice(), 1 => Just(json!([0, null, "hello", "stop"]))],
                        0..3
                    )
                    .prop_map(|v| Some(Value::Array(v))),
                ],
                any::<bool>(),
            )
                .prop_map(|(id, model, created, choices, extra)| {
                    let mut o = Map::new();
                    for (k, v) in [
                        ("id", id),
                        ("model", model),
                        ("created", created),
                        ("choices", choices),
                    ] {
                        if let Some(v) = v {
                            o.insert(k.into(), v);
                        }
                    }
                    if extra {
                        o.insert("x_vendor".into(), json!({"k": [1, null]}));
                    }
                    Value::Object(o)
                })
        }

        proptest! {
            #[test]
            fn in_place_and_general_paths_agree(
                chunks in proptest::collection::vec(chunk(), 1..5),
                by_characters in any::<bool>(),
            ) {
                let r = req(json!({"model":"pub","messages":[{"role":"user","content":"hi"}],"stream":true}));
                let make = || {
                    let t = OpenAiStream::new(&r);
                    let mut t = if by_characters { t.count_by_characters() } else { t };
                    t.account.resume_text = Some(String::new());
                    t
                };
                let (mut fast, mut general) = (make(), make());
                let (mut fast_out, mut general_out) = (Frames::default(), Frames::default());
                for (i, c) in chunks.iter().enumerate() {
                    // Now and then pretty-printed: line breaks inside a chunk's data.
                    let data = if i % 3 == 2 { serde_json::to_string_pretty(c).unwrap() } else { c.to_string() };
                    let a = fast.on_event(&data, &mut fast_out).is_ok();
                    let b = general.relay_rewritten(&data, &mut general_out).is_ok();
                    prop_assert_eq!(a, b);
                    if let Some(read) = openai_chunk::Chunk::read(&data) {
                        let empty = Vec::new();
                        let choices = c.get("choices").and_then(Value::as_array).unwrap_or(&empty);
                        let from_value: Vec<_> = choices.iter().map(|c| openai_chunk::facts_of_value(c, true)).collect();
                        let in_place: Vec<_> = read.choices(true).collect();
                        prop_assert_eq!(in_place, from_value);
                    }
                }
                let parsed = |out: &mut Frames| -> Vec<Value> {
                    frames_text(out)
                        .iter()
                        .map(|f| serde_json::from_str(f.trim_start_matches("data: ").trim_end()).unwrap())
                        .collect()
                };
                prop_assert_eq!(parsed(&mut fast_out), parsed(&mut general_out));
                prop_assert_eq!(fast.account.content_chunks, general.account.content_chunks);
                prop_assert_eq!(&fast.account.finish_reason, &general.account.finish_reason);
                prop_assert_eq!(&fast.account.resume_text, &general.account.resume_text);
                prop_assert_eq!(&fast.last_id, &general.last_id);
                prop_assert_eq!(&fast.last_created, &general.last_created);
            }
        }
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
        // A struct could be read from an array: it is still not a chunk.
        assert!(t.on_event(r#"["a", 1, "m"]"#, &mut out).is_err());
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
