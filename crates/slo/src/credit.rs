//! Credits per the addendum: "Availability: 99.9%. Credit: 5% of monthly fee per 0.1% below
//! SLA, capped at 25%. Latency: If p95 TTFT exceeds SLO for ≥ 3 consecutive hours …, credit 5%
//! of monthly fee."
//!
//! The target is the tenant tier's `slo_availability_bp` (99.9% for Pro; each tier sells its
//! own). How a partial 0.1% step counts is not said by the addendum, so it is a setting:
//! [`PartialStep::Floor`] (the default: only full steps, as "per 0.1%" reads) or
//! [`PartialStep::Ceil`] (any shortfall starts a step).

use serde::{Deserialize, Serialize};
use switchyard_metering::money::Nanos;

/// One step: 0.1% of availability, in basis points of a percent.
pub const STEP_BP: u64 = 10;
/// Credit per step: 5% of the fee, in basis points of the fee.
pub const CREDIT_PER_STEP_BP: u64 = 500;
/// Cap of the availability credit: 25% of the fee.
pub const AVAILABILITY_CREDIT_CAP_BP: u64 = 2_500;
/// The latency credit: 5% of the fee.
pub const LATENCY_CREDIT_BP: u64 = 500;
/// Hours in a row with p95 TTFT over the SLO that earn the latency credit.
pub const LATENCY_BREACH_HOURS: u64 = 3;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartialStep {
    #[default]
    Floor,
    Ceil,
}

impl PartialStep {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "floor" => Some(PartialStep::Floor),
            "ceil" => Some(PartialStep::Ceil),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PartialStep::Floor => "floor",
            PartialStep::Ceil => "ceil",
        }
    }
}

/// Steps of 0.1% that availability `good / eligible` falls below `slo_bp`.
///
/// shortfall = slo_bp / 10_000 − good / eligible = (slo_bp·eligible − 10_000·good) / (10_000·eligible)
/// steps     = shortfall / (STEP_BP / 10_000)    = (slo_bp·eligible − 10_000·good) / (STEP_BP·eligible)
///
/// so the comparison is exact: no availability is rounded before it is compared.
pub fn steps_below(slo_bp: u32, good: u64, eligible: u64, partial: PartialStep) -> u64 {
    if eligible == 0 {
        return 0; // nothing measurable (a month wholly in maintenance): nothing owed
    }
    let num = i128::from(slo_bp) * i128::from(eligible) - 10_000 * i128::from(good);
    if num <= 0 {
        return 0;
    }
    let den = i128::from(STEP_BP) * i128::from(eligible);
    let steps = match partial {
        PartialStep::Floor => num / den,
        PartialStep::Ceil => (num + den - 1) / den,
    };
    u64::try_from(steps).unwrap_or(u64::MAX)
}

/// The availability credit, in basis points of the fee.
pub fn availability_credit_bp(steps: u64) -> u64 {
    steps
        .saturating_mul(CREDIT_PER_STEP_BP)
        .min(AVAILABILITY_CREDIT_CAP_BP)
}

/// The latency credit, given the longest run of consecutive hours over the TTFT SLO.
pub fn latency_credit_bp(longest_breach_hours: u64) -> u64 {
    if longest_breach_hours >= LATENCY_BREACH_HOURS {
        LATENCY_CREDIT_BP
    } else {
        0
    }
}

/// `credit_bp` of `fee`, rounded half up to the nano-dollar.
pub fn credit_amount(fee: Nanos, credit_bp: u64) -> Nanos {
    let fee = i128::from(fee.max(0));
    let amount = (fee * i128::from(credit_bp) + 5_000) / 10_000;
    Nanos::try_from(amount).unwrap_or(Nanos::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_metering::money::NANOS_PER_USD;

    const FLOOR: PartialStep = PartialStep::Floor;
    const CEIL: PartialStep = PartialStep::Ceil;

    /// The credit for `good` of `eligible` minutes against 99.9%.
    fn credit(good: u64, eligible: u64, partial: PartialStep) -> u64 {
        availability_credit_bp(steps_below(9_990, good, eligible, partial))
    }

    #[test]
    fn worked_example_99_7_percent_is_two_steps_ten_percent() {
        // 99.7% = 997 of 1,000 minutes. Shortfall 99.9 − 99.7 = 0.2% = 2 steps.
        // Exactly: (9,990·1,000 − 10,000·997) / (10·1,000) = (9,990,000 − 9,970,000) / 10,000 = 2.
        assert_eq!(steps_below(9_990, 997, 1_000, FLOOR), 2);
        // 2 steps × 5% = 10% = 1,000 bp.
        assert_eq!(credit(997, 1_000, FLOOR), 1_000);
        assert_eq!(credit(997, 1_000, CEIL), 1_000); // whole steps: the setting changes nothing
    }

    #[test]
    fn worked_example_99_0_percent_is_capped_at_25_percent() {
        // 99.0% = 990 of 1,000. (9,990,000 − 9,900,000) / 10,000 = 9 steps → 45%, capped: 25%.
        assert_eq!(steps_below(9_990, 990, 1_000, FLOOR), 9);
        assert_eq!(credit(990, 1_000, FLOOR), 2_500);
        // Even 0% availability is capped at 25%.
        assert_eq!(credit(0, 1_000, FLOOR), 2_500);
    }

    #[test]
    fn worked_example_99_9_percent_and_above_owe_nothing() {
        // 999 of 1,000: (9,990,000 − 9,990,000) = 0 → no step, with either setting.
        assert_eq!(credit(999, 1_000, FLOOR), 0);
        assert_eq!(credit(999, 1_000, CEIL), 0);
        assert_eq!(credit(1_000, 1_000, CEIL), 0);
    }

    #[test]
    fn worked_example_99_85_percent_is_half_a_step() {
        // 9,985 of 10,000 = 99.85%: 0.05% below = half a step.
        // (9,990·10,000 − 10,000·9,985) / (10·10,000) = 50,000 / 100,000 = 0.5
        assert_eq!(steps_below(9_990, 9_985, 10_000, FLOOR), 0); // floor: 0 → 0%
        assert_eq!(steps_below(9_990, 9_985, 10_000, CEIL), 1); // ceil: 1 → 5%
        assert_eq!(credit(9_985, 10_000, FLOOR), 0);
        assert_eq!(credit(9_985, 10_000, CEIL), 500);
    }

    #[test]
    fn worked_example_a_30_day_month_in_minutes() {
        // 30 days = 43,200 minutes; 99.9% allows 43.2 bad minutes.
        // 43 bad: 43,157 good. 9,990·43,200 = 431,568,000 < 10,000·43,157 = 431,570,000:
        // at or above 99.9% (99.9004%), nothing owed.
        assert_eq!(steps_below(9_990, 43_157, 43_200, CEIL), 0);
        // 44 bad: 43,156 good. 431,568,000 − 431,560,000 = 8,000 over 10·43,200 = 432,000:
        // 0.0185 of a step (99.8981%): floor 0, ceil 1.
        assert_eq!(steps_below(9_990, 43_156, 43_200, FLOOR), 0);
        assert_eq!(steps_below(9_990, 43_156, 43_200, CEIL), 1);
        // 86 bad (99.8009%): 431,568,000 − 431,140,000 = 428,000 / 432,000 = 0.99 → floor 0.
        assert_eq!(steps_below(9_990, 43_114, 43_200, FLOOR), 0);
        // 87 bad (99.7986%): 438,000 / 432,000 = 1.01 → 1 step, 5%.
        assert_eq!(steps_below(9_990, 43_113, 43_200, FLOOR), 1);
        assert_eq!(credit(43_113, 43_200, FLOOR), 500);
        // 130 bad (99.6990%): 431,568,000 − 430,700,000 = 868,000 / 432,000 = 2.009 → 2, 10%.
        assert_eq!(credit(43_070, 43_200, FLOOR), 1_000);
    }

    #[test]
    fn other_tiers_use_their_own_target() {
        // Hobby sells 99.5%: 99.3% (993 of 1,000) is (9,950,000 − 9,930,000) / 10,000 = 2 steps.
        assert_eq!(steps_below(9_950, 993, 1_000, FLOOR), 2);
        // Nothing measurable, nothing owed.
        assert_eq!(steps_below(9_990, 0, 0, CEIL), 0);
    }

    #[test]
    fn latency_credit_needs_three_hours_in_a_row() {
        assert_eq!(latency_credit_bp(2), 0);
        assert_eq!(latency_credit_bp(3), 500);
        assert_eq!(latency_credit_bp(10), 500);
    }

    #[test]
    fn credit_amounts_are_exact_nanos() {
        // 10% of $1,234.56 = $123.456.
        let fee = 1_234_560_000_000;
        assert_eq!(credit_amount(fee, 1_000), 123_456_000_000);
        // 5% of 1 nano-dollar is 0.05 → rounds to 0; 5% of 10 is 0.5 → rounds half up to 1.
        assert_eq!(credit_amount(1, 500), 0);
        assert_eq!(credit_amount(10, 500), 1);
        // 25% of $100.
        assert_eq!(
            credit_amount(100 * NANOS_PER_USD, 2_500),
            25 * NANOS_PER_USD
        );
        // A negative fee (a correction) owes nothing.
        assert_eq!(credit_amount(-5, 2_500), 0);
    }
}
