//! Inference request bodies: parsed once into a JSON map, validated field by field.
//!
//! We keep the map rather than a struct with `#[serde(flatten)]` because the map passes unknown
//! fields (and the order and exact form of known ones) to the worker untouched, while the checks
//! below give the client an error that names the offending parameter, as OpenAI does.
//!
//! One piece, over 500 lines with its tests (the code is about 460): every parameter check of the
//! two OpenAI endpoints, so that one request is validated by one reading of the rules.

use serde_json::{Map, Value};

use crate::prompt_size::PromptSize;

/// Which OpenAI endpoint a body was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Chat,
    Completions,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
        }
    }
}

/// A request body that passed validation.
#[derive(Debug, Clone)]
pub struct InferenceRequest {
    pub endpoint: Endpoint,
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage`: the client wants a final usage chunk.
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u32>,
    pub n: u32,
    /// The body as received; unknown fields included.
    pub body: Map<String, Value>,
    /// What the prompt is made of, measured once: the admission estimate, the queue's
    /// priority and the bound on a worker's prompt count all read it.
    prompt: PromptSize,
}

/// Why a body was refused: the message and the parameter it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidRequest {
    pub message: String,
    pub param: Option<String>,
}

impl InvalidRequest {
    fn new(message: impl Into<String>, param: impl Into<Option<String>>) -> Self {
        Self {
            message: message.into(),
            param: param.into(),
        }
    }
}

type Check = Result<(), InvalidRequest>;

impl InferenceRequest {
    pub fn parse(endpoint: Endpoint, bytes: &[u8]) -> Result<Self, InvalidRequest> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            InvalidRequest::new(
                format!("We could not parse the JSON body of your request ({e}). Expected a JSON object."),
                None,
            )
        })?;
        let Value::Object(body) = value else {
            return Err(InvalidRequest::new(
                "The request body must be a JSON object.",
                None,
            ));
        };
        Self::from_map(endpoint, body)
    }

    pub fn from_map(endpoint: Endpoint, body: Map<String, Value>) -> Result<Self, InvalidRequest> {
        let known = Known::of(&body);
        let model = match known.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(InvalidRequest::new(
                    "You must provide a model parameter.",
                    Some("model".into()),
                ))
            }
            Some(other) => return Err(wrong_type("model", "a string", other)),
        };
        match endpoint {
            Endpoint::Chat => check_messages(&known)?,
            Endpoint::Completions => check_prompt(&known)?,
        }
        let stream = opt_bool(&known, "stream")?.unwrap_or(false);
        let include_usage = match known.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(opts)) => match opts.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(wrong_type(
                        "stream_options.include_usage",
                        "a boolean",
                        other,
                    ))
                }
            },
            Some(other) => return Err(wrong_type("stream_options", "an object", other)),
        };
        let max_tokens = match opt_int(&known, "max_completion_tokens", 1, u32::MAX as i64)? {
            Some(v) => Some(v as u32),
            None => opt_int(&known, "max_tokens", 1, u32::MAX as i64)?.map(|v| v as u32),
        };
        let n = opt_int(&known, "n", 1, 128)?.unwrap_or(1) as u32;
        opt_number(&known, "temperature", 0.0, 2.0)?;
        opt_number(&known, "top_p", 0.0, 1.0)?;
        opt_number(&known, "presence_penalty", -2.0, 2.0)?;
        opt_number(&known, "frequency_penalty", -2.0, 2.0)?;
        opt_int(&known, "seed", i64::MIN, i64::MAX)?;
        check_stop(&known)?;
        match endpoint {
            Endpoint::Chat => {
                opt_bool(&known, "logprobs")?;
                opt_int(&known, "top_logprobs", 0, 20)?;
                check_tools(&known)?;
            }
            Endpoint::Completions => {
                opt_int(&known, "logprobs", 0, 20)?;
                opt_bool(&known, "echo")?;
                opt_string(&known, "suffix")?;
                check_best_of(&known, n)?;
            }
        }
        opt_string(&known, "user")?;
        let prompt = match endpoint {
            Endpoint::Chat => PromptSize::of_chat(
                known.get("messages"),
                &[known.get("tools"), known.get("functions")],
            ),
            Endpoint::Completions => {
                PromptSize::of_completion(known.get("prompt"), known.get("suffix"))
            }
        };
        Ok(Self {
            endpoint,
            model,
            stream,
            include_usage,
            max_tokens,
            n,
            body,
            prompt,
        })
    }

    /// What the prompt is made of: its token estimate and upper bound (see [`PromptSize`]).
    pub fn prompt_size(&self) -> &PromptSize {
        &self.prompt
    }

    /// Choices the worker generates: `n` for each prompt (a completions request may carry a
    /// batch of prompts). `max_tokens` applies to each, so the most completion tokens the
    /// request can produce is `max_tokens × choices()`.
    pub fn choices(&self) -> u64 {
        u64::from(self.n).saturating_mul(self.prompt.prompts.max(1))
    }

    /// The same request asked for as a stream with a final usage chunk: how the gateway sends
    /// a client's unstreamed request to a worker, so that it sees the first token (the TTFT the
    /// SLA is about), can resume the answer elsewhere if the worker dies, and knows what was
    /// generated if the client leaves. The answer is assembled before the client gets it.
    pub fn as_streamed(&self) -> InferenceRequest {
        self.clone().into_streamed()
    }

    /// [`Self::as_streamed`] without the copy.
    pub fn into_streamed(self) -> InferenceRequest {
        let mut streamed = self;
        if streamed.stream {
            return streamed; // already one, as its client asked
        }
        // The body's `stream` too: adapters that forward the body as it is (resumption) must
        // not ask for a whole answer. Each adapter asks its runtime for usage its own way.
        streamed.body.insert("stream".into(), Value::Bool(true));
        streamed.stream = true;
        streamed.include_usage = true;
        streamed
    }
}

/// The top-level parameters validation reads, found in one pass over the body. Looking each
/// up in the map hashes its name (SipHash) about twenty times per request, more than the rest
/// of the validation costs.
struct Known<'a>([Option<&'a Value>; KNOWN.len()]);

const KNOWN: [&str; 23] = [
    "model",
    "messages",
    "prompt",
    "stream",
    "stream_options",
    "max_completion_tokens",
    "max_tokens",
    "n",
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "logprobs",
    "top_logprobs",
    "tools",
    "tool_choice",
    "functions",
    "echo",
    "suffix",
    "user",
    "best_of",
];

impl<'a> Known<'a> {
    fn of(body: &'a Map<String, Value>) -> Self {
        let mut found = [None; KNOWN.len()];
        for (name, value) in body {
            if let Some(i) = KNOWN.iter().position(|k| k == name) {
                found[i] = Some(value);
            }
        }
        Self(found)
    }

    /// `key` must be one of [`KNOWN`]; any other name reads as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        let i = KNOWN.iter().position(|k| *k == key)?;
        self.0[i]
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(param: &str, expected: &str, got: &Value) -> InvalidRequest {
    InvalidRequest::new(
        format!(
            "Invalid type for '{param}': expected {expected}, but got {}.",
            type_name(got)
        ),
        Some(param.to_string()),
    )
}

fn opt_bool(body: &Known<'_>, key: &str) -> Result<Option<bool>, InvalidRequest> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(key, "a boolean", other)),
    }
}

fn opt_string(body: &Known<'_>, key: &str) -> Check {
    match body.get(key) {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

fn opt_int(body: &Known<'_>, key: &str, min: i64, max: i64) -> Result<Option<i64>, InvalidRequest> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let Some(v) = n.as_i64() else {
                return Err(InvalidRequest::new(
                    format!("Invalid value for '{key}': expected an integer, but got {n}."),
                    Some(key.to_string()),
                ));
            };
            if v < min || v > max {
                return Err(InvalidRequest::new(
                    format!("Invalid value for '{key}': {v} is out of range; it must be between {min} and {max}."),
                    Some(key.to_string()),
                ));
            }
            Ok(Some(v))
        }
        Some(other) => Err(wrong_type(key, "an integer", other)),
    }
}

fn opt_number(body: &Known<'_>, key: &str, min: f64, max: f64) -> Check {
    match body.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if !(min..=max).contains(&v) {
                return Err(InvalidRequest::new(
                    format!("Invalid value for '{key}': {n} is out of range; it must be between {min} and {max}."),
                    Some(key.to_string()),
                ));
            }
            Ok(())
        }
        Some(other) => Err(wrong_type(key, "a number", other)),
    }
}

const ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

fn check_messages(body: &Known<'_>) -> Check {
    let messages = match body.get("messages") {
        None | Some(Value::Null) => {
            return Err(InvalidRequest::new(
                "Missing required parameter: 'messages'.",
                Some("messages".into()),
            ))
        }
        Some(Value::Array(items)) => items,
        Some(other) => return Err(wrong_type("messages", "an array", other)),
    };
    if messages.is_empty() {
        return Err(InvalidRequest::new(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            Some("messages".into()),
        ));
    }
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(m) = message else {
            return Err(wrong_type(&format!("messages[{i}]"), "an object", message));
        };
        match m.get("role") {
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => {}
            Some(Value::String(r)) => {
                return Err(InvalidRequest::new(
                    format!(
                        "Invalid value: '{r}'. Supported values are: {}.",
                        ROLES.join(", ")
                    ),
                    Some(format!("messages[{i}].role")),
                ))
            }
            None => {
                return Err(InvalidRequest::new(
                    format!("Missing required parameter: 'messages[{i}].role'."),
                    Some(format!("messages[{i}].role")),
                ))
            }
            Some(other) => {
                return Err(wrong_type(
                    &format!("messages[{i}].role"),
                    "a string",
                    other,
                ))
            }
        }
        match m.get("content") {
            None | Some(Value::Null) | Some(Value::String(_)) | Some(Value::Array(_)) => {}
            Some(other) => {
                return Err(wrong_type(
                    &format!("messages[{i}].content"),
                    "a string or an array of content parts",
                    other,
                ))
            }
        }
    }
    Ok(())
}

fn check_prompt(body: &Known<'_>) -> Check {
    match body.get("prompt") {
        None | Some(Value::Null) => Err(InvalidRequest::new(
            "Missing required parameter: 'prompt'.",
            Some("prompt".into()),
        )),
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if !items.is_empty() => {
            let all_strings = items.iter().all(Value::is_string);
            let all_ints = items.iter().all(|v| v.is_u64());
            let all_token_lists = items
                .iter()
                .all(|v| matches!(v, Value::Array(t) if t.iter().all(|x| x.is_u64())));
            if all_strings || all_ints || all_token_lists {
                Ok(())
            } else {
                Err(InvalidRequest::new(
                    "Invalid 'prompt': expected a string, an array of strings, an array of token ids or an array of token id arrays.",
                    Some("prompt".into()),
                ))
            }
        }
        Some(Value::Array(_)) => Err(InvalidRequest::new(
            "Invalid 'prompt': empty array.",
            Some("prompt".into()),
        )),
        Some(other) => Err(wrong_type("prompt", "a string or an array", other)),
    }
}

/// `best_of` generates candidates the client never sees and is billed for all of them; it
/// cannot be streamed, and the gateway streams every answer from its workers (to observe the
/// first token and resume on failure). `best_of` equal to `n` (or 1) is the same as leaving it
/// out and is accepted.
fn check_best_of(body: &Known<'_>, n: u32) -> Check {
    match opt_int(body, "best_of", 1, 20)? {
        Some(best_of) if best_of > i64::from(n) => Err(InvalidRequest::new(
            format!("'best_of' ({best_of}) above 'n' ({n}) is not supported: this API streams every completion from its workers, and 'best_of' cannot be streamed. Ask for 'n' completions and choose among them instead."),
            Some("best_of".into()),
        )),
        _ => Ok(()),
    }
}

fn check_stop(body: &Known<'_>) -> Check {
    match body.get("stop") {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(other) => Err(wrong_type("stop", "a string or an array of strings", other)),
    }
}

fn check_tools(body: &Known<'_>) -> Check {
    match body.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) => {
            for (i, tool) in tools.iter().enumerate() {
                let Value::Object(t) = tool else {
                    return Err(wrong_type(&format!("tools[{i}]"), "an object", tool));
                };
                if !matches!(t.get("type"), Some(Value::String(_))) {
                    return Err(InvalidRequest::new(
                        format!("Missing required parameter: 'tools[{i}].type'."),
                        Some(format!("tools[{i}].type")),
                    ));
                }
            }
        }
        Some(other) => return Err(wrong_type("tools", "an array", other)),
    }
    match body.get("tool_choice") {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(Value::String(s)) if ["none", "auto", "required"].contains(&s.as_str()) => Ok(()),
        Some(Value::String(s)) => Err(InvalidRequest::new(
            format!("Invalid value: '{s}'. Supported values are: 'none', 'auto', and 'required'."),
            Some("tool_choice".into()),
        )),
        Some(other) => Err(wrong_type("tool_choice", "a string or an object", other)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<InferenceRequest, InvalidRequest> {
        InferenceRequest::parse(Endpoint::Chat, body.as_bytes())
    }

    #[test]
    fn valid_chat_keeps_unknown_fields_and_reads_known_ones() {
        let r = chat(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,
            "stream_options":{"include_usage":true},"max_completion_tokens":7,"max_tokens":3,"n":2,
            "vendor_knob":{"a":[1,2]}}"#,
        )
        .unwrap();
        assert_eq!(r.model, "m");
        assert!(r.stream && r.include_usage);
        assert_eq!(
            r.max_tokens,
            Some(7),
            "max_completion_tokens wins over max_tokens"
        );
        assert_eq!(r.n, 2);
        assert_eq!(r.body["vendor_knob"], serde_json::json!({"a":[1,2]}));
    }

    #[test]
    fn prompt_text_is_counted_once_across_strings_and_content_parts() {
        let r = chat(
            r#"{"model":"m","messages":[{"role":"system","content":"abc"},
            {"role":"user","content":[{"type":"text","text":"héllo"},{"type":"image_url","image_url":{"url":"x"}}]}]}"#,
        )
        .unwrap();
        let size = r.prompt_size();
        assert_eq!(
            (size.text_chars, size.messages, size.media_parts),
            (8, 2, 1)
        );
        let c = InferenceRequest::parse(
            Endpoint::Completions,
            br#"{"model":"m","prompt":["ab","cde"]}"#,
        )
        .unwrap();
        let size = c.prompt_size();
        assert_eq!((size.text_chars, size.messages), (5, 0));
    }

    #[test]
    fn errors_name_the_parameter() {
        let cases = [
            (r#"{"model":"m"}"#, "messages"),
            (r#"{"messages":[{"role":"user","content":"x"}]}"#, "model"),
            (r#"{"model":"m","messages":"hi"}"#, "messages"),
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (
                r#"{"model":"m","messages":[{"content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
                "messages[0].content",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"temperature":"hot"}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"temperature":3}"#,
                "temperature",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":0}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":1.5}"#,
                "max_tokens",
            ),
            (r#"{"model":"m","messages":[{"role":"user"}],"n":0}"#, "n"),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#,
                "stream",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"stop":[1]}"#,
                "stop",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"tools":[{}]}"#,
                "tools[0].type",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"tool_choice":"maybe"}"#,
                "tool_choice",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"stream_options":{"include_usage":1}}"#,
                "stream_options.include_usage",
            ),
        ];
        for (body, param) in cases {
            let err = chat(body).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "body {body}: {err}");
        }
    }

    #[test]
    fn malformed_json_and_non_objects_are_refused_without_param() {
        for body in ["{", "[]", "null", "\"x\"", ""] {
            let err = chat(body).unwrap_err();
            assert_eq!(err.param, None, "{body}");
        }
    }

    #[test]
    fn best_of_above_n_is_refused_and_choices_count_every_prompt() {
        let parse = |body: &str| InferenceRequest::parse(Endpoint::Completions, body.as_bytes());
        let err = parse(r#"{"model":"m","prompt":"a","best_of":3}"#).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("best_of"));
        assert!(
            err.message.contains("cannot be streamed"),
            "{}",
            err.message
        );
        assert!(parse(r#"{"model":"m","prompt":"a","best_of":"x"}"#).is_err());
        let same = parse(r#"{"model":"m","prompt":["a","b"],"best_of":2,"n":2}"#).unwrap();
        assert_eq!(same.choices(), 4, "n for each of the two prompts");
        assert_eq!(
            parse(r#"{"model":"m","prompt":[1,2,3]}"#)
                .unwrap()
                .choices(),
            1
        );
    }

    #[test]
    fn completion_prompts_of_every_documented_form() {
        for prompt in [r#""a""#, r#"["a","b"]"#, "[1,2]", "[[1],[2,3]]"] {
            let body = format!(r#"{{"model":"m","prompt":{prompt}}}"#);
            InferenceRequest::parse(Endpoint::Completions, body.as_bytes()).unwrap();
        }
        for prompt in ["[]", "[1,\"a\"]", "5", "{}"] {
            let body = format!(r#"{{"model":"m","prompt":{prompt}}}"#);
            let err = InferenceRequest::parse(Endpoint::Completions, body.as_bytes()).unwrap_err();
            assert_eq!(err.param.as_deref(), Some("prompt"));
        }
    }
}
