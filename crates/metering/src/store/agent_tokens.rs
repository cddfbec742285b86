//! Agent tokens: one credential per agent (or group of agents) for the registration API, each
//! scoped to the providers, models and regions it may register workers for and a maximum
//! price. Created and revoked through the admin API; held as SHA-256 digests, like API keys,
//! and shared by every replica on the store, so a revocation through one replica is refused by
//! all of them on the next request.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Result;

/// What a token may register. An empty list allows any value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentScope {
    pub providers: Vec<String>,
    pub models: Vec<String>,
    pub regions: Vec<String>,
    /// Registrations asking more per GPU-hour are refused.
    pub max_price_per_hour: Option<f64>,
}

impl AgentScope {
    /// Why a worker of this provider, model, region and price is outside the scope, if it is.
    pub fn refuses(&self, provider: &str, model: &str, region: &str, price: f64) -> Option<String> {
        let outside = |what: &str, value: &str, allowed: &[String]| {
            (!allowed.is_empty() && !allowed.iter().any(|a| a == value)).then(|| {
                format!(
                    "this agent token may not register {what} '{value}' (allowed: {})",
                    allowed.join(", ")
                )
            })
        };
        outside("provider", provider, &self.providers)
            .or_else(|| outside("model", model, &self.models))
            .or_else(|| outside("region", region, &self.regions))
            .or_else(|| {
                self.max_price_per_hour
                    .filter(|max| price > *max)
                    .map(|max| {
                        format!(
                            "this agent token may not register a worker at {price}/h (at most {max}/h)"
                        )
                    })
            })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentToken {
    /// `agt_...`, shown in listings and in the fleet as the registrant.
    pub id: String,
    /// The operator's name for it ("market-b eu fleet").
    pub name: String,
    pub hash: [u8; 32],
    /// The secret's first characters, to recognise it in a listing.
    pub prefix: String,
    pub scope: AgentScope,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

#[async_trait]
pub trait AgentTokenStore: Send + Sync + 'static {
    async fn create_agent_token(&self, token: &AgentToken) -> Result<()>;
    /// The token with this digest, revoked or not.
    async fn agent_token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<AgentToken>>;
    async fn agent_tokens(&self) -> Result<Vec<AgentToken>>;
    /// Marks it revoked at `at_ms` (the first revocation's time stays); `None` if unknown.
    async fn revoke_agent_token(&self, id: &str, at_ms: i64) -> Result<Option<AgentToken>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_scope_allows_anything_and_each_limit_is_named() {
        assert_eq!(AgentScope::default().refuses("p", "m", "r", 99.0), None);
        let scope = AgentScope {
            providers: vec!["market-b".into()],
            models: vec!["llama".into()],
            regions: vec![],
            max_price_per_hour: Some(1.0),
        };
        assert_eq!(scope.refuses("market-b", "llama", "anywhere", 1.0), None);
        let why = scope
            .refuses("market-c", "llama", "eu", 0.5)
            .unwrap_or_default();
        assert!(why.contains("provider 'market-c'"), "{why}");
        let why = scope
            .refuses("market-b", "qwen", "eu", 0.5)
            .unwrap_or_default();
        assert!(why.contains("model 'qwen'"), "{why}");
        let why = scope
            .refuses("market-b", "llama", "eu", 1.5)
            .unwrap_or_default();
        assert!(why.contains("at most 1/h"), "{why}");
    }
}
