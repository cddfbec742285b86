//! Money as integer nano-dollars (1 USD = 1e9). Billing sums millions of tiny per-request costs;
//! floats would drift, and a cent-rounded cost per request would round most requests to zero.

pub type Nanos = i64;

pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// Converts a decimal USD amount from config or the admin API (e.g. 3.20) to nano-dollars,
/// rounding to the nearest nano-dollar.
pub fn usd_to_nanos(usd: f64) -> Nanos {
    (usd * NANOS_PER_USD as f64).round() as Nanos
}

pub fn nanos_to_usd(n: Nanos) -> f64 {
    n as f64 / NANOS_PER_USD as f64
}

/// Cost of `tokens` at `price_per_million` (nano-dollars per 1M tokens), rounded half up.
pub fn token_cost(tokens: u64, price_per_million: Nanos) -> Nanos {
    let product = tokens as i128 * price_per_million as i128;
    ((product + 500_000) / 1_000_000) as Nanos
}

/// Cost of goods for holding a worker `millis` ms, shared by `slots` concurrent sequences, at
/// `price_per_hour` nano-dollars.
pub fn worker_cost(millis: u64, price_per_hour: Nanos, slots: u32) -> Nanos {
    let slots = slots.max(1) as i128;
    let product = millis as i128 * price_per_hour as i128;
    let denom = 3_600_000 * slots;
    ((product + denom / 2) / denom) as Nanos
}

/// "$12.345678" with six decimals, for reports.
pub fn format_usd(n: Nanos) -> String {
    let sign = if n < 0 { "-" } else { "" };
    let micros = (n.unsigned_abs() + 500) / 1000;
    format!("{sign}${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_costs_are_exact_in_nanos() {
        // 1,000 tokens at $3.20 per 1M = $0.0032.
        assert_eq!(token_cost(1_000, usd_to_nanos(3.20)), 3_200_000);
        // One token at $1.99 per 1M = 1,990 nano-dollars, not rounded to zero.
        assert_eq!(token_cost(1, usd_to_nanos(1.99)), 1_990);
        assert_eq!(format_usd(3_200_000), "$0.003200");
    }

    #[test]
    fn worker_cost_apportions_the_hourly_price() {
        // $2.80/h for one hour on one slot is $2.80; on 8 slots, $0.35.
        assert_eq!(
            worker_cost(3_600_000, usd_to_nanos(2.80), 1),
            usd_to_nanos(2.80)
        );
        assert_eq!(
            worker_cost(3_600_000, usd_to_nanos(2.80), 8),
            usd_to_nanos(0.35)
        );
    }
}
