//! A worker that answers a stream request with one whole JSON object (an OpenAI-compatible
//! server that ignores `stream: true`). Its answer is turned into the events a stream of it
//! would have been, so that the relay, the usage bounds and the assembly of unstreamed answers
//! treat every worker alike. No first token was seen before the whole answer: such an answer
//! has no TTFT (see `Relay::no_first_token`).
//!
//! Each choice becomes the chunks a stream of it would have been: its text, reasoning and
//! tool-call arguments cut in pieces of four characters, so that the gateway's own count (one
//! completion token per content-bearing chunk, its usual estimate of four characters per
//! token) is right whether the worker reported no usage or usage the gateway refuses.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use switchyard_protocol::Endpoint;

use crate::error::GatewayError;

/// A whole answer larger than this is refused rather than held in memory. Generous: a long
/// completion with logprobs for every token is a few MB.
pub const MAX_WHOLE_ANSWER: usize = 64 * 1024 * 1024;

/// Characters per piece of a whole answer (the gateway's tokens estimate).
const CHARS_PER_TOKEN: usize = 4;

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
        let index = choice.get("index").cloned().unwrap_or(json!(0));
        let pieces = match endpoint {
            Endpoint::Chat => chat_deltas(choice),
            Endpoint::Completions => {
                let text = choice.get("text").and_then(Value::as_str).unwrap_or("");
                cut(text).into_iter().map(|t| json!(t)).collect()
            }
        };
        for piece in pieces {
            let mut c = Map::new();
            c.insert("index".into(), index.clone());
            match endpoint {
                Endpoint::Chat => c.insert("delta".into(), piece),
                Endpoint::Completions => c.insert("text".into(), piece),
            };
            push(chunk(vec![Value::Object(c)]));
        }
        // The end of the choice, as a stream ends one: no content, the reason and logprobs.
        let mut end = Map::new();
        end.insert("index".into(), index);
        match endpoint {
            Endpoint::Chat => end.insert("delta".into(), json!({})),
            Endpoint::Completions => end.insert("text".into(), json!("")),
        };
        for key in ["logprobs", "finish_reason", "stop_reason"] {
            if let Some(v) = choice.get(key) {
                end.insert(key.into(), v.clone());
            }
        }
        push(chunk(vec![Value::Object(end)]));
    }
    if let Some(u) = usage {
        let mut c = chunk(Vec::new());
        c.insert("usage".into(), u);
        push(c);
    }
    out.push_str("data: [DONE]\n\n");
    Ok(Bytes::from(out))
}

/// A chat choice's message as the deltas a stream of it carries: the role, reasoning and
/// content in pieces, then each tool call (its id and name, then its arguments in pieces),
/// then a refusal.
fn chat_deltas(choice: &Value) -> Vec<Value> {
    let message = choice.get("message").unwrap_or(&Value::Null);
    let text_of = |key: &str| message.get(key).and_then(Value::as_str).unwrap_or("");
    let mut deltas = vec![json!({"role": "assistant", "content": ""})];
    for key in ["reasoning_content", "content"] {
        deltas.extend(cut(text_of(key)).into_iter().map(|t| json!({ key: t })));
    }
    if let Some(Value::Array(calls)) = message.get("tool_calls") {
        for (i, call) in calls.iter().enumerate() {
            let index = call.get("index").cloned().unwrap_or(json!(i));
            let function = call.get("function").unwrap_or(&Value::Null);
            let mut head = json!({"index": index, "type": "function",
                "function": {"name": function.get("name").cloned().unwrap_or(json!("")), "arguments": ""}});
            if let Some(id) = call.get("id") {
                head["id"] = id.clone();
            }
            deltas.push(json!({"tool_calls": [head]}));
            let arguments = function
                .get("arguments")
                .and_then(Value::as_str)
                .unwrap_or("");
            deltas.extend(
                cut(arguments).into_iter().map(
                    |a| json!({"tool_calls": [{"index": index, "function": {"arguments": a}}]}),
                ),
            );
        }
    }
    if let Some(refusal) = message.get("refusal").filter(|r| !r.is_null()) {
        deltas.push(json!({ "refusal": refusal }));
    }
    deltas
}

/// `text` in pieces of [`CHARS_PER_TOKEN`] characters; nothing for an empty text.
fn cut(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(CHARS_PER_TOKEN)
        .map(|c| c.iter().collect())
        .collect()
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

    /// Text, reasoning and tool-call arguments come in four-character pieces, with or without
    /// usage: if the worker's usage is refused, the gateway's count of pieces is billed.
    #[test]
    fn a_whole_chat_answer_becomes_the_stream_it_would_have_been() {
        let body = br#"{"id":"c","object":"chat.completion","created":1,"model":"m",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hello there",
            "reasoning_content":"hmm",
            "tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let bytes = as_events(Endpoint::Chat, body).unwrap();
        assert!(bytes.ends_with(b"data: [DONE]\n\n"));
        let ev = events(&bytes);
        assert!(ev.iter().all(|e| e["id"] == "c"));
        assert_eq!(ev[0]["object"], "chat.completion.chunk");
        let deltas: Vec<&Value> = ev
            .iter()
            .filter_map(|e| e["choices"].get(0).map(|c| &c["delta"]))
            .collect();
        assert_eq!(deltas[0]["role"], "assistant");
        assert_eq!(deltas[1]["reasoning_content"], "hmm");
        let content: Vec<&str> = deltas
            .iter()
            .filter_map(|d| d["content"].as_str())
            .collect();
        assert_eq!(content, ["", "Hell", "o th", "ere"]);
        let calls: Vec<&Value> = deltas.iter().filter_map(|d| d.get("tool_calls")).collect();
        assert_eq!(calls[0][0]["id"], "t");
        assert_eq!(calls[0][0]["function"]["name"], "f");
        let arguments: String = calls
            .iter()
            .filter_map(|c| c[0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(arguments, "{\"a\":1}");
        assert_eq!(calls.len(), 3, "the head, then two pieces of arguments");
        let end = &ev[ev.len() - 2]["choices"][0];
        assert_eq!(end["finish_reason"], "tool_calls");
        assert_eq!(ev[ev.len() - 1]["usage"]["total_tokens"], 5);
    }

    #[test]
    fn completion_text_is_cut_into_four_character_pieces() {
        let body =
            br#"{"id":"x","choices":[{"index":0,"text":"abcdefghij","finish_reason":"length"}]}"#;
        let ev = events(&as_events(Endpoint::Completions, body).unwrap());
        let texts: Vec<&str> = ev
            .iter()
            .map(|e| e["choices"][0]["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["abcd", "efgh", "ij", ""]);
        assert_eq!(ev[3]["choices"][0]["finish_reason"], "length");
        assert!(ev[0]["choices"][0].get("finish_reason").is_none());
    }

    #[test]
    fn an_error_object_is_a_failure() {
        assert!(as_events(Endpoint::Chat, br#"{"error":{"message":"x"}}"#).is_err());
        assert!(as_events(Endpoint::Chat, b"[1]").is_err());
    }
}
