//! Cost of goods per 1M tokens and the margin of each tier.
//!
//! COGS per 1M = GPU $/h ÷ (tokens/s × utilisation × 3600) × 1,000,000 + overheads per 1M.
//!
//! Money here is `f64` USD on purpose: these are planning estimates from measured rates
//! (tokens/s, utilisation), shown to the cent. Billing uses the ledger's integer
//! nano-dollars (`switchyard_metering::money`), never these figures.

use serde::Serialize;

use crate::error::{fraction, non_negative, positive, PlanError};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostInput {
    /// USD per GPU-hour.
    pub gpu_price_per_hour: f64,
    /// Measured tokens/s of one GPU (prompt + completion).
    pub tokens_per_sec: f64,
    /// Share of the hour the GPU serves at that rate, 0–1.
    pub utilization: f64,
    /// Bandwidth, gateway, monitoring, payment fees: USD per 1M tokens (0.10–0.30).
    pub overhead_per_million: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    pub tokens_per_hour: f64,
    pub gpu_cost_per_million: f64,
    pub overhead_per_million: f64,
    pub cogs_per_million: f64,
}

pub fn cost_per_million(i: &CostInput) -> Result<Cost, PlanError> {
    non_negative("GPU price per hour", i.gpu_price_per_hour)?;
    positive("tokens/s", i.tokens_per_sec)?;
    fraction("utilization", i.utilization)?;
    non_negative("overhead per 1M tokens", i.overhead_per_million)?;
    let tokens_per_hour = i.tokens_per_sec * i.utilization * 3600.0;
    let gpu = i.gpu_price_per_hour / tokens_per_hour * 1_000_000.0;
    Ok(Cost {
        tokens_per_hour,
        gpu_cost_per_million: gpu,
        overhead_per_million: i.overhead_per_million,
        cogs_per_million: gpu + i.overhead_per_million,
    })
}

/// Average tokens of a request, to blend input and output prices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TokenMix {
    pub prompt_tokens: f64,
    pub completion_tokens: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierPrice {
    pub name: String,
    pub input_per_million: f64,
    pub output_per_million: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierMargin {
    pub tier: String,
    /// (prompt × input price + completion × output price) / (prompt + completion).
    pub price_per_million: f64,
    pub cogs_per_million: f64,
    pub margin_per_million: f64,
    /// Margin as a share of the price, percent (negative: selling below cost); `None` for a
    /// free tier, whose margin has no share of a price to be.
    pub margin_pct: Option<f64>,
}

/// Each tier's blended price per 1M tokens at `mix` against `cogs_per_million`.
pub fn tier_margins(
    cogs_per_million: f64,
    tiers: &[TierPrice],
    mix: TokenMix,
) -> Result<Vec<TierMargin>, PlanError> {
    non_negative("prompt tokens", mix.prompt_tokens)?;
    non_negative("completion tokens", mix.completion_tokens)?;
    let total = mix.prompt_tokens + mix.completion_tokens;
    if total <= 0.0 {
        return Err(PlanError::Invalid(
            "the token mix has no tokens (prompt + completion = 0)".into(),
        ));
    }
    tiers
        .iter()
        .map(|t| {
            non_negative(&format!("tier {} input price", t.name), t.input_per_million)?;
            non_negative(
                &format!("tier {} output price", t.name),
                t.output_per_million,
            )?;
            let price = (mix.prompt_tokens * t.input_per_million
                + mix.completion_tokens * t.output_per_million)
                / total;
            let margin = price - cogs_per_million;
            let pct = (price > 0.0).then(|| margin / price * 100.0);
            Ok(TierMargin {
                tier: t.name.clone(),
                price_per_million: price,
                cogs_per_million,
                margin_per_million: margin,
                margin_pct: pct,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn source_document_cost_example() {
        // $2.80/h, 1,600 tok/s, 60% utilisation:
        // tokens/h = 1,600 × 0.6 × 3,600 = 3,456,000;
        // GPU cost per 1M = 2.80 / 3,456,000 × 1,000,000 = 2.80 / 3.456 = 0.810185... ≈ $0.81.
        let c = cost_per_million(&CostInput {
            gpu_price_per_hour: 2.80,
            tokens_per_sec: 1600.0,
            utilization: 0.6,
            overhead_per_million: 0.0,
        })
        .unwrap();
        assert!(close(c.tokens_per_hour, 3_456_000.0));
        assert!(close(c.gpu_cost_per_million, 0.810_185_185_185), "{c:?}");
        assert_eq!(format!("{:.2}", c.gpu_cost_per_million), "0.81");
        // "Add $0.10–$0.30 overhead → target COGS ≈ $0.91–$1.11 per 1M".
        for (overhead, cogs) in [(0.10, "0.91"), (0.30, "1.11")] {
            let c = cost_per_million(&CostInput {
                gpu_price_per_hour: 2.80,
                tokens_per_sec: 1600.0,
                utilization: 0.6,
                overhead_per_million: overhead,
            })
            .unwrap();
            assert_eq!(format!("{:.2}", c.cogs_per_million), cogs);
        }
    }

    #[test]
    fn margins_per_tier() {
        // COGS $0.91 per 1M against the built-in tiers' prices:
        // hobby $1.99 → margin 1.08, 1.08 / 1.99 = 54.271%; pro $3.20 → 2.29, 2.29 / 3.2 =
        // 71.5625%.
        let tiers = [
            TierPrice {
                name: "hobby".into(),
                input_per_million: 1.99,
                output_per_million: 1.99,
            },
            TierPrice {
                name: "pro".into(),
                input_per_million: 3.20,
                output_per_million: 3.20,
            },
            // Input $1, output $4 at 300 prompt + 100 completion tokens:
            // (300 × 1 + 100 × 4) / 400 = $1.75 blended; margin 0.84 = 48.0%.
            TierPrice {
                name: "split".into(),
                input_per_million: 1.0,
                output_per_million: 4.0,
            },
        ];
        let m = tier_margins(
            0.91,
            &tiers,
            TokenMix {
                prompt_tokens: 300.0,
                completion_tokens: 100.0,
            },
        )
        .unwrap();
        assert!(close(m[0].margin_per_million, 1.08));
        assert!(close(m[0].margin_pct.unwrap(), 108.0 / 1.99));
        assert!(close(m[1].margin_per_million, 2.29));
        assert!(close(m[1].margin_pct.unwrap(), 71.5625));
        assert!(close(m[2].price_per_million, 1.75));
        assert!(close(m[2].margin_pct.unwrap(), 48.0));
    }

    #[test]
    fn selling_below_cost_is_a_negative_margin() {
        let tiers = [TierPrice {
            name: "cheap".into(),
            input_per_million: 0.5,
            output_per_million: 0.5,
        }];
        let mix = TokenMix {
            prompt_tokens: 1.0,
            completion_tokens: 1.0,
        };
        let m = tier_margins(1.0, &tiers, mix).unwrap();
        assert!(close(m[0].margin_per_million, -0.5));
        assert!(close(m[0].margin_pct.unwrap(), -100.0));
        // A free tier loses the whole COGS; its margin is no percentage of anything.
        let free = [TierPrice {
            name: "free".into(),
            input_per_million: 0.0,
            output_per_million: 0.0,
        }];
        let m = tier_margins(1.0, &free, mix).unwrap();
        assert!(close(m[0].margin_per_million, -1.0));
        assert_eq!(m[0].margin_pct, None);
    }

    #[test]
    fn impossible_inputs() {
        let ok = CostInput {
            gpu_price_per_hour: 2.8,
            tokens_per_sec: 1600.0,
            utilization: 0.6,
            overhead_per_million: 0.1,
        };
        assert!(cost_per_million(&CostInput {
            utilization: 0.0,
            ..ok
        })
        .is_err());
        assert!(cost_per_million(&CostInput {
            utilization: 1.01,
            ..ok
        })
        .is_err());
        assert!(cost_per_million(&CostInput {
            tokens_per_sec: 0.0,
            ..ok
        })
        .is_err());
        assert!(cost_per_million(&CostInput {
            gpu_price_per_hour: -1.0,
            ..ok
        })
        .is_err());
        let mix = TokenMix {
            prompt_tokens: 0.0,
            completion_tokens: 0.0,
        };
        assert!(tier_margins(1.0, &[], mix).is_err());
    }
}
