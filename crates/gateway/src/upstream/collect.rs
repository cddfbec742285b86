//! Unstreamed answers, assembled from a stream. A client's unstreamed request goes to the worker
//! as a stream (see `InferenceRequest::as_streamed`), through the same relay as any stream: so
//! the gateway sees the first token (its TTFT is the real one, not the whole generation's
//! length), a worker that dies mid-answer can be resumed elsewhere, and a client that leaves is
//! billed for what was generated. This module turns the relay's chunks back into the one
//! `chat.completion` or `text_completion` object the client asked for.
//!
//! What it merges per choice (by `index`): text (`delta.content` / `text`), `reasoning_content`,
//! `refusal`, `tool_calls` (by their own `index`: id, type and name set once, arguments
//! appended), logprobs (their arrays appended), and the last `finish_reason` and `stop_reason`;
//! per response: `id`, `created`, `system_fingerprint` from the first chunk that has them, and
//! the usage of the final chunk (the usage billed).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use switchyard_protocol::{Endpoint, InferenceRequest, SseItem, SseParser};

use super::openai_chunk::{too_deep, Obj, Text};
use super::relay::Relay;
use crate::error::GatewayError;

/// Reads the relay to its end (at most `limit`) and returns the whole answer as JSON, and
/// whether its usage is the gateway's estimate. A stream that fails, or does not end in time,
/// is an error (the relay settles it as one).
pub async fn assemble(
    req: &InferenceRequest,
    first: Bytes,
    relay: &mut Relay,
    limit: Duration,
) -> Result<(Bytes, bool), GatewayError> {
    let mut answer = Answer::default();
    let mut parser = SseParser::new();
    let mut items = Vec::new();
    let read = async {
        parser.feed(&first, &mut items);
        while let Some(frame) = relay.next().await {
            let frame = frame.map_err(|e| GatewayError::UpstreamFailed(e.to_string()))?;
            parser.feed(&frame, &mut items);
            for item in items.drain(..) {
                answer.take(item)?;
            }
        }
        parser.finish(&mut items);
        for item in items.drain(..) {
            answer.take(item)?;
        }
        Ok::<(), GatewayError>(())
    };
    let outcome = tokio::time::timeout(limit, read).await;
    // A failed relay ends with one error event, which says less than the error itself: a
    // stall is a timeout (504), a refusal keeps its status and is not retried elsewhere.
    if let (Ok(Err(_)), Some(e)) = (&outcome, relay.failure()) {
        return Err(e.clone());
    }
    match outcome {
        Ok(Ok(())) if answer.done => Ok((
            Bytes::from(answer.into_json(req).to_string()),
            relay.metered().estimated,
        )),
        Ok(Ok(())) => Err(GatewayError::UpstreamFailed(
            "the worker's answer ended before it was complete".into(),
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            let e = GatewayError::UpstreamTimeout(format!(
                "the worker did not finish its answer within {} ms",
                limit.as_millis()
            ));
            relay.abort(GatewayError::UpstreamTimeout(e.to_string()));
            Err(e)
        }
    }
}

/// The answer so far.
#[derive(Default)]
struct Answer {
    id: Option<Value>,
    created: Option<Value>,
    system_fingerprint: Option<Value>,
    usage: Option<Value>,
    choices: BTreeMap<u64, Choice>,
    done: bool,
}

#[derive(Default)]
struct Choice {
    text: String,
    reasoning: Option<String>,
    refusal: Option<String>,
    /// Tool calls by their index.
    tool_calls: BTreeMap<u64, ToolCall>,
    logprobs: Option<Value>,
    finish_reason: Option<Value>,
    stop_reason: Option<Value>,
}

#[derive(Default)]
struct ToolCall {
    id: Option<Value>,
    kind: Option<Value>,
    name: Option<Value>,
    arguments: String,
}

impl Answer {
    fn take(&mut self, item: SseItem) -> Result<(), GatewayError> {
        let SseItem::Event { data, .. } = item else {
            return Ok(()); // keep-alive comments
        };
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if self.take_in_place(&data) {
            return Ok(());
        }
        self.take_value(&data)
    }

    /// Takes any chunk, read as a `Value`.
    fn take_value(&mut self, data: &str) -> Result<(), GatewayError> {
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| GatewayError::Internal(format!("relayed chunk is not JSON: {e}")))?;
        if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the worker failed mid-answer");
            return Err(GatewayError::UpstreamFailed(message.to_string()));
        }
        for (slot, key) in [
            (&mut self.id, "id"),
            (&mut self.created, "created"),
            (&mut self.system_fingerprint, "system_fingerprint"),
        ] {
            if slot.is_none() {
                *slot = chunk.get(key).filter(|v| !v.is_null()).cloned();
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        for c in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            self.choices.entry(index).or_default().take(c);
        }
        Ok(())
    }

    /// Takes the common chunk (text, reasoning, a refusal; no error, tool calls or logprobs)
    /// without a `Value` tree; `false`, with nothing taken, when [`Self::take`] must read it.
    fn take_in_place(&mut self, data: &str) -> bool {
        // serde reads a struct from a JSON array too: only an object is a chunk.
        if !data.trim_start().starts_with('{') || too_deep(data.as_bytes()) {
            return false;
        }
        let Ok(chunk) = serde_json::from_str::<in_place::Chunk>(data) else {
            return false;
        };
        let choices = chunk.choices.as_deref().unwrap_or_default();
        if chunk.error.is_some()
            || choices.iter().any(|c| {
                c.logprobs.is_some() || c.delta.as_ref().is_some_and(|d| d.tool_calls.is_some())
            })
        {
            return false;
        }
        // Every value is read before anything is taken: one the general path would refuse
        // (a number out of range) sends the whole chunk there.
        let value = |raw: Option<&RawValue>| -> Result<Option<Value>, serde_json::Error> {
            raw.map(|r| serde_json::from_str(r.get())).transpose()
        };
        let (Ok(id), Ok(created), Ok(fingerprint), Ok(usage)) = (
            value(chunk.id),
            value(chunk.created),
            value(chunk.system_fingerprint),
            value(chunk.usage),
        ) else {
            return false;
        };
        let mut ends = Vec::with_capacity(choices.len());
        for c in choices {
            let (Ok(finish), Ok(stop)) = (value(c.finish_reason), value(c.stop_reason)) else {
                return false;
            };
            ends.push((finish, stop));
        }
        for (slot, v) in [
            (&mut self.id, id),
            (&mut self.created, created),
            (&mut self.system_fingerprint, fingerprint),
        ] {
            if slot.is_none() {
                *slot = v;
            }
        }
        if let Some(usage) = usage {
            self.usage = Some(usage);
        }
        for (c, (finish, stop)) in choices.iter().zip(ends) {
            let choice = self.choices.entry(c.index.unwrap_or(0)).or_default();
            let delta = c.delta.as_ref();
            let text = match delta.map(|d| &d.content) {
                Some(Text::Absent) | None => c.text.as_str(),
                Some(content) => content.as_str(),
            };
            if let Some(t) = text {
                choice.text.push_str(t);
            }
            for (slot, part) in [
                (&mut choice.reasoning, delta.map(|d| &d.reasoning_content)),
                (&mut choice.refusal, delta.map(|d| &d.refusal)),
            ] {
                if let Some(t) = part.and_then(Text::as_str) {
                    slot.get_or_insert_with(String::new).push_str(t);
                }
            }
            if let Some(f) = finish {
                choice.finish_reason = Some(f);
            }
            if let Some(s) = stop {
                choice.stop_reason = Some(s);
            }
        }
        true
    }

    fn into_json(self, req: &InferenceRequest) -> Value {
        let chat = req.endpoint == Endpoint::Chat;
        let choices: Vec<Value> = self
            .choices
            .into_iter()
            .map(|(index, c)| c.into_json(index, chat))
            .collect();
        let mut out = Map::new();
        out.insert("id".into(), self.id.unwrap_or(Value::Null));
        out.insert(
            "object".into(),
            json!(if chat {
                "chat.completion"
            } else {
                "text_completion"
            }),
        );
        out.insert("created".into(), self.created.unwrap_or(Value::Null));
        out.insert("model".into(), json!(req.model));
        if let Some(fp) = self.system_fingerprint {
            out.insert("system_fingerprint".into(), fp);
        }
        out.insert("choices".into(), Value::Array(choices));
        out.insert("usage".into(), self.usage.unwrap_or(Value::Null));
        Value::Object(out)
    }
}

impl Choice {
    fn take(&mut self, c: &Value) {
        let delta = c.get("delta");
        let text = delta
            .and_then(|d| d.get("content"))
            .or_else(|| c.get("text"))
            .and_then(Value::as_str);
        if let Some(t) = text {
            self.text.push_str(t);
        }
        for (slot, key) in [
            (&mut self.reasoning, "reasoning_content"),
            (&mut self.refusal, "refusal"),
        ] {
            if let Some(t) = delta.and_then(|d| d.get(key)).and_then(Value::as_str) {
                slot.get_or_insert_with(String::new).push_str(t);
            }
        }
        for call in delta
            .and_then(|d| d.get("tool_calls"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let t = self.tool_calls.entry(index).or_default();
            let set = |slot: &mut Option<Value>, v: Option<&Value>| {
                if slot.is_none() {
                    *slot = v.filter(|v| !v.is_null()).cloned();
                }
            };
            set(&mut t.id, call.get("id"));
            set(&mut t.kind, call.get("type"));
            set(&mut t.name, call.pointer("/function/name"));
            if let Some(a) = call.pointer("/function/arguments").and_then(Value::as_str) {
                t.arguments.push_str(a);
            }
        }
        if let Some(lp) = c.get("logprobs").filter(|l| !l.is_null()) {
            merge_logprobs(self.logprobs.get_or_insert_with(|| json!({})), lp);
        }
        if let Some(f) = c.get("finish_reason").filter(|f| !f.is_null()) {
            self.finish_reason = Some(f.clone());
        }
        if let Some(s) = c.get("stop_reason").filter(|s| !s.is_null()) {
            self.stop_reason = Some(s.clone());
        }
    }

    fn into_json(self, index: u64, chat: bool) -> Value {
        let mut out = Map::new();
        out.insert("index".into(), json!(index));
        if chat {
            let mut message = Map::new();
            message.insert("role".into(), json!("assistant"));
            let calls: Vec<Value> = self
                .tool_calls
                .into_values()
                .map(|t| {
                    json!({
                        "id": t.id,
                        "type": t.kind.unwrap_or_else(|| json!("function")),
                        "function": {"name": t.name, "arguments": t.arguments},
                    })
                })
                .collect();
            // OpenAI sends `content: null` with tool calls and no text.
            let content = if self.text.is_empty() && !calls.is_empty() {
                Value::Null
            } else {
                json!(self.text)
            };
            message.insert("content".into(), content);
            if let Some(r) = self.refusal {
                message.insert("refusal".into(), json!(r));
            }
            if let Some(r) = self.reasoning {
                message.insert("reasoning_content".into(), json!(r));
            }
            if !calls.is_empty() {
                message.insert("tool_calls".into(), Value::Array(calls));
            }
            out.insert("message".into(), Value::Object(message));
        } else {
            out.insert("text".into(), json!(self.text));
        }
        out.insert("logprobs".into(), self.logprobs.unwrap_or(Value::Null));
        out.insert(
            "finish_reason".into(),
            self.finish_reason.unwrap_or(Value::Null),
        );
        if let Some(s) = self.stop_reason {
            out.insert("stop_reason".into(), s);
        }
        Value::Object(out)
    }
}

/// A relayed chunk's parts, borrowed (see [`Answer::take_in_place`]). `null` reads as absent,
/// as the general path's `filter(|v| !v.is_null())` does.
mod in_place {
    use serde::Deserialize;
    use serde_json::value::RawValue;

    use super::{Obj, Text};

    #[derive(Deserialize)]
    pub struct Chunk<'a> {
        #[serde(borrow, default)]
        pub id: Option<&'a RawValue>,
        #[serde(borrow, default)]
        pub created: Option<&'a RawValue>,
        #[serde(borrow, default)]
        pub system_fingerprint: Option<&'a RawValue>,
        #[serde(borrow, default)]
        pub usage: Option<&'a RawValue>,
        #[serde(borrow, default)]
        pub error: Option<&'a RawValue>,
        #[serde(borrow, default)]
        pub choices: Option<Vec<Obj<Choice<'a>>>>,
    }

    #[derive(Deserialize)]
    pub struct Choice<'a> {
        #[serde(default)]
        pub index: Option<u64>,
        #[serde(borrow, default)]
        pub delta: Option<Obj<Delta<'a>>>,
        #[serde(borrow, default)]
        pub text: Text<'a>,
        #[serde(borrow, default)]
        pub logprobs: Option<&'a RawValue>,
        #[serde(borrow, default)]
        pub finish_reason: Option<&'a RawValue>,
        #[serde(borrow, default)]
        pub stop_reason: Option<&'a RawValue>,
    }

    #[derive(Deserialize)]
    pub struct Delta<'a> {
        #[serde(borrow, default)]
        pub content: Text<'a>,
        #[serde(borrow, default)]
        pub reasoning_content: Text<'a>,
        #[serde(borrow, default)]
        pub refusal: Text<'a>,
        #[serde(borrow, default)]
        pub tool_calls: Option<&'a RawValue>,
    }
}

/// Appends a chunk's logprobs to the answer's: every array field (`content` for chat;
/// `tokens`, `token_logprobs`, `top_logprobs`, `text_offset` for completions) is extended.
fn merge_logprobs(into: &mut Value, chunk: &Value) {
    let (Value::Object(into), Value::Object(chunk)) = (into, chunk) else {
        return;
    };
    for (key, v) in chunk {
        match (into.get_mut(key), v) {
            (Some(Value::Array(have)), Value::Array(more)) => have.extend(more.iter().cloned()),
            (None, v) => {
                into.insert(key.clone(), v.clone());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn answer(endpoint: Endpoint, events: &[&str]) -> Value {
        let body = match endpoint {
            Endpoint::Chat => {
                json!({"model": "pub", "messages": [{"role": "user", "content": "x"}]})
            }
            Endpoint::Completions => json!({"model": "pub", "prompt": "x"}),
        };
        let req = InferenceRequest::from_map(endpoint, body.as_object().unwrap().clone()).unwrap();
        let mut a = Answer::default();
        for e in events {
            a.take(SseItem::Event {
                event: None,
                data: (*e).to_string(),
            })
            .unwrap();
        }
        assert!(a.done);
        a.into_json(&req)
    }

    #[test]
    fn chat_chunks_become_one_message_with_tool_calls_and_usage() {
        let v = answer(
            Endpoint::Chat,
            &[
                r#"{"id":"c1","created":7,"model":"pub","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
                r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
                r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"lo"},"logprobs":{"content":[{"token":"lo"}]}}]}"#,
                r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
                r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}"#,
                r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
                "[DONE]",
            ],
        );
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(
            (v["id"].clone(), v["created"].clone()),
            (json!("c1"), json!(7))
        );
        let c = &v["choices"][0];
        assert_eq!(c["message"]["content"], "Hello");
        assert_eq!(
            c["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(c["message"]["tool_calls"][0]["id"], "t1");
        assert_eq!(c["logprobs"]["content"], json!([{"token": "lo"}]));
        assert_eq!(c["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["total_tokens"], 7);
    }

    #[test]
    fn completion_choices_are_merged_by_index() {
        let v = answer(
            Endpoint::Completions,
            &[
                r#"{"id":"x","choices":[{"index":1,"text":"b"},{"index":0,"text":"a"}]}"#,
                r#"{"id":"x","choices":[{"index":0,"text":"c","finish_reason":"stop"},{"index":1,"text":"d","finish_reason":"length"}]}"#,
                r#"{"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":4,"total_tokens":5}}"#,
                "[DONE]",
            ],
        );
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "ac");
        assert_eq!(v["choices"][1]["text"], "bd");
        assert_eq!(v["choices"][1]["finish_reason"], "length");
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
                maybe(vec![json!(0), json!(1), json!(-1)]),
                maybe(vec![json!({}), json!("x")]),
                (
                    maybe(vec![json!("He\"l"), json!(""), json!(3)]),
                    maybe(vec![json!("think")]),
                    maybe(vec![json!("no")]),
                    maybe(vec![json!([{"index": 0, "id": "t", "function": {"name": "f", "arguments": "{}"}}])]),
                ),
                maybe(vec![json!("txt")]),
                maybe(vec![json!({"content": [{"token": "a"}]})]),
                maybe(vec![json!("stop")]),
                maybe(vec![json!(7)]),
            )
                .prop_map(|(index, delta, (content, reasoning, refusal, calls), text, lp, finish, stop)| {
                    let put = |m: &mut Map<String, Value>, k: &str, v: Option<Value>| {
                        if let Some(v) = v {
                            m.insert(k.into(), v);
                        }
                    };
                    let mut c = Map::new();
                    put(&mut c, "index", index);
                    let delta = delta.map(|d| match d {
                        Value::Object(mut o) => {
                            put(&mut o, "content", content);
                            put(&mut o, "reasoning_content", reasoning);
                            put(&mut o, "refusal", refusal);
                            put(&mut o, "tool_calls", calls);
                            Value::Object(o)
                        }
                        other => other,
                    });
                    put(&mut c, "delta", delta);
                    put(&mut c, "text", text);
                    put(&mut c, "logprobs", lp);
                    put(&mut c, "finish_reason", finish);
                    put(&mut c, "stop_reason", stop);
                    Value::Object(c)
                })
        }

        fn chunk() -> impl Strategy<Value = Value> {
            (
                maybe(vec![json!("c1"), json!("c2")]),
                maybe(vec![json!(7)]),
                maybe(vec![json!("fp")]),
                maybe(vec![json!({"prompt_tokens": 1, "completion_tokens": 2})]),
                prop_oneof![
                    Just(None),
                    Just(Some(Value::Null)),
                    proptest::collection::vec(
                        prop_oneof![4 => choice(), 1 => Just(json!([0, null, "hello", "stop"]))],
                        0..3
                    )
                    .prop_map(|c| Some(Value::Array(c))),
                ],
            )
                .prop_map(|(id, created, fp, usage, choices)| {
                    let mut o = Map::new();
                    for (k, v) in [
                        ("id", id),
                        ("created", created),
                        ("system_fingerprint", fp),
                        ("usage", usage),
                        ("choices", choices),
                    ] {
                        if let Some(v) = v {
                            o.insert(k.into(), v);
                        }
                    }
                    Value::Object(o)
                })
        }

        proptest! {
            /// However each chunk was read, the client gets the same answer.
            #[test]
            fn in_place_and_value_paths_agree(chunks in proptest::collection::vec(chunk(), 1..5), chat in any::<bool>()) {
                let (mut fast, mut general) = (Answer::default(), Answer::default());
                for c in &chunks {
                    let data = c.to_string();
                    let a = fast.take(SseItem::Event { event: None, data: data.clone() }).is_ok();
                    let b = general.take_value(&data).is_ok();
                    prop_assert_eq!(a, b);
                }
                let (endpoint, body) = if chat {
                    (Endpoint::Chat, json!({"model": "pub", "messages": [{"role": "user", "content": "x"}]}))
                } else {
                    (Endpoint::Completions, json!({"model": "pub", "prompt": "x"}))
                };
                let req = InferenceRequest::from_map(endpoint, body.as_object().unwrap().clone()).unwrap();
                prop_assert_eq!(fast.into_json(&req), general.into_json(&req));
            }
        }
    }

    #[test]
    fn an_error_event_is_an_error() {
        let mut a = Answer::default();
        let e = a.take(SseItem::Event {
            event: None,
            data: r#"{"error":{"message":"stalled","type":"upstream_error"}}"#.into(),
        });
        assert!(e.is_err());
    }
}
