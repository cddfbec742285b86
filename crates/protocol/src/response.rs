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
