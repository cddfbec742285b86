//! Opt-in content logging: what a tenant chose ([`ContentLogging`]) and what is stored
//! ([`ContentRecord`], already redacted by the gateway). The queue and writer that carry
//! records to the store are [`crate::ledger::content_writer`]'s.

use serde::{Deserialize, Serialize};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// How long a tenant's prompts and completions are kept, or `Off` (the default): not logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContentLogging {
    #[default]
    Off,
    Days7,
    Days30,
}

impl ContentLogging {
    /// The stored form: days kept, 0 for off.
    pub fn days(self) -> i64 {
        match self {
            ContentLogging::Off => 0,
            ContentLogging::Days7 => 7,
            ContentLogging::Days30 => 30,
        }
    }

    pub fn from_days(days: i64) -> Option<Self> {
        Some(match days {
            0 => ContentLogging::Off,
            7 => ContentLogging::Days7,
            30 => ContentLogging::Days30,
            _ => return None,
        })
    }

    /// How long a record made now is kept, or `None` when nothing is logged.
    pub fn ttl_ms(self) -> Option<i64> {
        match self {
            ContentLogging::Off => None,
            on => Some(on.days() * DAY_MS),
        }
    }

    /// `"off"`, `"7"`, `"30"` (also `"7d"`, `"30d"`), as typed on a command line.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().trim_end_matches('d') {
            "off" | "0" => Some(ContentLogging::Off),
            days => days.parse().ok().and_then(Self::from_days),
        }
    }
}

/// JSON: `"off"` or the number of days (`7`, `30`).
impl Serialize for ContentLogging {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ContentLogging::Off => s.serialize_str("off"),
            on => s.serialize_i64(on.days()),
        }
    }
}

/// Accepts `"off"`, `7`, `30`, and the same as strings (`"7"`, `"30d"`).
impl<'de> Deserialize<'de> for ContentLogging {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Days(i64),
            Text(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Days(n) => Self::from_days(n),
            Raw::Text(s) => Self::parse(&s),
        };
        parsed.ok_or_else(|| serde::de::Error::custom("content_logging must be \"off\", 7 or 30"))
    }
}

/// One request's prompt and completion, redacted before it was queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentRecord {
    pub request_id: String,
    pub tenant_id: String,
    pub model: String,
    pub endpoint: String,
    pub stream: bool,
    /// How the request ended (see [`crate::UsageStatus::as_str`]).
    pub status: String,
    /// Unix ms when the request arrived.
    pub created_at_ms: i64,
    /// Unix ms after which the gateway deletes the record.
    pub expires_at_ms: i64,
    /// Chat: the `messages` array as JSON text; completions: the prompt.
    pub prompt: String,
    pub prompt_truncated: bool,
    pub completion: String,
    pub completion_truncated: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_forms() {
        for (text, want) in [
            (r#""off""#, ContentLogging::Off),
            ("0", ContentLogging::Off),
            ("7", ContentLogging::Days7),
            ("30", ContentLogging::Days30),
            (r#""7d""#, ContentLogging::Days7),
            (r#""30""#, ContentLogging::Days30),
        ] {
            assert_eq!(
                serde_json::from_str::<ContentLogging>(text).unwrap(),
                want,
                "{text}"
            );
        }
        for bad in ["1", "14", r#""on""#, "true", "-7"] {
            assert!(
                serde_json::from_str::<ContentLogging>(bad).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            serde_json::to_string(&ContentLogging::Off).unwrap(),
            r#""off""#
        );
        assert_eq!(
            serde_json::to_string(&ContentLogging::Days30).unwrap(),
            "30"
        );
        assert_eq!(ContentLogging::Days7.ttl_ms(), Some(7 * DAY_MS));
        assert_eq!(ContentLogging::Off.ttl_ms(), None);
    }
}
