//! The OpenAI-compatible API as vLLM and SGLang serve it: `/v1/chat/completions` and
//! `/v1/completions`, streamed and not. Lenient like those servers: unknown fields are
//! ignored, `logprobs`/`tools` are accepted and answered with a plain text reply.

use crate::config::{SimConfig, UsageInStream};
use crate::engine::{self, Ending, GenParams, Generation};
use crate::error::{Dialect, SimError};
use crate::server::{abort_connection, sse_response, ConnAbort};
use crate::sse::{self, data_event, Framer, Quirks};
use crate::state::{unix_now, SimState};
use crate::stats::RequestGuard;
use crate::text::{estimate_tokens, Emitted};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub(crate) const SYSTEM_FINGERPRINT: &str = "switchyard-sim";
/// Chat formatting overhead per message (role markers, separators).
const TOKENS_PER_MESSAGE: u32 = 3;
const MAX_N: u64 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Chat => "/v1/chat/completions",
            Kind::Completion => "/v1/completions",
        }
    }
}

#[derive(Debug)]
struct Parsed {
    params: GenParams,
    stream: bool,
    include_usage: bool,
}

pub(crate) async fn chat_completions(
    State(st): State<Arc<SimState>>,
    abort: Option<Extension<ConnAbort>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(st, Kind::Chat, abort, headers, body).await
}

pub(crate) async fn completions(
    State(st): State<Arc<SimState>>,
    abort: Option<Extension<ConnAbort>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(st, Kind::Completion, abort, headers, body).await
}

async fn handle(
    st: Arc<SimState>,
    kind: Kind,
    abort: Option<Extension<ConnAbort>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let guard = RequestGuard::new(Arc::clone(&st.counters));
    st.record_request(kind.path(), &headers, &body);
    let req = match parse(kind, &body, &st.cfg) {
        Ok(r) => r,
        Err(e) => return e.into_response(Dialect::OpenAi),
    };
    let mut g = match engine::admit(&st, guard, req.params).await {
        Ok(g) => g,
        Err(e) => return e.into_response(Dialect::OpenAi),
    };
    let head = Head::new(kind, &st.cfg.model, st.faults().reported_usage);
    if req.stream {
        let include_usage = match st.cfg.usage_in_stream {
            UsageInStream::OnRequest => req.include_usage,
            UsageInStream::Always => true,
            UsageInStream::Never => false,
        };
        let quirks = Quirks {
            keepalive_comments: st.cfg.keepalive_comments,
            split_writes: st.cfg.split_writes,
        };
        let framer = StreamFramer {
            head,
            include_usage,
        };
        return sse_response(Body::from_stream(sse::body(g, framer, quirks)));
    }
    match engine::run_to_end(&mut g, |_| {}).await {
        Ending::Done => {}
        Ending::Cut => return abort_connection(abort).await,
        Ending::Stall => std::future::pending::<()>().await,
    }
    let out = head.full_response(&g);
    g.add_sent_tokens(u64::from(g.completion_tokens()));
    g.guard.complete();
    Json(out).into_response()
}

/// Fields every response object of one request shares.
struct Head {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    /// The usage object to report instead of the true one (fault `reported_usage`).
    usage_lie: Option<Value>,
}

impl Head {
    fn new(kind: Kind, model: &str, usage_lie: Option<Value>) -> Self {
        let prefix = match kind {
            Kind::Chat => "chatcmpl-sim-",
            Kind::Completion => "cmpl-sim-",
        };
        Self {
            kind,
            id: format!("{prefix}{}", uuid::Uuid::new_v4().simple()),
            created: unix_now(),
            model: model.to_owned(),
            usage_lie,
        }
    }

    fn usage(&self, g: &Generation) -> Value {
        self.usage_lie.clone().unwrap_or_else(|| usage(g))
    }

    fn object(&self, stream: bool) -> &'static str {
        match (self.kind, stream) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    fn envelope(&self, stream: bool, choices: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!(self.object(stream)));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        m.insert("system_fingerprint".into(), json!(SYSTEM_FINGERPRINT));
        m.insert("choices".into(), choices);
        m
    }

    fn full_response(&self, g: &Generation) -> Value {
        let choices: Vec<Value> = g
            .choices
            .iter()
            .zip(0u32..)
            .map(|(c, i)| {
                let finish = c.finish();
                let mut ch = json!({"index": i});
                match self.kind {
                    Kind::Chat => {
                        ch["message"] = json!({"role": "assistant", "content": c.text()});
                    }
                    Kind::Completion => ch["text"] = json!(c.text()),
                }
                ch["logprobs"] = Value::Null;
                ch["finish_reason"] = json!(finish.map(|f| f.openai()));
                ch["stop_reason"] = json!(finish.and_then(|f| f.stop_reason()));
                ch
            })
            .collect();
        let mut m = self.envelope(false, Value::Array(choices));
        m.insert("usage".into(), self.usage(g));
        Value::Object(m)
    }
}

fn usage(g: &Generation) -> Value {
    let completion = g.completion_tokens();
    json!({
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": g.prompt_tokens + completion,
    })
}

/// vLLM's event sequence: a role chunk per choice, a chunk per token, a chunk with an
/// empty delta and the finish reason, the optional usage chunk, then `[DONE]`.
struct StreamFramer {
    head: Head,
    include_usage: bool,
}

impl StreamFramer {
    fn chunk(&self, choice: Value) -> Bytes {
        data_event(&Value::Object(
            self.head.envelope(true, Value::Array(vec![choice])),
        ))
    }
}

impl Framer for StreamFramer {
    fn step(&mut self, g: &Generation, events: &[(u32, Emitted)], out: &mut Vec<Bytes>) {
        let chat = self.head.kind == Kind::Chat;
        if g.steps() == 1 && chat {
            for i in 0..u32::try_from(g.choices.len()).unwrap_or(0) {
                out.push(self.chunk(json!({
                    "index": i,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": null,
                    "finish_reason": null,
                })));
            }
        }
        for (i, e) in events {
            if !e.text.is_empty() {
                out.push(self.chunk(if chat {
                    json!({"index": i, "delta": {"content": e.text}, "logprobs": null, "finish_reason": null})
                } else {
                    json!({"index": i, "text": e.text, "logprobs": null, "finish_reason": null})
                }));
            }
            if let Some(f) = &e.finish {
                let mut ch = json!({"index": i});
                if chat {
                    ch["delta"] = json!({});
                } else {
                    ch["text"] = json!("");
                }
                ch["logprobs"] = Value::Null;
                ch["finish_reason"] = json!(f.openai());
                ch["stop_reason"] = json!(f.stop_reason());
                out.push(self.chunk(ch));
            }
        }
    }

    fn finish(&mut self, g: &Generation, out: &mut Vec<Bytes>) {
        if self.include_usage {
            let mut m = self.head.envelope(true, json!([]));
            m.insert("usage".into(), self.head.usage(g));
            out.push(data_event(&Value::Object(m)));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }
}

fn parse(kind: Kind, body: &[u8], cfg: &SimConfig) -> Result<Parsed, SimError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| SimError::invalid(format!("request body is not valid JSON: {e}"), None))?;
    let Some(o) = v.as_object() else {
        return Err(SimError::invalid(
            "request body must be a JSON object",
            None,
        ));
    };
    match o.get("model") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if *m == cfg.model => {}
        Some(Value::String(m)) => return Err(SimError::ModelNotFound(m.clone())),
        Some(_) => return Err(SimError::invalid("`model` must be a string", Some("model"))),
    }
    let prompt_tokens = match kind {
        Kind::Chat => chat_prompt_tokens(o.get("messages"))?,
        Kind::Completion => completion_prompt_tokens(o.get("prompt"))?,
    };
    // The newer name wins, as with OpenAI.
    let max_tokens = match opt_u64(o, "max_completion_tokens")? {
        Some(m) => Some(m),
        None => opt_u64(o, "max_tokens")?,
    };
    let max_tokens = match max_tokens {
        None => cfg.default_max_tokens,
        Some(0) => {
            return Err(SimError::invalid(
                "max_tokens must be at least 1, got 0.",
                Some("max_tokens"),
            ))
        }
        Some(m) => u32::try_from(m).unwrap_or(u32::MAX),
    };
    let n = opt_u64(o, "n")?.unwrap_or(1);
    if !(1..=MAX_N).contains(&n) {
        return Err(SimError::invalid(
            format!("n must be between 1 and {MAX_N}, got {n}."),
            Some("n"),
        ));
    }
    let stream = match o.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(SimError::invalid(
                "`stream` must be a boolean",
                Some("stream"),
            ))
        }
    };
    let include_usage = o
        .get("stream_options")
        .and_then(|so| so.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let seed = match o.get("seed") {
        None | Some(Value::Null) => None,
        // Negative seeds are legal in OpenAI's API; reinterpret their bits.
        Some(s) => Some(
            s.as_u64()
                .or_else(|| s.as_i64().map(|x| x as u64))
                .ok_or_else(|| SimError::invalid("`seed` must be an integer", Some("seed")))?,
        ),
    };
    Ok(Parsed {
        params: GenParams {
            prompt_tokens,
            max_tokens,
            n: u32::try_from(n).unwrap_or(1),
            stop: parse_stop(o.get("stop"))?,
            seed,
            truncate_at_stop: true,
        },
        stream,
        include_usage,
    })
}

/// Σ over messages of (ceil(content chars / 4) + 3). Content may be a string, null, or an
/// array of parts whose `text` fields count (images and other parts count nothing).
pub(crate) fn chat_prompt_tokens(messages: Option<&Value>) -> Result<u32, SimError> {
    let Some(Value::Array(msgs)) = messages else {
        return Err(SimError::invalid(
            "`messages` is required and must be an array",
            Some("messages"),
        ));
    };
    if msgs.is_empty() {
        return Err(SimError::invalid(
            "`messages` must not be empty",
            Some("messages"),
        ));
    }
    let mut total: u32 = 0;
    for m in msgs {
        let Some(m) = m.as_object() else {
            return Err(SimError::invalid(
                "each message must be an object",
                Some("messages"),
            ));
        };
        let text = match m.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            Some(_) => {
                return Err(SimError::invalid(
                    "message `content` must be a string or an array of parts",
                    Some("messages"),
                ))
            }
        };
        total = total
            .saturating_add(estimate_tokens(&text))
            .saturating_add(TOKENS_PER_MESSAGE);
    }
    Ok(total)
}

/// A string (ceil(chars / 4)), a list of token ids (their count), or a one-element list
/// of either. Batched prompts are not simulated.
fn completion_prompt_tokens(prompt: Option<&Value>) -> Result<u32, SimError> {
    let bad = || {
        SimError::invalid(
            "`prompt` is required and must be a string or a list of token ids",
            Some("prompt"),
        )
    };
    match prompt {
        Some(Value::String(s)) => Ok(estimate_tokens(s)),
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_u64) => {
            Ok(u32::try_from(items.len()).unwrap_or(u32::MAX))
        }
        Some(Value::Array(items)) if items.len() == 1 => completion_prompt_tokens(items.first()),
        Some(Value::Array(items)) if items.len() > 1 => Err(SimError::invalid(
            "switchyard-sim does not simulate batched prompts; send one prompt per request",
            Some("prompt"),
        )),
        _ => Err(bad()),
    }
}

fn parse_stop(v: Option<&Value>) -> Result<Vec<String>, SimError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str().map(str::to_owned).ok_or_else(|| {
                    SimError::invalid(
                        "`stop` must be a string or an array of strings",
                        Some("stop"),
                    )
                })
            })
            .collect(),
        Some(_) => Err(SimError::invalid(
            "`stop` must be a string or an array of strings",
            Some("stop"),
        )),
    }
}

fn opt_u64(o: &Map<String, Value>, key: &'static str) -> Result<Option<u64>, SimError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            SimError::invalid(format!("`{key}` must be a non-negative integer"), Some(key))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_tokens_follow_the_documented_estimate() {
        let msgs = json!([
            {"role": "system", "content": "abcd"},
            {"role": "user", "content": [{"type": "text", "text": "abcde"}, {"type": "image_url"}]},
            {"role": "assistant", "content": null}
        ]);
        assert_eq!(
            chat_prompt_tokens(Some(&msgs)).ok(),
            Some((1 + 3) + (2 + 3) + 3)
        );
        assert!(chat_prompt_tokens(None).is_err());
    }

    #[test]
    fn parse_reads_limits_and_rejects_bad_fields() {
        let cfg = SimConfig::default();
        let p = parse(
            Kind::Completion,
            br#"{"prompt":"abcdefgh","max_tokens":5,"max_completion_tokens":7,"n":2,"stop":"x","seed":-1,"extra":{"a":1}}"#,
            &cfg,
        );
        let p = p.map_err(|e| e.to_string());
        let Ok(p) = p else {
            panic!("{p:?}");
        };
        assert_eq!(p.params.prompt_tokens, 2);
        assert_eq!(p.params.max_tokens, 7);
        assert_eq!(p.params.n, 2);
        assert_eq!(p.params.stop, vec!["x".to_owned()]);
        assert_eq!(p.params.seed, Some(u64::MAX));
        assert!(parse(Kind::Completion, br#"{"prompt":"a","n":9}"#, &cfg).is_err());
        assert!(parse(Kind::Completion, br#"{"prompt":[1,2,3]}"#, &cfg).is_ok());
        assert!(parse(Kind::Chat, br#"{"prompt":"a"}"#, &cfg).is_err());
        assert!(matches!(
            parse(Kind::Chat, br#"{"model":"gpt-9","messages":[]}"#, &cfg),
            Err(SimError::ModelNotFound(_))
        ));
    }
}
