//! Response objects of the OpenAI API, for adapters that build them from a native protocol
//! (TGI's `/generate`) and for usage accounting. Responses from OpenAI-compatible workers are
//! relayed as JSON maps so that their extra fields survive.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }

    /// Reads a `usage` object as runtimes send it; `total_tokens` is recomputed because some
    /// runtimes omit it. Returns `None` when the counts are absent or not numbers.
    pub fn from_value(v: &Value) -> Option<Self> {
        let prompt = v.get("prompt_tokens")?.as_u64()?;
        let completion = v.get("completion_tokens")?.as_u64()?;
        Some(Self::new(prompt, completion))
    }

    /// [`Usage::from_value`] on JSON text, without building a `Value` (the non-streamed relay
    /// reads usage from the response's raw top level).
    pub fn from_json(text: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Counts {
            prompt_tokens: u64,
            completion_tokens: u64,
        }
        // serde reads a struct from an array too; usage is only ever an object.
        if !text.trim_start().starts_with('{') {
            return None;
        }
        match serde_json::from_str::<Counts>(text) {
            Ok(counts) => Some(Self::new(counts.prompt_tokens, counts.completion_tokens)),
            // A duplicated key fails the struct; as a `Value` the last one wins, as elsewhere.
            Err(_) => Self::from_value(&serde_json::from_str(text).ok()?),
        }
    }

    pub fn to_value(self) -> Value {
        serde_json::json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn usage_from_text_reads_what_usage_from_a_value_reads() {
        for text in [
            r#"{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}"#,
            r#"{"prompt_tokens":3,"completion_tokens":4}"#,
            r#"{"completion_tokens":4,"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":1}}"#,
            r#"{"prompt_tokens":3}"#,
            r#"{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens":5}"#,
            r#"{"prompt_tokens":-1,"completion_tokens":4}"#,
            r#"{"prompt_tokens":"3","completion_tokens":4}"#,
            r#"{"prompt_tokens":3.5,"completion_tokens":4}"#,
            r#"null"#,
            r#"[3,4]"#,
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(Usage::from_json(text), Usage::from_value(&value), "{text}");
        }
        assert_eq!(
            Usage::from_json(r#"{"prompt_tokens":3,"completion_tokens":4}"#),
            Some(Usage::new(3, 4))
        );
    }
}
