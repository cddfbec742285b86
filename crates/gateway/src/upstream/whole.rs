//! A worker that answers a stream request with one whole JSON object (an OpenAI-compatible
//! server that ignores `stream: true`). Its answer is turned into the events a stream of it
//! would have been, so that the relay, the usage bounds and the assembly of unstreamed answers
//! treat every worker alike. No first token was seen before the whole answer: such an answer
//! has no TTFT (see `Relay::no_first_token`).
//!
//! Each choice becomes one chunk carrying all of it. The gateway's own count of a whole answer
//! is then made from its characters, not its chunks (see `OpenAiStream::count_by_characters`):
//! right whether the worker reported no usage or usage the gateway refuses.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use switchyard_protocol::Endpoint;

use crate::error::GatewayError;

/// A whole answer larger than this is refused rather than held in memory. Generous: a long
/// completion with logprobs for every token is a few MB.
pub const MAX_WHOLE_ANSWER: usize = 64 * 1024 * 1024;

/// The answer as SSE bytes: its chunks, then `[DONE]`.
pub fn as_events(endpoint: Endpoint, body: &[u8]) -> Result<Bytes, GatewayError> {
    match in_place::as_events(endpoint, body) {
        Some(events) => Ok(events),
        None => as_events_of_value(endpoint, body),
    }
}

/// [`as_events`] on a `Value`: for errors and whatever [`in_place`] does not read exactly.
fn as_events_of_value(endpoint: Endpoint, body: &[u8]) -> Result<Bytes, GatewayError> {
    let whole: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::UpstreamFailed(format!("worker sent an invalid response object: {e}"))
    })?;
    let Value::Object(whole) = whole else {
        return Err(GatewayError::UpstreamFailed(
            "worker sent a non-object response".into(),
        ));
    };
    if let Some(err) = whole.get("error").filter(|e| !e.is_null()) {
        return Err(GatewayError::UpstreamFailed(format!(
            "worker reported an error: {err}"
        )));
    }
    let usage = whole.get("usage").filter(|u| !u.is_null()).cloned();
    let mut head = Map::new();
    for key in ["id", "created", "model", "system_fingerprint"] {
        if let Some(v) = whole.get(key) {
            head.insert(key.into(), v.clone());
        }
    }
    head.insert(
        "object".into(),
        json!(match endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completions => "text_completion",
        }),
    );
    let chunk = |choices: Vec<Value>| {
        let mut c = head.clone();
        c.insert("choices".into(), Value::Array(choices));
        c
    };
    let mut out = String::new();
    let mut push = |v: Map<String, Value>| {
        out.push_str("data: ");
        out.push_str(&Value::Object(v).to_string());
        out.push_str("\n\n");
    };
    for choice in whole
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut c = Map::new();
        c.insert(
            "index".into(),
            choice.get("index").cloned().unwrap_or(json!(0)),
        );
        match endpoint {
            Endpoint::Chat => c.insert("delta".into(), chat_delta(choice)),
            Endpoint::Completions => c.insert(
                "text".into(),
                choice.get("text").cloned().unwrap_or(json!("")),
            ),
        };
        for key in ["logprobs", "finish_reason", "stop_reason"] {
            if let Some(v) = choice.get(key) {
                c.insert(key.into(), v.clone());
            }
        }
        push(chunk(vec![Value::Object(c)]));
    }
    if let Some(u) = usage {
        let mut c = chunk(Vec::new());
        c.insert("usage".into(), u);
        push(c);
    }
    out.push_str("data: [DONE]\n\n");
    Ok(Bytes::from(out))
}

/// A chat choice's message as one delta: the role, reasoning, content, tool calls (each with
/// the `index` deltas need) and refusal.
fn chat_delta(choice: &Value) -> Value {
    let mut delta = Map::new();
    delta.insert("role".into(), json!("assistant"));
    let Some(Value::Object(message)) = choice.get("message") else {
        return Value::Object(delta);
    };
    for key in ["content", "reasoning_content", "refusal"] {
        if let Some(v) = message.get(key).filter(|v| !v.is_null()) {
            delta.insert(key.into(), v.clone());
        }
    }
    if let Some(Value::Array(calls)) = message.get("tool_calls") {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let mut call = call.clone();
                if let Value::Object(o) = &mut call {
                    o.entry("index").or_insert(json!(i));
                }
                call
            })
            .collect();
        delta.insert("tool_calls".into(), Value::Array(calls));
    }
    Value::Object(delta)
}

/// The common whole answer (no error, no tool calls) turned into events without building a
/// `Value` tree: its parts are borrowed as the worker wrote them and written into the chunks.
/// The same events as [`as_events_of_value`] (a test holds them to it), at a fraction of
/// the cost.
mod in_place {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize};
    use serde_json::value::RawValue;
    use switchyard_protocol::Endpoint;

    use crate::upstream::openai_chunk::{too_deep, Obj};

    type Raw<'a> = Option<&'a RawValue>;

    /// A field that is there, `null` included (as `Map::get` sees it).
    fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Raw<'de>, D::Error> {
        <&'de RawValue>::deserialize(d).map(Some)
    }

    #[derive(Deserialize)]
    struct Whole<'a> {
        #[serde(borrow, default, deserialize_with = "present")]
        id: Raw<'a>,
        #[serde(borrow, default, deserialize_with = "present")]
        created: Raw<'a>,
        #[serde(borrow, default, deserialize_with = "present")]
        model: Raw<'a>,
        #[serde(borrow, default, deserialize_with = "present")]
        system_fingerprint: Raw<'a>,
        #[serde(borrow, default)]
        choices: Option<Vec<Obj<Choice<'a>>>>,
        #[serde(borrow, default)]
        usage: Raw<'a>,
        #[serde(borrow, default)]
        error: Raw<'a>,
    }

    #[derive(Deserialize)]
    struct Choice<'a> {
        #[serde(borrow, default, deserialize_with = "present")]
        index: Raw<'a>,
        #[serde(borrow, default)]
        message: Option<Obj<Message<'a>>>,
        #[serde(borrow, default, deserialize_with = "present")]
        text: Raw<'a>,
        #[serde(borrow, default, deserialize_with = "present")]
        logprobs: Raw<'a>,
        #[serde(borrow, default, deserialize_with = "present")]
        finish_reason: Raw<'a>,
        #[serde(borrow, default, deserialize_with = "present")]
        stop_reason: Raw<'a>,
    }

    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(borrow, default)]
        content: Raw<'a>,
        #[serde(borrow, default)]
        reasoning_content: Raw<'a>,
        #[serde(borrow, default)]
        refusal: Raw<'a>,
        #[serde(borrow, default, deserialize_with = "present")]
        tool_calls: Raw<'a>,
    }

    #[derive(Serialize)]
    struct Chunk<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Raw<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        created: Raw<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        model: Raw<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        system_fingerprint: Raw<'a>,
        object: &'static str,
        choices: Vec<ChunkChoice<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Raw<'a>,
    }

    #[derive(Serialize)]
    struct ChunkChoice<'a> {
        index: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        delta: Option<Delta<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        logprobs: Raw<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        finish_reason: Raw<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        stop_reason: Raw<'a>,
    }

    #[derive(Serialize)]
    struct Delta<'a> {
        role: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Raw<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reasoning_content: Raw<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        refusal: Raw<'a>,
    }

    fn chunk_of<'a>(
        whole: &Whole<'a>,
        object: &'static str,
        choices: Vec<ChunkChoice<'a>>,
    ) -> Chunk<'a> {
        Chunk {
            id: whole.id,
            created: whole.created,
            model: whole.model,
            system_fingerprint: whole.system_fingerprint,
            object,
            choices,
            usage: None,
        }
    }

    fn raw(json: &'static str) -> Option<&'static RawValue> {
        serde_json::from_str(json).ok()
    }

    /// `None` when the general path must decide: an error, tool calls (their `index` is
    /// added), anything not read exactly.
    pub fn as_events(endpoint: Endpoint, body: &[u8]) -> Option<Bytes> {
        // serde reads a struct from a JSON array too: only an object is an answer.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') || too_deep(body) {
            return None;
        }
        let whole: Whole = serde_json::from_slice(body).ok()?;
        if whole.error.is_some() {
            return None;
        }
        // The values copied into the events must hold no line break (a pretty-printed
        // `usage` or `logprobs`): written into an SSE event, it would end it early.
        let one_line = |raw: &Raw<'_>| raw.is_none_or(|r| !r.get().contains(['\n', '\r']));
        let choices_one_line = whole.choices.iter().flatten().all(|c| {
            let message = c.message.as_deref();
            let texts = message.map_or([None; 3], |m| [m.content, m.reasoning_content, m.refusal]);
            [c.index, c.text, c.logprobs, c.finish_reason, c.stop_reason]
                .iter()
                .chain(&texts)
                .all(one_line)
        });
        let head = [
            whole.id,
            whole.created,
            whole.model,
            whole.system_fingerprint,
            whole.usage,
        ];
        if !choices_one_line || !head.iter().all(one_line) {
            return None;
        }
        let (zero, empty) = (raw("0")?, raw("\"\"")?);
        let object = match endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completions => "text_completion",
        };
        let chunk = |choices| chunk_of(&whole, object, choices);
        let mut out = Vec::with_capacity(body.len() + 256);
        let mut push = |c: &Chunk<'_>| -> Option<()> {
            out.extend_from_slice(b"data: ");
            serde_json::to_writer(&mut out, c).ok()?;
            out.extend_from_slice(b"\n\n");
            Some(())
        };
        for c in whole.choices.iter().flatten() {
            let (delta, text) = match endpoint {
                Endpoint::Chat => {
                    let message = c.message.as_ref();
                    if message.is_some_and(|m| m.tool_calls.is_some()) {
                        return None;
                    }
                    (
                        Some(Delta {
                            role: "assistant",
                            content: message.and_then(|m| m.content),
                            reasoning_content: message.and_then(|m| m.reasoning_content),
                            refusal: message.and_then(|m| m.refusal),
                        }),
                        None,
                    )
                }
                Endpoint::Completions => (None, Some(c.text.unwrap_or(empty))),
            };
            push(&chunk(vec![ChunkChoice {
                index: c.index.unwrap_or(zero),
                delta,
                text,
                logprobs: c.logprobs,
                finish_reason: c.finish_reason,
                stop_reason: c.stop_reason,
            }]))?;
        }
        if let Some(usage) = whole.usage {
            let mut c = chunk(Vec::new());
            c.usage = Some(usage);
            push(&c)?;
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        Some(Bytes::from(out))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The events as the relay's SSE parser reads them: a line break inside one would cut it.
    fn events(bytes: &Bytes) -> Vec<Value> {
        let mut parser = switchyard_protocol::SseParser::new();
        let mut items = Vec::new();
        parser.feed(bytes, &mut items);
        parser.finish(&mut items);
        items
            .into_iter()
            .filter_map(|item| match item {
                switchyard_protocol::SseItem::Event { data, .. } => Some(data),
                switchyard_protocol::SseItem::Comment(_) => None,
            })
            .filter(|d| d != "[DONE]")
            .map(|d| serde_json::from_str(&d).unwrap())
            .collect()
    }

    #[test]
    fn a_whole_chat_answer_is_one_chunk_and_a_usage_chunk() {
        let body = br#"{"id":"c","object":"chat.completion","created":1,"model":"m",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hello there",
            "reasoning_content":"hmm",
            "tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]},
            "finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let bytes = as_events(Endpoint::Chat, body).unwrap();
        assert!(bytes.ends_with(b"data: [DONE]\n\n"));
        let ev = events(&bytes);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0]["object"], "chat.completion.chunk");
        let delta = &ev[0]["choices"][0]["delta"];
        assert_eq!(delta["content"], "Hello there");
        assert_eq!(delta["reasoning_content"], "hmm");
        assert_eq!(delta["tool_calls"][0]["index"], 0);
        assert_eq!(ev[0]["choices"][0]["finish_reason"], "stop");
        assert_eq!(ev[1]["usage"]["total_tokens"], 5);
    }

    #[test]
    fn a_whole_completion_is_one_chunk() {
        let body =
            br#"{"id":"x","choices":[{"index":0,"text":"abcdefghij","finish_reason":"length"}]}"#;
        let ev = events(&as_events(Endpoint::Completions, body).unwrap());
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0]["choices"][0]["text"], "abcdefghij");
        assert_eq!(ev[0]["choices"][0]["finish_reason"], "length");
    }

    mod paths_agree {
        use super::*;
        use proptest::prelude::*;

        fn maybe(values: Vec<Value>) -> impl Strategy<Value = Option<Value>> {
            let mut options = vec![None, Some(Value::Null)];
            options.extend(values.into_iter().map(Some));
            prop::sample::select(options)
        }

        fn choice() -> impl Strategy<Value = Value> {
            (
                maybe(vec![json!(0), json!(2)]),
                maybe(vec![json!({}), json!("not a message"), json!(["Hi"])]),
                (
                    maybe(vec![json!("Hi \"there\"\n"), json!("")]),
                    maybe(vec![json!("hmm")]),
                    maybe(vec![json!("no")]),
                ),
                maybe(vec![json!("abc")]),
                maybe(vec![json!({"content": [{"token": "a"}]})]),
                maybe(vec![json!("stop")]),
                maybe(vec![json!(42)]),
            )
                .prop_map(
                    |(index, message, (content, reasoning, refusal), text, lp, finish, stop)| {
                        let mut c = Map::new();
                        let put = |m: &mut Map<String, Value>, k: &str, v: Option<Value>| {
                            if let Some(v) = v {
                                m.insert(k.into(), v);
                            }
                        };
                        put(&mut c, "index", index);
                        let message = message.map(|m| match m {
                            Value::Object(mut o) => {
                                put(&mut o, "content", content);
                                put(&mut o, "reasoning_content", reasoning);
                                put(&mut o, "refusal", refusal);
                                Value::Object(o)
                            }
                            other => other,
                        });
                        put(&mut c, "message", message);
                        put(&mut c, "text", text);
                        put(&mut c, "logprobs", lp);
                        put(&mut c, "finish_reason", finish);
                        put(&mut c, "stop_reason", stop);
                        Value::Object(c)
                    },
                )
        }

        fn whole() -> impl Strategy<Value = Value> {
            (
                maybe(vec![json!("chatcmpl-1")]),
                maybe(vec![json!(1735689600)]),
                maybe(vec![json!("internal")]),
                maybe(vec![json!("fp")]),
                prop_oneof![
                    Just(None),
                    Just(Some(Value::Null)),
                    proptest::collection::vec(
                        prop_oneof![4 => choice(), 1 => Just(json!([5]))],
                        0..3
                    )
                    .prop_map(|c| Some(Value::Array(c))),
                ],
                maybe(vec![json!({"prompt_tokens": 3, "completion_tokens": 2})]),
            )
                .prop_map(|(id, created, model, fp, choices, usage)| {
                    let mut o = Map::new();
                    for (k, v) in [
                        ("id", id),
                        ("created", created),
                        ("model", model),
                        ("system_fingerprint", fp),
                        ("choices", choices),
                        ("usage", usage),
                    ] {
                        if let Some(v) = v {
                            o.insert(k.into(), v);
                        }
                    }
                    Value::Object(o)
                })
        }

        proptest! {
            /// Whichever way a whole answer is read, it becomes the same events.
            #[test]
            fn in_place_and_value_paths_agree(body in whole(), chat in any::<bool>(), pretty in any::<bool>()) {
                let endpoint = if chat { Endpoint::Chat } else { Endpoint::Completions };
                let bytes = if pretty { serde_json::to_string_pretty(&body).unwrap() } else { body.to_string() };
                let general = as_events_of_value(endpoint, bytes.as_bytes()).unwrap();
                if let Some(fast) = in_place::as_events(endpoint, bytes.as_bytes()) {
                    prop_assert_eq!(events(&fast), events(&general));
                    prop_assert!(fast.ends_with(b"data: [DONE]\n\n"));
                }
            }
        }

        /// The common answer takes the in-place path.
        #[test]
        fn a_plain_answer_is_read_in_place() {
            let body = br#"{"id":"c","object":"chat.completion","created":1,"model":"m",
                "choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},
                "logprobs":null,"finish_reason":"stop"}],
                "usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
            assert!(in_place::as_events(Endpoint::Chat, body).is_some());
        }
    }

    #[test]
    fn an_error_object_is_a_failure() {
        assert!(as_events(Endpoint::Chat, br#"{"error":{"message":"x"}}"#).is_err());
        assert!(as_events(Endpoint::Chat, b"[1]").is_err());
    }
}
