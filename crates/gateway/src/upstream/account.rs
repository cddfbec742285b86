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
    /// Content-bearing chunks relayed: runtimes stream one token per chunk, so this counts
    /// completion tokens when the worker reports no usage.
    pub content_chunks: u64,
    pub finish_reason: Option<String>,
}

impl StreamAccount {
    /// The usage to bill and show: the worker's figures if it gave them, else our count.
    pub fn usage(&self, req: &InferenceRequest) -> (Usage, bool) {
        match self.reported {
            Some(u) => (u, false),
            None => (Usage::new(estimate_prompt_tokens(req), self.content_chunks), true),
        }
    }
}
