//! What the ledger's reports sum (requests, tokens, what tenants were charged, the cost of
//! goods), and its two renderings: usage (`cost`, `cogs`) and margin (`revenue`, `cogs`,
//! `margin`).

use serde::Serialize;
use switchyard_metering::money::Nanos;

use super::render::Usd;

/// Requests and tokens of a report line or total.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(super) struct Counts {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// What every report sums: counts, what tenants were charged, and the cost of goods.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Sums {
    pub(super) counts: Counts,
    pub(super) charged: Nanos,
    pub(super) cogs: Nanos,
}

impl Sums {
    pub(super) fn of(
        requests: u64,
        prompt: u64,
        completion: u64,
        charged: Nanos,
        cogs: Nanos,
    ) -> Self {
        let counts = Counts {
            requests,
            prompt_tokens: prompt,
            completion_tokens: completion,
        };
        Self {
            counts,
            charged,
            cogs,
        }
    }

    fn add(&mut self, other: Sums) {
        let (c, o) = (&mut self.counts, other.counts);
        c.requests += o.requests;
        c.prompt_tokens += o.prompt_tokens;
        c.completion_tokens += o.completion_tokens;
        self.charged += other.charged;
        self.cogs += other.cogs;
    }

    /// The lines' sums and their total.
    pub(super) fn collect<T>(items: &[T], sums: impl Fn(&T) -> Sums) -> (Vec<Sums>, Sums) {
        let mut total = Sums::default();
        let lines = items
            .iter()
            .map(|item| {
                let s = sums(item);
                total.add(s);
                s
            })
            .collect();
        (lines, total)
    }

    pub(super) fn usage(self) -> UsageSums {
        let c = self.counts;
        UsageSums {
            counts: c,
            total_tokens: c.prompt_tokens + c.completion_tokens,
            cost_usd: Usd(self.charged),
            cost_nanos: self.charged,
            cogs_usd: Usd(self.cogs),
            cogs_nanos: self.cogs,
        }
    }

    pub(super) fn margin(self) -> MarginSums {
        let margin = self.charged - self.cogs;
        MarginSums {
            counts: self.counts,
            revenue_usd: Usd(self.charged),
            revenue_nanos: self.charged,
            cogs_usd: Usd(self.cogs),
            cogs_nanos: self.cogs,
            margin_usd: Usd(margin),
            margin_nanos: margin,
            margin_pct: margin_pct(self.charged, self.cogs),
        }
    }
}

#[derive(Serialize)]
pub(super) struct UsageSums {
    #[serde(flatten)]
    counts: Counts,
    total_tokens: u64,
    cost_usd: Usd,
    cost_nanos: Nanos,
    cogs_usd: Usd,
    cogs_nanos: Nanos,
}

#[derive(Serialize)]
pub(super) struct MarginSums {
    #[serde(flatten)]
    counts: Counts,
    revenue_usd: Usd,
    revenue_nanos: Nanos,
    cogs_usd: Usd,
    cogs_nanos: Nanos,
    margin_usd: Usd,
    margin_nanos: Nanos,
    margin_pct: Option<f64>,
}

/// Margin as a percentage of revenue, to two decimals; none without revenue.
fn margin_pct(revenue: i64, cogs: i64) -> Option<f64> {
    (revenue != 0).then(|| {
        let pct = (revenue - cogs) as f64 * 100.0 / revenue as f64;
        (pct * 100.0).round() / 100.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_percent_is_of_revenue() {
        assert_eq!(margin_pct(1_000, 250), Some(75.0));
        assert_eq!(margin_pct(3, 4), Some(-33.33));
        assert_eq!(margin_pct(0, 5), None);
    }
}
