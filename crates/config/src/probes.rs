//! `[probes]`: the gateway's synthetic probes of each worker (a known prompt, checked against
//! TTFT and TTLT limits).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// 0 = no synthetic probes.
    pub interval_ms: u64,
    pub ttft_limit_ms: u64,
    pub ttlt_limit_ms: u64,
    pub prompt: String,
    pub max_tokens: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            interval_ms: 30_000,
            // The Pro tier's p95 TTFT and the source document's TTLT at 256 tokens: a probe
            // of a few tokens that misses them is a worker in trouble.
            ttft_limit_ms: 1_500,
            ttlt_limit_ms: 8_000,
            prompt: "Reply with one word: OK.".into(),
            max_tokens: 8,
        }
    }
}

impl ProbeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_ms > 0
            && (self.ttft_limit_ms == 0 || self.ttlt_limit_ms < self.ttft_limit_ms)
        {
            return Err(
                "probes.ttft_limit_ms must be positive and at most probes.ttlt_limit_ms".into(),
            );
        }
        if self.max_tokens == 0 {
            return Err("probes.max_tokens must be at least 1".into());
        }
        Ok(())
    }
}
