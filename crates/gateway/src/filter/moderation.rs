//! The optional external moderation hook: an OpenAI-compatible `/v1/moderations` endpoint asked
//! about every request that passed the lists, within a timeout. Its answer is evidence from
//! outside the process: anything but a well-formed `results` array counts as a failure, and a
//! failure (an error, a timeout, garbage) lets the request through or refuses it, as
//! `moderation_on_error` says.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_config::{FiltersConfig, ModerationPolicy};

/// The variable the endpoint's bearer key is read from (never the config file).
pub const API_KEY_ENV: &str = "SWITCHYARD_MODERATION_API_KEY";

#[derive(Debug)]
pub struct Moderation {
    url: String,
    model: Option<String>,
    api_key: Option<String>,
    timeout: Duration,
    pub policy: ModerationPolicy,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Pass,
    /// The categories it flagged.
    Flagged(Vec<String>),
    /// Why no verdict could be had.
    Failed(String),
}

impl Moderation {
    pub fn from_config(config: &FiltersConfig) -> Option<Self> {
        Some(Self {
            url: config.moderation_url.clone()?,
            model: config.moderation_model.clone(),
            api_key: std::env::var(API_KEY_ENV).ok().filter(|k| !k.is_empty()),
            timeout: Duration::from_millis(config.moderation_timeout_ms),
            policy: config.moderation_on_error,
        })
    }

    pub async fn check(&self, client: &reqwest::Client, texts: Vec<String>) -> Verdict {
        if texts.is_empty() {
            return Verdict::Pass;
        }
        let mut body = json!({ "input": texts });
        if let Some(model) = &self.model {
            body["model"] = json!(model);
        }
        let mut request = client.post(&self.url).json(&body).timeout(self.timeout);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let answer = async {
            let resp = request.send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("HTTP {}", resp.status().as_u16()));
            }
            resp.json::<Value>().await.map_err(|e| e.to_string())
        };
        let answer = match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(why)) => return Verdict::Failed(why),
            Err(_) => return Verdict::Failed(format!("no answer within {:?}", self.timeout)),
        };
        judge(&answer)
    }
}

/// The verdict of a moderation answer: flagged if any result is.
fn judge(answer: &Value) -> Verdict {
    let Some(results) = answer.get("results").and_then(Value::as_array) else {
        return Verdict::Failed("the answer has no 'results' array".into());
    };
    let mut flagged = false;
    let mut categories = Vec::new();
    for result in results {
        match result.get("flagged").and_then(Value::as_bool) {
            Some(true) => flagged = true,
            Some(false) => continue,
            None => return Verdict::Failed("a result without a boolean 'flagged'".into()),
        }
        if let Some(Value::Object(cats)) = result.get("categories") {
            for (name, on) in cats {
                if on.as_bool() == Some(true) && !categories.contains(name) {
                    categories.push(name.clone());
                }
            }
        }
    }
    if flagged {
        Verdict::Flagged(categories)
    } else {
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_and_malformed_ones_are_failures() {
        assert_eq!(
            judge(
                &json!({"results": [{"flagged": false}, {"flagged": true, "categories": {"violence": true, "hate": false}}]})
            ),
            Verdict::Flagged(vec!["violence".into()])
        );
        assert_eq!(
            judge(&json!({"results": [{"flagged": false}]})),
            Verdict::Pass
        );
        for bad in [
            json!({}),
            json!({"results": "no"}),
            json!({"results": [{"flagged": "yes"}]}),
        ] {
            assert!(matches!(judge(&bad), Verdict::Failed(_)), "{bad}");
        }
    }
}
