//! Opt-in content logging, the gateway's half: capture a request's prompt and completion for
//! tenants who turned it on, redact them off the request's task, and queue the record to the
//! ledger's content writer. (The sweeper that deletes expired records is the control plane's.)
//!
//! Cost for tenants with logging off: one comparison when the request starts (no capture, no
//! buffering, nothing queued).

pub mod capture;
pub mod redact;

use serde_json::Value;
use switchyard_metering::content::ContentRecord;
use switchyard_metering::ledger::Ledger;
use switchyard_protocol::{Endpoint, InferenceRequest};

use capture::Capture;

/// Where a record's completion comes from.
pub enum Completion {
    None,
    /// A streamed completion, accumulated from the deltas the client was sent.
    Streamed(Capture),
}

/// A content record before redaction. Built when a logged request starts.
pub struct Draft {
    pub ttl_ms: i64,
    pub prompt: Capture,
    pub completion: Completion,
}

impl Draft {
    /// `None` unless the tenant logs content. The prompt is copied now (bounded by the cap):
    /// the request body is not ours to keep.
    pub fn start(ttl_ms: Option<i64>, req: &InferenceRequest) -> Option<Box<Draft>> {
        let ttl_ms = ttl_ms?;
        let prompt = match req.endpoint {
            Endpoint::Chat => req.body.get("messages"),
            Endpoint::Completions => req.body.get("prompt"),
        };
        let prompt = match prompt {
            Some(Value::String(s)) => Capture::of(s),
            Some(v) => Capture::of(&v.to_string()),
            None => Capture::default(),
        };
        Some(Box::new(Draft {
            ttl_ms,
            prompt,
            completion: Completion::None,
        }))
    }
}

/// What the record says besides the content.
pub struct Meta {
    pub request_id: String,
    pub tenant_id: String,
    pub model: String,
    pub endpoint: &'static str,
    pub stream: bool,
    pub status: &'static str,
    pub created_at_ms: i64,
}

/// Queues a logged request's record: takes a queue slot now (or drops the record, counted,
/// when the queue is full), then redacts on the blocking pool, never on the request's task.
pub fn submit(ledger: &Ledger, draft: Box<Draft>, meta: Meta) {
    let Some(slot) = ledger.content().try_reserve() else {
        crate::metrics::content_log_dropped("queue_full");
        tracing::warn!(request_id = %meta.request_id, tenant = %meta.tenant_id, "content log queue full; record dropped");
        return;
    };
    // Shutdown waits for this record like it waits for a usage record.
    let open = ledger.open();
    tokio::task::spawn_blocking(move || {
        match build(*draft, meta) {
            Some(record) => slot.send(record),
            None => crate::metrics::content_log_dropped("redaction_unavailable"),
        }
        drop(open);
    });
}

/// Redacts, then cuts to the stored cap. `None` when redaction is unavailable: nothing
/// unredacted is ever stored.
fn build(draft: Draft, meta: Meta) -> Option<ContentRecord> {
    let completion = match draft.completion {
        Completion::None => Capture::default(),
        Completion::Streamed(c) => c,
    };
    let mut prompt = redact::redact(&draft.prompt.text)?;
    let prompt_truncated = capture::cut(&mut prompt) || draft.prompt.truncated;
    let mut text = redact::redact(&completion.text)?;
    let completion_truncated = capture::cut(&mut text) || completion.truncated;
    Some(ContentRecord {
        request_id: meta.request_id,
        tenant_id: meta.tenant_id,
        model: meta.model,
        endpoint: meta.endpoint.to_string(),
        stream: meta.stream,
        status: meta.status.to_string(),
        created_at_ms: meta.created_at_ms,
        expires_at_ms: meta.created_at_ms.saturating_add(draft.ttl_ms),
        prompt,
        prompt_truncated,
        completion: text,
        completion_truncated,
    })
}
