//! What a prompt is made of, measured once when the request is parsed. Two figures come from
//! it, both without a tokenizer:
//!
//! - [`PromptSize::estimate`]: what admission reserves and the tier's prompt cap is held to.
//!   It must count everything the worker will see, or a prompt could slip past the cap and the
//!   tokens-per-minute limit in a form the estimate ignores (token ids, tool definitions,
//!   `tool_calls` arguments, images).
//! - [`PromptSize::upper_bound`]: the most prompt tokens a worker can truthfully report for the
//!   request. Every token of a byte-level BPE or byte-fallback SentencePiece vocabulary covers
//!   at least one byte of text, so the text's UTF-8 bytes bound its tokens; chat templates add
//!   a bounded number of special tokens per message and a bounded preamble; each token id is
//!   one token; each non-text part is at most [`MEDIA_PART_BOUND`] tokens.

use serde_json::Value;

/// Tokens a non-text content part (image, audio, file) counts in the estimate: about what the
/// common vision models served by vLLM make of a 1024×1024 image.
pub const MEDIA_PART_ESTIMATE: u64 = 1_024;
/// The most tokens a non-text part may be reported as: a large image at Qwen2.5-VL's default
/// `max_pixels` is 16,384 tokens.
pub const MEDIA_PART_BOUND: u64 = 16_384;
/// Chat framing per message in the estimate (role markers, separators).
pub const MESSAGE_FRAMING_ESTIMATE: u64 = 4;
/// The most framing tokens a chat template adds per message.
pub const MESSAGE_FRAMING_BOUND: u64 = 32;
/// The most tokens a chat template adds once per prompt (a default system prompt, a date line,
/// the instructions that come with tool definitions).
pub const TEMPLATE_BOUND: u64 = 2_048;

/// The parts of a prompt that cost tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptSize {
    /// Characters of text the worker's tokenizer will see: message contents and names,
    /// `tool_calls` (names and arguments), tool definitions as JSON, completion prompts and
    /// suffixes.
    pub text_chars: u64,
    /// The same text's UTF-8 bytes.
    pub text_bytes: u64,
    /// Token ids given as such (`"prompt": [1, 2, 3]` or `[[1, 2], [3]]`).
    pub token_ids: u64,
    /// Chat messages (0 for completions).
    pub messages: u64,
    /// Non-text content parts.
    pub media_parts: u64,
    /// Prompts in a completions batch (`"prompt": ["a", "b"]` or `[[1], [2]]`: 2), each
    /// answered separately; 1 for chat and for a single prompt.
    pub prompts: u64,
}

impl PromptSize {
    /// Tokens the prompt is reckoned at: ⌈characters / 4⌉ of text, one per token id, framing
    /// per message and a fixed cost per non-text part.
    pub fn estimate(&self) -> u64 {
        self.text_chars
            .div_ceil(4)
            .saturating_add(self.token_ids)
            .saturating_add(self.messages.saturating_mul(MESSAGE_FRAMING_ESTIMATE))
            .saturating_add(self.media_parts.saturating_mul(MEDIA_PART_ESTIMATE))
    }

    /// The most prompt tokens any tokenizer can make of this prompt (see the module's docs).
    pub fn upper_bound(&self) -> u64 {
        self.text_bytes
            .saturating_add(self.token_ids)
            .saturating_add(self.messages.saturating_mul(MESSAGE_FRAMING_BOUND))
            .saturating_add(self.media_parts.saturating_mul(MEDIA_PART_BOUND))
            // Each prompt of a batch gets its own special tokens (BOS and the like).
            .saturating_add(self.prompts.saturating_mul(MESSAGE_FRAMING_BOUND))
            .saturating_add(TEMPLATE_BOUND)
    }

    /// Chat: `messages`, plus `tools` and the old `functions`.
    pub(crate) fn of_chat(messages: Option<&Value>, tools: &[Option<&Value>]) -> Self {
        let mut size = Self {
            prompts: 1,
            ..Self::default()
        };
        if let Some(Value::Array(messages)) = messages {
            size.messages = len_u64(messages.len());
            for message in messages {
                size.add_message(message);
            }
        }
        for tools in tools.iter().flatten() {
            size.add_json(tools);
        }
        size
    }

    /// Completions: `prompt` (text, texts, token ids or lists of token ids) and `suffix`.
    pub(crate) fn of_completion(prompt: Option<&Value>, suffix: Option<&Value>) -> Self {
        let mut size = Self {
            prompts: 1,
            ..Self::default()
        };
        match prompt {
            Some(Value::String(s)) => size.add_text(s),
            Some(Value::Array(items)) => {
                // A flat array of ids is one prompt; strings and id arrays are one each.
                if items.iter().any(|i| !i.is_number()) {
                    size.prompts = len_u64(items.len());
                }
                for item in items {
                    match item {
                        Value::String(s) => size.add_text(s),
                        Value::Array(ids) => size.token_ids += len_u64(ids.len()),
                        _ => size.token_ids += 1,
                    }
                }
            }
            _ => {}
        }
        if let Some(Value::String(s)) = suffix {
            size.add_text(s);
        }
        size
    }

    fn add_message(&mut self, message: &Value) {
        let Value::Object(m) = message else { return };
        for field in ["name", "tool_call_id", "reasoning_content", "refusal"] {
            if let Some(Value::String(s)) = m.get(field) {
                self.add_text(s);
            }
        }
        match m.get("content") {
            Some(Value::String(s)) => self.add_text(s),
            Some(Value::Array(parts)) => {
                for part in parts {
                    self.add_part(part);
                }
            }
            _ => {}
        }
        // The model sees its earlier calls as text: names and JSON arguments.
        for calls in [m.get("tool_calls"), m.get("function_call")]
            .into_iter()
            .flatten()
        {
            self.add_json(calls);
        }
    }

    fn add_part(&mut self, part: &Value) {
        match part {
            Value::String(s) => self.add_text(s),
            Value::Object(p) => match p.get("text").or_else(|| p.get("refusal")) {
                Some(Value::String(s)) => self.add_text(s),
                _ => self.media_parts += 1,
            },
            _ => {}
        }
    }

    fn add_text(&mut self, s: &str) {
        self.text_chars += len_u64(s.chars().count());
        self.text_bytes += len_u64(s.len());
    }

    /// A JSON value as the template writes it into the prompt: its compact text.
    fn add_json(&mut self, v: &Value) {
        let mut counter = TextCounter::default();
        if serde_json::to_writer(&mut counter, v).is_ok() {
            self.text_chars += counter.chars;
            self.text_bytes += counter.bytes;
        }
    }
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Counts what is written to it instead of keeping it.
#[derive(Default)]
struct TextCounter {
    bytes: u64,
    chars: u64,
}

impl std::io::Write for TextCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += len_u64(buf.len());
        // UTF-8 continuation bytes are 0b10xxxxxx; every other byte starts a character.
        self.chars += len_u64(buf.iter().filter(|b| (**b & 0xC0) != 0x80).count());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(messages: Value, tools: Option<Value>) -> PromptSize {
        PromptSize::of_chat(Some(&messages), &[tools.as_ref()])
    }

    #[test]
    fn token_ids_count_one_each_in_flat_and_nested_prompts() {
        let flat = PromptSize::of_completion(Some(&json!(vec![7; 60_000])), None);
        assert_eq!(flat.estimate(), 60_000);
        assert_eq!(flat.prompts, 1, "a flat array of ids is one prompt");
        let nested = PromptSize::of_completion(Some(&json!([[1, 2, 3], [4, 5]])), None);
        assert_eq!(nested.token_ids, 5);
        assert_eq!(nested.prompts, 2);
        assert!(nested.upper_bound() >= 5);
        let texts = PromptSize::of_completion(Some(&json!(["a", "b", "c"])), None);
        assert_eq!(texts.prompts, 3);
        let single = PromptSize::of_completion(Some(&json!("a")), None);
        assert_eq!(single.prompts, 1);
    }

    #[test]
    fn tools_calls_and_media_are_counted() {
        let plain = chat(json!([{"role": "user", "content": "hi"}]), None);
        let tools = json!([{"type": "function", "function": {"name": "lookup",
            "description": "x".repeat(4_000), "parameters": {"type": "object"}}}]);
        let with_tools = chat(json!([{"role": "user", "content": "hi"}]), Some(tools));
        assert!(
            with_tools.estimate() >= plain.estimate() + 1_000,
            "{with_tools:?}"
        );

        let call = chat(
            json!([{"role": "assistant", "content": null, "tool_calls": [{"id": "c1",
                "type": "function", "function": {"name": "f", "arguments": "y".repeat(400)}}]}]),
            None,
        );
        assert!(call.estimate() >= 100, "{call:?}");

        let image = chat(
            json!([{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]),
            None,
        );
        assert_eq!(image.media_parts, 1);
        assert!(image.estimate() >= MEDIA_PART_ESTIMATE);
    }

    #[test]
    fn the_bound_is_at_least_the_estimate_and_at_least_the_text_bytes() {
        let s = chat(
            json!([{"role": "system", "content": "héllo wörld"}, {"role": "user", "content": "日本語"}]),
            None,
        );
        assert_eq!(s.text_chars, 11 + 3);
        assert_eq!(s.text_bytes, 13 + 9);
        assert!(s.upper_bound() >= s.estimate());
        assert!(s.upper_bound() >= s.text_bytes);
    }
}
