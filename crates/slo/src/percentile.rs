//! Percentiles from the rollups' latency histograms. The answer is the upper bound of the
//! bucket holding the percentile's rank: never below the true value, so "p95 ≤ SLO" is never
//! claimed wrongly, and exact at the SLO thresholds, which are bucket bounds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_metering::sli::OVERFLOW_LE_MS;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentile {
    /// Values measured.
    pub samples: u64,
    /// Upper bound of the percentile's bucket in ms; `None` without samples or when it is the
    /// overflow bucket (see `overflow`).
    pub le_ms: Option<i64>,
    /// Beyond the largest bucket bound (over two minutes).
    pub overflow: bool,
}

impl Percentile {
    /// Whether it is within `slo_ms`; no samples is within (nothing was slow).
    pub fn within(&self, slo_ms: u64) -> bool {
        !self.overflow
            && self
                .le_ms
                .is_none_or(|le| i128::from(le) <= i128::from(slo_ms))
    }
}

/// The `pct`-th percentile (1..=100) of a histogram of (bucket bound → count).
///
/// Rank = ⌈pct·n / 100⌉ (nearest-rank): for p95 of 20 values, the 19th; of 100, the 95th.
pub fn percentile(buckets: &BTreeMap<i64, u64>, pct: u64) -> Percentile {
    let samples: u64 = buckets.values().sum();
    if samples == 0 {
        return Percentile::default();
    }
    let rank = (u128::from(samples) * u128::from(pct)).div_ceil(100).max(1);
    let mut seen = 0u128;
    for (&le, &n) in buckets {
        seen += u128::from(n);
        if seen >= rank {
            let overflow = le == OVERFLOW_LE_MS;
            return Percentile {
                samples,
                le_ms: (!overflow).then_some(le),
                overflow,
            };
        }
    }
    Percentile {
        samples,
        le_ms: None,
        overflow: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_over_buckets() {
        // 19 fast (≤ 500 ms) and 1 slow (≤ 6 s): rank ⌈0.95·20⌉ = 19 → the 500 ms bucket.
        let h = BTreeMap::from([(500, 19), (6_000, 1)]);
        assert_eq!(percentile(&h, 95).le_ms, Some(500));
        assert!(percentile(&h, 95).within(1_500));
        // 18 fast and 2 slow: rank 19 falls among the slow → 6,000 ms, over a 1.5 s SLO.
        let h = BTreeMap::from([(500, 18), (6_000, 2)]);
        assert_eq!(percentile(&h, 95).le_ms, Some(6_000));
        assert!(!percentile(&h, 95).within(1_500));
        // Overflow.
        let h = BTreeMap::from([(OVERFLOW_LE_MS, 1)]);
        let p = percentile(&h, 95);
        assert!(p.overflow && p.le_ms.is_none() && !p.within(u64::MAX));
        // Nothing measured.
        assert_eq!(percentile(&BTreeMap::new(), 95), Percentile::default());
        assert!(Percentile::default().within(0));
    }
}
