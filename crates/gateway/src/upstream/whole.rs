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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn events(bytes: &Bytes) -> Vec<Value> {
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
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

    #[test]
    fn an_error_object_is_a_failure() {
        assert!(as_events(Endpoint::Chat, br#"{"error":{"message":"x"}}"#).is_err());
        assert!(as_events(Endpoint::Chat, b"[1]").is_err());
    }
}
