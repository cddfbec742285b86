//! What the ledger says about each provider: requests served and failed, TTFT and TTLT, and
//! the cost of goods per worker-millisecond hour by hour (which moves only with the price).

use std::collections::BTreeMap;

use super::rubric::coefficient_of_variation;
use crate::mix::{LedgerRow, RowStatus};

/// What the ledger says about one provider.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    pub requests: u64,
    pub completed: u64,
    /// Provider-side failures: 5xx or no response, or a stream cut mid-way.
    pub provider_failures: u64,
    pub ttft_ms: Vec<u64>,
    pub ttlt_ms: Vec<u64>,
    /// Per worker, per hour: (Σ cost of goods nano-dollars, Σ worker milliseconds).
    pub cogs_by_worker_hour: BTreeMap<(String, i64), (i64, u64)>,
}

/// Groups ledger rows by provider.
pub fn measure(rows: &[LedgerRow]) -> BTreeMap<String, Measured> {
    let mut out: BTreeMap<String, Measured> = BTreeMap::new();
    for r in rows {
        let m = out.entry(r.provider.clone()).or_default();
        m.requests += 1;
        match r.status {
            RowStatus::Completed => {
                m.completed += 1;
                m.ttlt_ms.push(r.total_ms);
                if let Some(t) = r.ttft_ms {
                    m.ttft_ms.push(t);
                }
            }
            RowStatus::FailedMidStream => m.provider_failures += 1,
            RowStatus::Failed if r.http_status >= 500 || r.http_status == 0 => {
                m.provider_failures += 1
            }
            // A client's 4xx or a client that went away says nothing about the provider.
            RowStatus::Failed | RowStatus::ClientDisconnected | RowStatus::Interrupted => {}
        }
        let hour = r.started_at_ms.div_euclid(3_600_000);
        let e = m
            .cogs_by_worker_hour
            .entry((r.worker.clone(), hour))
            .or_insert((0, 0));
        e.0 += r.cogs_nanos;
        e.1 += r.total_ms;
    }
    for m in out.values_mut() {
        m.ttft_ms.sort_unstable();
        m.ttlt_ms.sort_unstable();
    }
    out
}

impl Measured {
    /// The request-weighted mean, over workers, of the variation of cost of goods per
    /// worker-millisecond from hour to hour (that rate is the worker's $/h over its
    /// concurrency, so it moves only when the price does). `None` with fewer than two
    /// priced hours on every worker.
    pub fn price_variation(&self) -> Option<(f64, usize)> {
        let mut by_worker: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for ((worker, _), (cogs, ms)) in &self.cogs_by_worker_hour {
            if *cogs > 0 && *ms > 0 {
                by_worker
                    .entry(worker)
                    .or_default()
                    .push(*cogs as f64 / *ms as f64);
            }
        }
        let (mut sum, mut weight, mut hours) = (0.0, 0.0, 0usize);
        for rates in by_worker.values() {
            if let Some(cv) = coefficient_of_variation(rates) {
                sum += cv * rates.len() as f64;
                weight += rates.len() as f64;
                hours = hours.max(rates.len());
            }
        }
        (weight > 0.0).then(|| (sum / weight, hours))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::row;
    use crate::providers::price_variation_score;

    #[test]
    fn price_stability_from_cost_of_goods() {
        // One worker, two hours: 100 nano$/ms in hour 0, 120 in hour 1 → mean 110, sd 10,
        // CV 9.1% → 3.
        let mut a = row(0, 1, 1, RowStatus::Completed);
        a.cogs_nanos = 100_000;
        let mut b = row(3_600_000, 1, 1, RowStatus::Completed);
        b.cogs_nanos = 120_000;
        let m = measure(&[a, b]);
        let (cv, hours) = m["p"].price_variation().unwrap();
        assert!((cv - 10.0 / 110.0).abs() < 1e-12);
        assert_eq!(hours, 2);
        assert_eq!(price_variation_score(cv), 3);
    }
}
