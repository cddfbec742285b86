//! The timing model (see the crate docs): prefill cost grows with the prompt, decode cost
//! grows with the number of sequences sharing the GPU. Pure functions, so they are easy to
//! test and the request path only has to sleep for what they return.

use crate::config::SimConfig;
use std::time::Duration;

/// Time from admission to the first token: base + per-token prefill, times the slow factor.
pub(crate) fn prefill(cfg: &SimConfig, prompt_tokens: u32, slow: f64) -> Duration {
    let ms = (cfg.prefill_base_ms + cfg.prefill_per_token_ms * f64::from(prompt_tokens)) * slow;
    from_ms(ms)
}

/// Time between two tokens while `running_seqs` sequences are decoding together.
pub(crate) fn inter_token(cfg: &SimConfig, running_seqs: u64, slow: f64) -> Duration {
    // Precision loss above 2^52 sequences is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    let extra = running_seqs.saturating_sub(1) as f64;
    let ms = cfg.decode_ms_per_token * (1.0 + cfg.decode_slowdown_per_seq * extra) * slow;
    from_ms(ms)
}

fn from_ms(ms: f64) -> Duration {
    // Config validation keeps these finite and >= 0; clamp anyway so a bad value can
    // never panic inside Duration.
    if ms.is_finite() && ms > 0.0 {
        // Whole nanoseconds, rounded, so 0.2 ms × 100 is exactly 20 ms; capped at a day.
        Duration::from_nanos((ms * 1e6).round().min(8.64e13) as u64)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefill_grows_with_prompt_and_slow_factor() {
        let cfg = SimConfig::default();
        assert_eq!(prefill(&cfg, 0, 1.0), Duration::from_millis(20));
        assert_eq!(prefill(&cfg, 100, 1.0), Duration::from_millis(40));
        assert_eq!(prefill(&cfg, 100, 2.0), Duration::from_millis(80));
    }

    #[test]
    fn decode_slows_with_concurrency() {
        let cfg = SimConfig::default();
        assert_eq!(inter_token(&cfg, 1, 1.0), Duration::from_millis(10));
        assert_eq!(inter_token(&cfg, 0, 1.0), Duration::from_millis(10));
        assert_eq!(inter_token(&cfg, 11, 1.0), Duration::from_millis(15));
        assert_eq!(inter_token(&cfg, 11, 3.0), Duration::from_millis(45));
    }
}
