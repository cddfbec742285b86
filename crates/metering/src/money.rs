//! Money as integer nano-dollars (1 USD = 1e9). Billing sums millions of tiny per-request costs;
//! floats would drift, and a cent-rounded cost per request would round most requests to zero.
//!
//! Every product here is computed in `i128` and converted back with a check: a cost that does
//! not fit in `i64` is `None`, never a wrapped (negative) number. The figures come from workers
//! on strangers' machines, and one absurd token count must not mint credit.

pub type Nanos = i64;

pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// The highest price (USD per 1M tokens, or per GPU hour) config and the admin API accept.
/// With it, a cost stays far inside `i64` for any token count a request can be billed for.
pub const MAX_PRICE_USD: f64 = 1_000_000.0;

/// The most prompt tokens one request is ever billed for, whatever its bound: no model has a
/// context of four billion tokens.
pub const MAX_BILLED_PROMPT_TOKENS: u64 = 4_294_967_295;
/// The highest `max_tokens` a tier may allow.
pub const MAX_TIER_MAX_TOKENS: u32 = 1 << 20;
/// The most completion tokens one request is ever billed for: a tier's highest `max_tokens`
/// times the most choices a request may ask for (128).
pub const MAX_BILLED_COMPLETION_TOKENS: u64 = (1 << 20) * 128;

/// Whether `usd` is a price the gateway accepts: finite, non-negative, at most
/// [`MAX_PRICE_USD`].
pub fn valid_price(usd: f64) -> bool {
    usd.is_finite() && (0.0..=MAX_PRICE_USD).contains(&usd)
}

/// Converts a decimal USD amount from config or the admin API (e.g. 3.20) to nano-dollars,
/// rounding to the nearest nano-dollar. Amounts beyond what `i64` holds saturate (Rust's
/// float-to-integer conversion does); NaN is 0. Prices are checked by [`valid_price`] on load,
/// so neither happens to one.
pub fn usd_to_nanos(usd: f64) -> Nanos {
    (usd * 1e9).round() as Nanos
}

pub fn nanos_to_usd(n: Nanos) -> f64 {
    n as f64 / 1e9
}

/// Cost of `tokens` at `price_per_million` (nano-dollars per 1M tokens), rounded half up;
/// `None` when it does not fit in `i64`.
pub fn token_cost(tokens: u64, price_per_million: Nanos) -> Option<Nanos> {
    let product = i128::from(tokens).checked_mul(i128::from(price_per_million))?;
    i64::try_from((product + 500_000).div_euclid(1_000_000)).ok()
}

/// Cost of a prompt and a completion at their prices; `None` when it does not fit in `i64`.
pub fn usage_cost(
    prompt_tokens: u64,
    completion_tokens: u64,
    input_per_million: Nanos,
    output_per_million: Nanos,
) -> Option<Nanos> {
    token_cost(prompt_tokens, input_per_million)?
        .checked_add(token_cost(completion_tokens, output_per_million)?)
}

/// Cost of goods for holding a worker `millis` ms, shared by `slots` concurrent sequences, at
/// `price_per_hour` nano-dollars; `None` when it does not fit in `i64`.
pub fn worker_cost(millis: u64, price_per_hour: Nanos, slots: u32) -> Option<Nanos> {
    let denom = 3_600_000 * i128::from(slots.max(1));
    let product = i128::from(millis).checked_mul(i128::from(price_per_hour))?;
    i64::try_from((product + denom / 2).div_euclid(denom)).ok()
}

/// "$12.345678" with six decimals, for reports.
pub fn format_usd(n: Nanos) -> String {
    let sign = if n < 0 { "-" } else { "" };
    let micros = (n.unsigned_abs() + 500) / 1000;
    format!("{sign}${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn token_costs_are_exact_in_nanos() {
        // 1,000 tokens at $3.20 per 1M = $0.0032.
        assert_eq!(token_cost(1_000, usd_to_nanos(3.20)), Some(3_200_000));
        // One token at $1.99 per 1M = 1,990 nano-dollars, not rounded to zero.
        assert_eq!(token_cost(1, usd_to_nanos(1.99)), Some(1_990));
        assert_eq!(format_usd(3_200_000), "$0.003200");
        assert_eq!(format_usd(-1_500), "-$0.000002");
        assert_eq!(format_usd(i64::MIN), "-$9223372036.854776");
    }

    #[test]
    fn worker_cost_apportions_the_hourly_price() {
        // $2.80/h for one hour on one slot is $2.80; on 8 slots, $0.35.
        assert_eq!(
            worker_cost(3_600_000, usd_to_nanos(2.80), 1),
            Some(usd_to_nanos(2.80))
        );
        assert_eq!(
            worker_cost(3_600_000, usd_to_nanos(2.80), 8),
            Some(usd_to_nanos(0.35))
        );
    }

    #[test]
    fn the_issue_s_absurd_counts_do_not_wrap() {
        // 2^63 and 3·10^15 prompt tokens at Pro's $3.20 per 1M: the second wrapped to
        // -$8.8e9 once, and a prepaid balance rose by that much.
        let price = usd_to_nanos(3.20);
        assert_eq!(token_cost(1 << 63, price), None);
        assert_eq!(token_cost(3_000_000_000_000_000, price), None);
        assert_eq!(token_cost(u64::MAX, 0), Some(0));
    }

    #[test]
    fn prices_are_bounded() {
        assert!(valid_price(0.0) && valid_price(3.2) && valid_price(MAX_PRICE_USD));
        for bad in [-0.01, f64::NAN, f64::INFINITY, MAX_PRICE_USD * 1.01] {
            assert!(!valid_price(bad), "{bad}");
        }
    }

    proptest! {
        /// Whatever a worker reports and whatever price is set: no panic, and a cost is either
        /// `None` or exact, never negative, never wrapped.
        #[test]
        fn costs_never_wrap_or_go_negative(
            prompt in any::<u64>(),
            completion in any::<u64>(),
            input in 0i64..=i64::MAX,
            output in 0i64..=i64::MAX,
            millis in any::<u64>(),
            slots in any::<u32>(),
        ) {
            let exact = |t: u64, p: i64| (i128::from(t) * i128::from(p) + 500_000) / 1_000_000;
            match usage_cost(prompt, completion, input, output) {
                Some(cost) => {
                    prop_assert!(cost >= 0);
                    prop_assert_eq!(i128::from(cost), exact(prompt, input) + exact(completion, output));
                }
                None => prop_assert!(exact(prompt, input) + exact(completion, output) > i128::from(i64::MAX)),
            }
            if let Some(cogs) = worker_cost(millis, input, slots) {
                prop_assert!(cogs >= 0);
            }
        }

        /// Within the most the gateway ever bills one request for, at any accepted price, a
        /// cost always fits.
        #[test]
        fn bounded_usage_at_accepted_prices_always_has_a_cost(
            prompt in 0u64..=MAX_BILLED_PROMPT_TOKENS,
            completion in 0u64..=MAX_BILLED_COMPLETION_TOKENS,
            input in 0.0..=MAX_PRICE_USD,
            output in 0.0..=MAX_PRICE_USD,
        ) {
            let cost = usage_cost(prompt, completion, usd_to_nanos(input), usd_to_nanos(output));
            prop_assert!(cost.is_some_and(|c| c >= 0));
        }
    }
}
