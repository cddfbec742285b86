//! `[tiers.NAME]`: the built-in tiers, and the checks a tier's limits and prices must pass.

use std::collections::BTreeMap;

use switchyard_metering::money::{valid_price, MAX_PRICE_USD, MAX_TIER_MAX_TOKENS};
use switchyard_metering::{CapPolicy, Limits};

/// The source document's three tiers: Hobby (small model, shared, 99.5%, p95 TTFT 2.5 s,
/// $1.99/1M), Pro (99.9%, 1.5 s, $3.20/1M), Business (dedicated, 99.95%, volume pricing).
pub fn default_tiers() -> BTreeMap<String, Limits> {
    let hobby = Limits {
        max_tokens: 1024,
        max_prompt_tokens: 8192,
        cap_policy: CapPolicy::Clamp,
        requests_per_minute: 60,
        tokens_per_minute: 100_000,
        max_concurrent: 4,
        monthly_tokens: 10_000_000,
        price_input_per_million: 1.99,
        price_output_per_million: 1.99,
        slo_availability_bp: 9950,
        slo_ttft_p95_ms: 2500,
        default_max_tokens: 256,
        ..Limits::default()
    };
    let pro = Limits {
        max_tokens: 4096,
        max_prompt_tokens: 32_768,
        requests_per_minute: 600,
        tokens_per_minute: 1_000_000,
        max_concurrent: 32,
        monthly_tokens: 0,
        price_input_per_million: 3.20,
        price_output_per_million: 3.20,
        slo_availability_bp: 9990,
        slo_ttft_p95_ms: 1500,
        hedge_after_ms: 1000,
        default_max_tokens: 512,
        ..Limits::default()
    };
    let business = Limits {
        max_tokens: 8192,
        max_prompt_tokens: 131_072,
        requests_per_minute: 3000,
        tokens_per_minute: 5_000_000,
        max_concurrent: 128,
        monthly_tokens: 0,
        price_input_per_million: 2.50,
        price_output_per_million: 2.50,
        slo_availability_bp: 9995,
        slo_ttft_p95_ms: 1200,
        hedge_after_ms: 700,
        default_max_tokens: 1024,
        ..Limits::default()
    };
    BTreeMap::from([
        ("hobby".to_string(), hobby),
        ("pro".to_string(), pro),
        ("business".to_string(), business),
    ])
}

pub fn validate(tiers: &BTreeMap<String, Limits>) -> Result<(), String> {
    if tiers.is_empty() {
        return Err("at least one tier must be defined".into());
    }
    for (name, t) in tiers {
        let prices = [t.price_input_per_million, t.price_output_per_million];
        if !prices.into_iter().all(valid_price) {
            return Err(format!(
                "tiers.{name}: prices must be numbers from 0 to {MAX_PRICE_USD} (USD per 1M tokens)"
            ));
        }
        if t.max_tokens > MAX_TIER_MAX_TOKENS {
            return Err(format!(
                "tiers.{name}: max_tokens must be at most {MAX_TIER_MAX_TOKENS}"
            ));
        }
        if t.max_tokens == 0 || t.default_max_tokens == 0 || t.max_concurrent == 0 {
            return Err(format!(
                "tiers.{name}: max_tokens, default_max_tokens and max_concurrent must be at least 1"
            ));
        }
    }
    Ok(())
}
