//! What a response consumed, as the worker reported it or, where it reported nothing, as we
//! counted it. Estimates are marked so that the record says which is which.

use switchyard_protocol::{InferenceRequest, Usage};

/// Prompt tokens when no tokenizer is at hand: one token per four characters, the usual rule
/// of thumb for English text with BPE tokenizers, plus a few tokens of chat framing per message.
pub fn estimate_prompt_tokens(req: &InferenceRequest) -> u64 {
    let framing = 4 * req.message_count() as u64;
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
    /// The text relayed so far, kept only for streams that can be resumed on another worker
    /// (see `relay::Resume`).
    pub resume_text: Option<String>,
    /// Completion tokens relayed before the stream was resumed on another worker: the new
    /// worker's usage counts from the resumption, with that text in its prompt.
    pub resumed_after: u64,
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
        if let Some(t) = &mut self.resume_text {
            t.push_str(text);
        }
    }

    /// The stream is being resumed on another worker: what came before stays counted, the
    /// new worker's report will cover only what follows.
    pub fn resuming(&mut self) {
        if let Some(u) = self.reported.take() {
            // A report from the broken worker (rare: usage comes last) is its whole count.
            self.content_chunks = self.content_chunks.max(u.completion_tokens);
        }
        self.resumed_after = self.content_chunks;
        self.finish_reason = None;
    }

    /// The usage to bill and show, and whether it is an estimate: the worker's report if it
    /// gave one, else the worker's prompt count (or our estimate) and the chunks we relayed.
    pub fn usage(&self) -> (Usage, bool) {
        if self.resumed_after > 0 {
            // The resumed worker's prompt held the text streamed before (about one token per
            // chunk): subtract it there, add it to the completion. An estimate, and marked so.
            let (prompt, completion) = match self.reported {
                Some(u) => (
                    u.prompt_tokens.saturating_sub(self.resumed_after),
                    u.completion_tokens + self.resumed_after,
                ),
                None => (self.prompt_estimate, self.content_chunks),
            };
            return (Usage::new(prompt, completion), true);
        }
        match (self.reported, self.counted_prompt) {
            (Some(u), _) => (u, false),
            (None, Some(prompt)) => (Usage::new(prompt, self.content_chunks), false),
            (None, None) => (Usage::new(self.prompt_estimate, self.content_chunks), true),
        }
    }
}
