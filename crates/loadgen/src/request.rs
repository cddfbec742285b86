//! One request and what was measured of it.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use switchyard_protocol::sse::{SseItem, SseParser};
use tokio::time::Instant;

/// What one request did. Durations are from the request's start (its scheduled start in open
/// loop).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// `None` when it succeeded; else the kind of error (`http_503`, `timeout`, ...).
    pub error: Option<String>,
    pub ttft: Option<Duration>,
    /// Gaps between successive text events.
    pub itl: Vec<Duration>,
    pub ttlt: Option<Duration>,
    /// From `usage`, when the response had one.
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Events (or, non-streamed, choices) that carried text.
    pub text_events: u64,
    /// The response said it came from a simulated worker (`x-switchyard-sim`).
    pub simulated: bool,
    /// The response's HTTP status; `None` when none arrived (the request was lost).
    pub status: Option<u16>,
    /// From the request's start to when it was handed to the HTTP client: how late the
    /// generator was (open loop), about nothing when it keeps up.
    pub sent: Duration,
}

impl Outcome {
    /// Failed without any HTTP response: the connection failed, or the timeout passed before
    /// a status line arrived.
    pub fn lost(&self) -> bool {
        self.error.is_some() && self.status.is_none()
    }
}

/// The generated text of one streamed event or response, if any (chat `delta.content` /
/// `message.content`, or completions `text`).
fn text_of(v: &Value) -> Option<&str> {
    let choice = v.get("choices")?.as_array()?.first()?;
    choice
        .get("delta")
        .and_then(|d| d.get("content"))
        .or_else(|| choice.get("message").and_then(|m| m.get("content")))
        .or_else(|| choice.get("text"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn take_usage(v: &Value, out: &mut Outcome) {
    // The sim marks its responses; the header may not survive a gateway, the body does.
    if v.get("system_fingerprint").and_then(Value::as_str) == Some("switchyard-sim") {
        out.simulated = true;
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        out.prompt_tokens = u.get("prompt_tokens").and_then(Value::as_u64);
        out.completion_tokens = u.get("completion_tokens").and_then(Value::as_u64);
    }
}

/// An error before the response's headers arrived. A connect timeout is a `connect` error:
/// the server was never reached, which is a different fault from a slow answer.
fn transport_error(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connect".into()
    } else if e.is_timeout() {
        "timeout".into()
    } else {
        "transport".into()
    }
}

/// An error reading the body after the headers arrived: the server (or something between)
/// cut the response off, as distinct from a server that closed cleanly but early
/// (`stream_incomplete`).
fn cut_error(e: &reqwest::Error, stream: bool) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if stream {
        "stream_cut".into()
    } else {
        "body_cut".into()
    }
}

/// Sends one request now and measures it, as a client would (the synthetic prober's probe);
/// never fails (a failure is an [`Outcome`] with an error).
pub async fn measure(
    client: &reqwest::Client,
    url: &reqwest::Url,
    api_key: Option<&str>,
    body: &Value,
    stream: bool,
    timeout: Duration,
) -> Outcome {
    send(client, url, api_key, body, stream, Instant::now(), timeout).await
}

/// Sends one request and measures it; never fails (a failure is an [`Outcome`] with an
/// error). `start` is when the request was due, so in open loop the time it waited for its
/// turn counts against the server.
pub(crate) async fn send(
    client: &reqwest::Client,
    url: &reqwest::Url,
    api_key: Option<&str>,
    body: &Value,
    stream: bool,
    start: Instant,
    timeout: Duration,
) -> Outcome {
    let mut out = Outcome {
        sent: Instant::now().saturating_duration_since(start),
        ..Outcome::default()
    };
    let work = attempt(client, url, api_key, body, stream, start, &mut out);
    // A timeout too long for the clock to represent is no timeout at all.
    let timed_out = match start.checked_add(timeout) {
        Some(deadline) => tokio::time::timeout_at(deadline, work).await.is_err(),
        None => {
            work.await;
            false
        }
    };
    if timed_out {
        // An HTTP error whose body then hung is still that HTTP error.
        out.error.get_or_insert_with(|| "timeout".into());
    }
    if out.error.is_none() {
        out.ttlt = Some(Instant::now().saturating_duration_since(start));
    }
    out
}

async fn attempt(
    client: &reqwest::Client,
    url: &reqwest::Url,
    api_key: Option<&str>,
    body: &Value,
    stream: bool,
    start: Instant,
    out: &mut Outcome,
) {
    let mut req = client.post(url.clone()).json(body);
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(transport_error(&e));
            return;
        }
    };
    out.simulated = resp.headers().contains_key("x-switchyard-sim");
    let status = resp.status();
    out.status = Some(status.as_u16());
    if !status.is_success() {
        out.error = Some(format!("http_{}", status.as_u16()));
        // Read the body so the connection can be reused.
        let _ = resp.bytes().await;
        return;
    }
    // A server that answers a stream request with one JSON document (often an error with
    // status 200) is read as a whole response, not as an event stream with no events.
    let is_sse = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.trim_start().starts_with("text/event-stream"));
    if stream && is_sse {
        read_stream(resp, start, out).await;
    } else {
        read_whole(resp, stream, start, out).await;
    }
}

/// A non-streamed response: TTFT is when the whole of it has arrived.
async fn read_whole(resp: reqwest::Response, stream: bool, start: Instant, out: &mut Outcome) {
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            out.error = Some(cut_error(&e, false));
            return;
        }
    };
    let arrived = Instant::now();
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        out.error = Some("bad_json".into());
        return;
    };
    if v.get("error").is_some() {
        out.error = Some("response_error".into());
        return;
    }
    if stream {
        out.error = Some("not_a_stream".into());
        return;
    }
    out.ttft = Some(arrived.saturating_duration_since(start));
    out.text_events = u64::from(text_of(&v).is_some());
    take_usage(&v, out);
}

/// An event stream: each text event is timed by the arrival of the chunk that completed it
/// (taken before any parsing, so parsing does not count as latency), whatever the chunks'
/// boundaries.
async fn read_stream(resp: reqwest::Response, start: Instant, out: &mut Outcome) {
    let mut parser = SseParser::new();
    let mut items = Vec::new();
    let mut body = resp.bytes_stream();
    let mut last_text: Option<Instant> = None;
    let mut done = false;
    loop {
        let chunk = body.next().await;
        let arrived = Instant::now();
        match &chunk {
            Some(Ok(bytes)) => parser.feed(bytes, &mut items),
            Some(Err(e)) => {
                out.error = Some(cut_error(e, true));
                return;
            }
            None => parser.finish(&mut items),
        }
        for item in items.drain(..) {
            let SseItem::Event { data, .. } = item else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                out.error = Some("bad_event".into());
                return;
            };
            if v.get("error").is_some() {
                out.error = Some("stream_error".into());
                return;
            }
            if text_of(&v).is_some() {
                match last_text {
                    None => out.ttft = Some(arrived.saturating_duration_since(start)),
                    Some(prev) => out.itl.push(arrived.saturating_duration_since(prev)),
                }
                last_text = Some(arrived);
                out.text_events += 1;
            }
            take_usage(&v, out);
        }
        if chunk.is_none() {
            break;
        }
    }
    if !done {
        out.error = Some("stream_incomplete".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_of_chat_and_completions() {
        assert_eq!(
            text_of(&json!({"choices":[{"delta":{"content":" hi"}}]})),
            Some(" hi")
        );
        assert_eq!(
            text_of(&json!({"choices":[{"delta":{"role":"assistant","content":""}}]})),
            None
        );
        assert_eq!(text_of(&json!({"choices":[{"text":"x"}]})), Some("x"));
        assert_eq!(
            text_of(&json!({"choices":[{"message":{"content":"y"}}]})),
            Some("y")
        );
        assert_eq!(
            text_of(&json!({"choices":[],"usage":{"prompt_tokens":1}})),
            None
        );
    }
}
