//! Adapter for TGI's native API: OpenAI requests become `/generate` and `/generate_stream`
//! calls, and TGI's answers become OpenAI responses and chunks. TGI reports exact token counts
//! (`details.generated_tokens`, `input_length` or the prefill list), so usage is never estimated
//! when it answers in full.

use serde_json::{json, Map, Value};
use switchyard_fleet::WorkerSpec;
use switchyard_protocol::{Endpoint, InferenceRequest, Reported, Usage};

use super::account::StreamAccount;
use super::frames::Frames;
use super::prompt;
use super::translate::{Flow, StreamTranslator};
use crate::error::GatewayError;

pub fn path(req: &InferenceRequest) -> &'static str {
    if req.stream {
        "/generate_stream"
    } else {
        "/generate"
    }
}

pub fn request_body(req: &InferenceRequest, worker: &WorkerSpec) -> Result<Value, GatewayError> {
    if req.n > 1 {
        return Err(GatewayError::InvalidRequest {
            message: format!(
                "n > 1 is not supported for model '{}' (its runtime returns one choice).",
                req.model
            ),
            param: Some("n".into()),
        });
    }
    let inputs = match req.endpoint {
        Endpoint::Chat => prompt::render_chat(
            &prompt::chat_messages(&req.body, worker.prompt_format),
            worker.prompt_format,
        ),
        Endpoint::Completions => prompt::completion_text(req)?,
    };
    let mut params = Map::new();
    params.insert("details".into(), Value::Bool(true));
    // The prefill list is how a non-streamed TGI answer tells us the prompt's token count.
    params.insert("decoder_input_details".into(), Value::Bool(!req.stream));
    if let Some(max) = req.max_tokens {
        params.insert("max_new_tokens".into(), json!(max));
    }
    // TGI refuses temperature 0 and top_p 1: greedy decoding is "no sampling" there.
    let temperature = req.body.get("temperature").and_then(Value::as_f64);
    match temperature {
        Some(t) if t > 0.0 => {
            params.insert("temperature".into(), json!(t));
            params.insert("do_sample".into(), Value::Bool(true));
        }
        Some(_) => {
            params.insert("do_sample".into(), Value::Bool(false));
        }
        None => {}
    }
    if let Some(p) = req.body.get("top_p").and_then(Value::as_f64) {
        if p > 0.0 && p < 1.0 {
            params.insert("top_p".into(), json!(p));
        }
    }
    if let Some(seed) = req.body.get("seed").and_then(Value::as_u64) {
        params.insert("seed".into(), json!(seed));
    }
    match req.body.get("stop") {
        Some(Value::String(s)) => {
            params.insert("stop".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            params.insert("stop".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    Ok(json!({ "inputs": inputs, "parameters": params }))
}

fn finish_reason(tgi: Option<&str>) -> &'static str {
    match tgi {
        Some("length") => "length",
        _ => "stop", // eos_token, stop_sequence
    }
}

fn ids(req: &InferenceRequest) -> (String, &'static str, &'static str, u64) {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    match req.endpoint {
        Endpoint::Chat => (
            format!("chatcmpl-{uuid}"),
            "chat.completion",
            "chat.completion.chunk",
            created,
        ),
        Endpoint::Completions => (
            format!("cmpl-{uuid}"),
            "text_completion",
            "text_completion",
            created,
        ),
    }
}

fn choice(endpoint: Endpoint, text: &str, finish: Option<&str>, streamed: bool) -> Value {
    match (endpoint, streamed) {
        (Endpoint::Chat, false) => {
            json!({"index": 0, "message": {"role": "assistant", "content": text},
            "logprobs": null, "finish_reason": finish})
        }
        (Endpoint::Chat, true) => {
            json!({"index": 0, "delta": if finish.is_some() { json!({}) } else { json!({"content": text}) },
            "logprobs": null, "finish_reason": finish})
        }
        (Endpoint::Completions, _) => {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
        }
    }
}

/// `/generate_stream` events as OpenAI chunks.
pub struct TgiStream {
    endpoint: Endpoint,
    model: String,
    client_wants_usage: bool,
    id: String,
    object: &'static str,
    created: u64,
    started: bool,
    account: StreamAccount,
}

impl TgiStream {
    pub fn new(req: &InferenceRequest) -> Self {
        let (id, _, object, created) = ids(req);
        Self {
            endpoint: req.endpoint,
            model: req.model.clone(),
            client_wants_usage: req.include_usage,
            id,
            object,
            created,
            started: false,
            account: StreamAccount::new(req),
        }
    }

    /// After the last choice chunk: the usage chunk if the client asked for it, and `[DONE]`.
    fn finish(&self, out: &mut Frames) {
        if self.client_wants_usage {
            let usage = self.account.usage().usage;
            let mut c = self.chunk(json!([]));
            c["usage"] = usage.to_value();
            out.push_json(&c);
        }
        out.push_done();
    }

    fn chunk(&self, choices: Value) -> Value {
        json!({"id": self.id, "object": self.object, "created": self.created, "model": self.model, "choices": choices})
    }
}

impl StreamTranslator for TgiStream {
    fn on_event(&mut self, data: &str, out: &mut Frames) -> Result<Flow, GatewayError> {
        let v: Value = serde_json::from_str(data).map_err(|e| {
            GatewayError::UpstreamFailed(format!("worker sent an invalid stream event: {e}"))
        })?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(GatewayError::UpstreamFailed(
                err.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| err.to_string()),
            ));
        }
        if !self.started && self.endpoint == Endpoint::Chat {
            out.push_json(&self.chunk(
                json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                "logprobs": null, "finish_reason": null}]),
            ));
        }
        self.started = true;
        let special = v
            .pointer("/token/special")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let text = v
            .pointer("/token/text")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !special && !text.is_empty() {
            self.account.content_chunks += 1;
            self.account.relayed(text);
            self.account.watch(0, text);
            out.push_json(&self.chunk(json!([choice(self.endpoint, text, None, true)])));
        } else if v.get("token").is_some() {
            self.account.content_chunks += 1; // a special token (EOS) is still a generated token
        }
        let Some(details) = v.get("details").filter(|d| !d.is_null()) else {
            return Ok(Flow::Continue);
        };
        let reason = finish_reason(details.get("finish_reason").and_then(Value::as_str));
        self.account.finish_reason = Some(reason.to_string());
        // The worker's counts are evidence; our own (the tokens relayed) stays as it is.
        let completion = details.get("generated_tokens").and_then(Value::as_u64);
        let prompt = details.get("input_length").and_then(Value::as_u64);
        if let (Some(prompt), Some(completion)) = (prompt, completion) {
            self.account.reported = Reported::Counts(Usage::new(prompt, completion));
        }
        out.push_json(&self.chunk(json!([choice(self.endpoint, "", Some(reason), true)])));
        self.finish(out);
        Ok(Flow::Done)
    }

    fn end_filtered(&mut self, out: &mut Frames, error: Option<&switchyard_protocol::ErrorBody>) {
        self.account.finish_reason = Some("content_filter".into());
        out.push_json(&self.chunk(json!([choice(
            self.endpoint,
            "",
            Some("content_filter"),
            true
        )])));
        if let Some(error) = error {
            out.push_error(error);
        }
        self.finish(out);
    }

    fn on_eof(&mut self, _out: &mut Frames) -> Result<(), GatewayError> {
        Err(GatewayError::UpstreamFailed(
            "the worker closed the stream before it completed".into(),
        ))
    }

    fn account(&self) -> &StreamAccount {
        &self.account
    }

    fn account_mut(&mut self) -> &mut StreamAccount {
        &mut self.account
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(endpoint: Endpoint, body: Value) -> InferenceRequest {
        InferenceRequest::from_map(endpoint, body.as_object().unwrap().clone()).unwrap()
    }

    #[test]
    fn sampling_parameters_map_to_tgi_rules() {
        let r = req(
            Endpoint::Completions,
            json!({"model":"m","prompt":"p","temperature":0,"top_p":1.0,"stop":"x","max_tokens":9,"seed":4}),
        );
        let spec: WorkerSpec =
            toml::from_str("name='w'\nurl='http://x'\nruntime='tgi-native'\nmodel='m'").unwrap();
        let b = request_body(&r, &spec).unwrap();
        assert_eq!(b["inputs"], "p");
        assert_eq!(b["parameters"]["do_sample"], false);
        assert!(b["parameters"].get("temperature").is_none());
        assert!(b["parameters"].get("top_p").is_none());
        assert_eq!(b["parameters"]["stop"], json!(["x"]));
        assert_eq!(b["parameters"]["max_new_tokens"], 9);
        let many = req(
            Endpoint::Chat,
            json!({"model":"m","messages":[{"role":"user","content":"hi"}],"n":2}),
        );
        assert!(request_body(&many, &spec).is_err());
    }

    #[test]
    fn stream_events_become_chunks_with_usage_from_details() {
        let r = req(
            Endpoint::Chat,
            json!({"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}),
        );
        let mut t = TgiStream::new(&r);
        let mut out = Frames::default();
        t.on_event(r#"{"index":1,"token":{"id":1,"text":" a","logprob":0.0,"special":false},"generated_text":null,"details":null}"#, &mut out).unwrap();
        let flow = t.on_event(r#"{"index":2,"token":{"id":2,"text":"</s>","logprob":0.0,"special":true},"generated_text":" a","details":{"finish_reason":"eos_token","generated_tokens":2,"seed":null,"input_length":7}}"#, &mut out).unwrap();
        assert_eq!(flow, Flow::Done);
        let mut frames = Vec::new();
        while let Some(f) = out.pop() {
            frames.push(String::from_utf8(f.to_vec()).unwrap());
        }
        // role chunk, " a", finish chunk, usage chunk, [DONE]
        assert_eq!(frames.len(), 5, "{frames:?}");
        assert!(frames[0].contains(r#""role":"assistant""#));
        assert!(frames[1].contains(r#""content":" a""#));
        assert!(frames[2].contains(r#""finish_reason":"stop""#));
        assert!(frames[3].contains(r#""prompt_tokens":7,"completion_tokens":2,"total_tokens":9"#));
        assert_eq!(t.account().reported, Reported::Counts(Usage::new(7, 2)));
    }
}
