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

/// What a worker said about a response's usage. Workers run on strangers' machines: this is
/// evidence to check, not a bill (see the gateway's `upstream::account`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// No usage object (or `null`): the gateway counts for itself.
    Absent,
    Counts(Usage),
    /// A usage object without two non-negative integer counts; the text says what was wrong.
    Malformed(String),
}

impl Reported {
    /// Reads a `usage` field as found in a response or a stream chunk.
    pub fn from_field(v: Option<&Value>) -> Self {
        match v {
            None | Some(Value::Null) => Reported::Absent,
            Some(v) => match Usage::from_value(v) {
                Some(u) => Reported::Counts(u),
                None => Reported::Malformed(malformed(v)),
            },
        }
    }
}

/// Why a usage value is not two counts, with the offending values (shortened).
fn malformed(v: &Value) -> String {
    let show = |field: &str| match v.get(field) {
        None => "missing".to_string(),
        Some(x) => {
            let mut s = x.to_string();
            if s.len() > 40 {
                s.truncate(40);
                s.push('…');
            }
            s
        }
    };
    if !v.is_object() {
        return "usage is not an object".into();
    }
    format!(
        "usage is not two non-negative integer counts (prompt_tokens {}, completion_tokens {})",
        show("prompt_tokens"),
        show("completion_tokens")
    )
}

impl Usage {
    /// `total_tokens` is the sum, saturating: counts come from workers and may be absurd.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reports_tell_absent_from_malformed() {
        let read = |text: &str| Reported::from_field(Some(&serde_json::from_str(text).unwrap()));
        assert_eq!(Reported::from_field(None), Reported::Absent);
        assert_eq!(read("null"), Reported::Absent);
        assert_eq!(
            read(r#"{"prompt_tokens":18446744073709551615,"completion_tokens":1}"#),
            Reported::Counts(Usage::new(u64::MAX, 1)),
            "parsed as counts; bounds are the gateway's business"
        );
        assert_eq!(Usage::new(u64::MAX, 1).total_tokens, u64::MAX);
        assert_eq!(
            read(r#"{"prompt_tokens":3,"completion_tokens":4,"prompt_tokens_details":{}}"#),
            Reported::Counts(Usage::new(3, 4))
        );
        for bad in [
            r#"{"prompt_tokens":-1,"completion_tokens":4}"#,
            r#"{"prompt_tokens":"3","completion_tokens":4}"#,
            r#"{"prompt_tokens":1e30,"completion_tokens":4}"#,
            r#"{"prompt_tokens":3.5,"completion_tokens":4}"#,
            r#"{"completion_tokens":4}"#,
            r#"[1,2]"#,
        ] {
            assert!(matches!(read(bad), Reported::Malformed(_)), "{bad}");
        }
    }
}
