//! One line per request: what `switchyard bench --records FILE` writes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::request::Outcome;

/// What happened to one request, as one JSON object of a JSON Lines file. Times are in
/// milliseconds (to the microsecond): `scheduled_ms` and `sent_ms` from the run's start,
/// `ttft_ms` and `ttlt_ms` from the request's scheduled start (open loop: when it was due,
/// so a generator or server that falls behind is charged for the wait).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The request's number, from 0, in order of scheduled start.
    pub id: u64,
    /// When it was due (open loop) or started (closed loop).
    pub scheduled_ms: f64,
    /// When it was actually handed to the HTTP client; `sent_ms - scheduled_ms` is how late
    /// the generator was.
    pub sent_ms: f64,
    /// The max_tokens it asked for.
    pub max_tokens: u32,
    pub ok: bool,
    /// `None` on success; else the kind (`http_<status>`, `connect`, `timeout`, `transport`,
    /// `stream_cut`, `stream_incomplete`, `stream_error`, `bad_event`, `not_a_stream`, ...).
    pub error: Option<String>,
    /// Failed without any HTTP response: the connection failed, or the timeout passed before
    /// a status line arrived.
    pub lost: bool,
    /// The response's HTTP status, if one arrived.
    pub status: Option<u16>,
    /// To the first event with generated text, if one came (also on a request that failed
    /// after it).
    pub ttft_ms: Option<f64>,
    /// To the end of the response; successful requests only.
    pub ttlt_ms: Option<f64>,
    /// From the response's `usage`, if it had one.
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Events (or, not streamed, choices) that carried text: one per token on most servers.
    pub text_events: u64,
}

/// Milliseconds, rounded to the microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl RequestRecord {
    pub(crate) fn new(id: u64, scheduled: Duration, max_tokens: u32, o: &Outcome) -> Self {
        Self {
            id,
            scheduled_ms: ms(scheduled),
            sent_ms: ms(scheduled.saturating_add(o.sent)),
            max_tokens,
            ok: o.error.is_none(),
            error: o.error.clone(),
            lost: o.lost(),
            status: o.status,
            ttft_ms: o.ttft.map(ms),
            ttlt_ms: o.ttlt.map(ms),
            prompt_tokens: o.prompt_tokens,
            completion_tokens: o.completion_tokens,
            text_events: o.text_events,
        }
    }
}
