//! The addendum's "Monthly Uptime: % of 1-min intervals with successful responses (< 5s TTFT
//! and no 5xx)" and its "Error Budget: 0.1% of monthly minutes".
//!
//! A minute is bad when it saw a 5xx (ours: a worker's failure we passed on, or the gateway's
//! own 502/503/504, or a stream broken after its 200) or a first token 5 s or more after
//! arrival. A minute without traffic is up: nothing failed in it. Excluded minutes
//! (qualifying maintenance) are neither good nor bad: they leave the denominator.

/// Measured availability in parts per million, rounded down (never overstated).
/// `eligible == 0` (nothing measurable) reads as 100%.
pub fn availability_ppm(good: u64, eligible: u64) -> u64 {
    if eligible == 0 {
        return 1_000_000;
    }
    let ppm = u128::from(good.min(eligible)) * 1_000_000 / u128::from(eligible);
    u64::try_from(ppm).unwrap_or(1_000_000)
}

/// "99.9004" for 999,004 ppm.
pub fn format_ppm_percent(ppm: u64) -> String {
    format!("{}.{:04}", ppm / 10_000, ppm % 10_000)
}

/// "99.90" for 9,990 bp.
pub fn format_bp_percent(bp: u64) -> String {
    format!("{}.{:02}", bp / 100, bp % 100)
}

/// The error budget in 1/10,000 of a minute: `eligible × (10,000 − slo_bp)` (so 43,200 minutes
/// at 99.9% is 432,000, i.e. 43.2 minutes). Exact, for the two figures below.
fn budget_units(slo_bp: u32, eligible: u64) -> i128 {
    i128::from(eligible) * i128::from(10_000u32.saturating_sub(slo_bp))
}

/// Whole minutes of error budget (rounded down: 43.2 → 43).
pub fn budget_minutes(slo_bp: u32, eligible: u64) -> i64 {
    i64::try_from(budget_units(slo_bp, eligible) / 10_000).unwrap_or(i64::MAX)
}

/// Minutes of budget left after `bad` bad minutes, rounded down (towards −∞: 0.2 left is 0,
/// 0.8 overspent is −1).
pub fn budget_left_minutes(slo_bp: u32, eligible: u64, bad: u64) -> i64 {
    let left = budget_units(slo_bp, eligible) - i128::from(bad) * 10_000;
    i64::try_from(left.div_euclid(10_000)).unwrap_or(i64::MIN)
}

/// Share of the budget left, in basis points of the budget (10,000 = untouched, negative =
/// overspent), rounded down; `None` when there is no budget (a 100% target, or no minutes).
pub fn budget_left_bp(slo_bp: u32, eligible: u64, bad: u64) -> Option<i64> {
    let budget = budget_units(slo_bp, eligible);
    if budget == 0 {
        return None;
    }
    let left = budget - i128::from(bad) * 10_000;
    i64::try_from((left * 10_000).div_euclid(budget)).ok()
}

/// `part / whole` in parts per million, rounded down; 0 for an empty whole.
pub fn ratio_ppm(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    u64::try_from(u128::from(part) * 1_000_000 / u128::from(whole)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_from_minute_counts() {
        // 30-day month: 43,200 minutes.
        // 43 bad: 43,157 / 43,200 = 0.999004629… → 999,004 ppm = 99.9004% (≥ 99.9%).
        assert_eq!(availability_ppm(43_157, 43_200), 999_004);
        assert_eq!(format_ppm_percent(999_004), "99.9004");
        // 44 bad: 43,156 / 43,200 = 0.998981481… → 998,981 ppm = 99.8981% (< 99.9%).
        assert_eq!(availability_ppm(43_156, 43_200), 998_981);
        // 31-day month: 44,640 minutes; 99.9% allows 44.64 bad minutes.
        // 44 bad: 44,596 / 44,640 = 0.999014336… → 99.9014%.
        assert_eq!(availability_ppm(44_596, 44_640), 999_014);
        // No traffic at all is up; nothing measurable reads 100%.
        assert_eq!(availability_ppm(43_200, 43_200), 1_000_000);
        assert_eq!(availability_ppm(0, 0), 1_000_000);
        assert_eq!(format_ppm_percent(1_000_000), "100.0000");
        assert_eq!(format_bp_percent(9_990), "99.90");
    }

    #[test]
    fn error_budget_in_minutes() {
        // 43,200 × 0.1% = 43.2 minutes: 43 whole.
        assert_eq!(budget_minutes(9_990, 43_200), 43);
        // The addendum's "≈ 43.8 min" is an average month (43,830 minutes): 43.83 → 43.
        assert_eq!(budget_minutes(9_990, 43_830), 43);
        // 43 bad: 0.2 left → 0 whole; budget left 0.2 / 43.2 = 0.46% → 46 bp.
        assert_eq!(budget_left_minutes(9_990, 43_200, 43), 0);
        assert_eq!(budget_left_bp(9_990, 43_200, 43), Some(46));
        // 44 bad: 0.8 overspent → −1; −0.8 / 43.2 = −1.85% → −186 bp (rounded down).
        assert_eq!(budget_left_minutes(9_990, 43_200, 44), -1);
        assert_eq!(budget_left_bp(9_990, 43_200, 44), Some(-186));
        // Untouched.
        assert_eq!(budget_left_bp(9_990, 43_200, 0), Some(10_000));
        // A 100% target has no budget.
        assert_eq!(budget_left_bp(10_000, 43_200, 0), None);
    }

    #[test]
    fn rates_in_ppm() {
        // 3 of 1,000 = 0.3% = 3,000 ppm.
        assert_eq!(ratio_ppm(3, 1_000), 3_000);
        assert_eq!(ratio_ppm(1, 3), 333_333);
        assert_eq!(ratio_ppm(1, 0), 0);
    }
}
