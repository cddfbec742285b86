//! Conversation stickiness: the turns of one conversation go to the worker that served the
//! previous turn while it stays eligible, so its KV cache (prefix cache in vLLM/SGLang) still
//! holds the conversation's beginning. Forgotten after an idle time.
//!
//! A conversation is recognised by its beginning: the tenant, the model and the first two
//! messages (a system prompt and the first user turn), which every later turn repeats. For
//! completions, the first 512 bytes of the prompt. No client cooperation needed.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchyard_protocol::{Endpoint, InferenceRequest};

#[derive(Clone)]
pub struct StickyTable {
    cache: moka::sync::Cache<u64, Arc<str>>,
}

impl std::fmt::Debug for StickyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StickyTable")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl StickyTable {
    pub fn new(idle: Duration, capacity: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .time_to_idle(idle)
                .max_capacity(capacity)
                .build(),
        }
    }

    /// The worker this conversation last went to.
    pub fn get(&self, key: u64) -> Option<Arc<str>> {
        self.cache.get(&key)
    }

    pub fn remember(&self, key: u64, worker: &str) {
        if self.cache.get(&key).as_deref() != Some(worker) {
            self.cache.insert(key, Arc::from(worker));
        }
    }
}

/// The conversation key of a request, if it has a beginning to recognise.
pub fn conversation_key(tenant: &str, req: &InferenceRequest) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tenant.hash(&mut h);
    req.model.hash(&mut h);
    match req.endpoint {
        Endpoint::Chat => {
            let messages = req.body.get("messages")?.as_array()?;
            for m in messages.iter().take(2) {
                m.get("role").and_then(Value::as_str).hash(&mut h);
                hash_content(m.get("content"), &mut h);
            }
        }
        Endpoint::Completions => {
            let prompt = req.body.get("prompt")?.as_str()?;
            let end = prompt.floor_char_boundary_compat(512);
            prompt[..end].hash(&mut h);
        }
    }
    Some(h.finish())
}

fn hash_content(content: Option<&Value>, h: &mut impl Hasher) {
    match content {
        Some(Value::String(s)) => s.hash(h),
        Some(Value::Array(parts)) => {
            for p in parts {
                p.get("text").and_then(Value::as_str).hash(h);
            }
        }
        _ => 0u8.hash(h),
    }
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, index: usize) -> usize;
}

impl FloorCharBoundary for str {
    /// The largest char boundary at or below `index` (std's is unstable on our MSRV).
    fn floor_char_boundary_compat(&self, index: usize) -> usize {
        if index >= self.len() {
            return self.len();
        }
        (0..=index)
            .rev()
            .find(|&i| self.is_char_boundary(i))
            .unwrap_or(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(messages: Value) -> InferenceRequest {
        let body = json!({"model": "m", "messages": messages});
        InferenceRequest::parse(Endpoint::Chat, body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn later_turns_of_a_conversation_share_its_key() {
        let first = chat(json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello"}
        ]));
        let third = chat(json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "and then?"}
        ]));
        let other = chat(json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "goodbye"}
        ]));
        let k = |r: &InferenceRequest| conversation_key("t", r).unwrap();
        assert_eq!(k(&first), k(&third));
        assert_ne!(k(&first), k(&other));
        assert_ne!(
            k(&first),
            conversation_key("another tenant", &first).unwrap()
        );
    }

    #[test]
    fn long_prompts_are_cut_on_a_char_boundary() {
        let s = "é".repeat(400); // 800 bytes, 2 per char
        assert_eq!(s.floor_char_boundary_compat(511), 510);
        let req = InferenceRequest::parse(
            Endpoint::Completions,
            json!({"model": "m", "prompt": s}).to_string().as_bytes(),
        )
        .unwrap();
        assert!(conversation_key("t", &req).is_some());
    }
}
