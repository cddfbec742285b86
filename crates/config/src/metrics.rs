//! `[metrics]`: who may read `/metrics`, and how often workers' own metrics are read.

use serde::Deserialize;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// When set, `/metrics` wants `Authorization: Bearer TOKEN`; unset, it is open like
    /// `/healthz` (bind the gateway or firewall the port accordingly). It shows no key or
    /// tenant, only tiers, models and workers.
    pub token: Option<String>,
    /// How often each vLLM/SGLang/TGI worker's `/metrics` is read; 0 = never.
    pub worker_scrape_interval_ms: u64,
    /// One worker's scrape, connection to last byte.
    pub worker_scrape_timeout_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            token: None,
            worker_scrape_interval_ms: 15_000,
            worker_scrape_timeout_ms: 2_000,
        }
    }
}

// The token must not reach logs through `{:?}` of the whole config.
impl std::fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("worker_scrape_interval_ms", &self.worker_scrape_interval_ms)
            .field("worker_scrape_timeout_ms", &self.worker_scrape_timeout_ms)
            .finish()
    }
}

impl MetricsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.worker_scrape_timeout_ms == 0 {
            return Err("metrics.worker_scrape_timeout_ms must be positive".into());
        }
        if matches!(&self.token, Some(t) if t.len() < 20) {
            return Err("metrics.token must be at least 20 characters".into());
        }
        Ok(())
    }
}
