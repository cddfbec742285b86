//! What a response consumed, as the worker reported it or, where it reported nothing, as we
//! counted it. Estimates are marked so that the record says which is which.

use switchyard_protocol::{InferenceRequest, Usage};

/// Prompt tokens when no tokenizer is at hand: one token per four characters, the usual rule
/// of thumb for English text with BPE tokenizers, plus a few tokens of chat framing per message.
pub fn estimate_prompt_tokens(req: &InferenceRequest) -> u64 {
    let framing = match req.body.get("messages").and_then(|m| m.as_array()) {
        Some(messages) => 4 * messages.len() as u64,
        None => 0,
    };
    (req.prompt_chars() as u64).div_ceil(4) + framing
}

#[derive(Debug, Default, Clone)]
pub struct StreamAccount {
    /// Usage as the worker reported it.
    pub reported: Option<Usage>,
    /// Prompt tokens counted by the worker's own tokenizer, for runtimes that stream no usage.
    pub counted_prompt: Option<u64>,
    /// Our estimate, the last resort.
    pub prompt_estimate: u64,
    /// Content-bearing chunks relayed: runtimes stream one token per chunk, so this counts
    /// completion tokens when the worker reports no usage.
    pub content_chunks: u64,
    pub finish_reason: Option<String>,
    /// The completion's text as relayed, only when the tenant logs content.
    pub completion: Option<crate::content_log::capture::Capture>,
}

impl StreamAccount {
    pub fn new(req: &InferenceRequest) -> Self {
        Self {
            prompt_estimate: estimate_prompt_tokens(req),
            ..Self::default()
        }
    }

    /// Notes relayed completion text; a no-op unless content is captured.
    pub fn relayed(&mut self, text: &str) {
        if let Some(c) = &mut self.completion {
            c.push(text);
        }
    }

    /// The usage to bill and show, and whether it is an estimate: the worker's report if it
    /// gave one, else the worker's prompt count (or our estimate) and the chunks we relayed.
    pub fn usage(&self) -> (Usage, bool) {
        match (self.reported, self.counted_prompt) {
            (Some(u), _) => (u, false),
            (None, Some(prompt)) => (Usage::new(prompt, self.content_chunks), false),
            (None, None) => (Usage::new(self.prompt_estimate, self.content_chunks), true),
        }
    }
}
