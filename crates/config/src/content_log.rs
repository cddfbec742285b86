//! `[content_log]`: how often expired content logs are deleted. Whether a tenant's content is
//! logged at all, and for how long, is the tenant's setting (admin API), not this file's.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentLogConfig {
    /// Between two sweeps of expired records. A record outlives its TTL by at most this.
    pub sweep_interval_ms: u64,
}

impl Default for ContentLogConfig {
    fn default() -> Self {
        Self {
            sweep_interval_ms: 60 * 60 * 1000,
        }
    }
}

impl ContentLogConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.sweep_interval_ms == 0 {
            return Err("content_log.sweep_interval_ms must be positive".into());
        }
        Ok(())
    }
}
