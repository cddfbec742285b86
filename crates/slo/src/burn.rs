//! Error-budget burn rates and the multi-window alert decision of the Google SRE workbook
//! ("Alerting on SLOs", table 5-8): page when the budget burns more than 14.4 times as fast as
//! it may over both the last hour and the last 5 minutes (2% of a 30-day budget gone in an
//! hour); open a ticket when it burns more than 6 times as fast over both 6 hours and 30
//! minutes (5% in 6 hours). The long window says the burn is significant, the short one that
//! it is still going on, so an alert resolves minutes after the trouble ends instead of an
//! hour later.
//!
//! Requests, not minutes: the monthly SLA counts bad minutes, but a burn rate over 5 minutes
//! from five minute-samples would be too coarse to alert on; the request error ratio is the
//! workbook's SLI. A request is bad when it got a 5xx (ours or a worker's passed on) or its
//! first token took 5 s or more (the addendum's "successful response"); 429s are the
//! customer's quota, not our downtime, so they leave the denominator.
//!
//! Burn rates are in thousandths (14.4 = 14,400) so that every comparison is exact.

use serde::Serialize;
use switchyard_metering::sli::SliCounts;

/// A burn rate of 1.0: the budget lasts exactly the SLO period.
pub const BURN_ONE: u64 = 1_000;

/// Requests that count for the SLI in a window, and the bad ones among them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WindowCounts {
    pub eligible: u64,
    pub bad: u64,
}

impl WindowCounts {
    /// From the ledger's counts: each request was judged once where it was counted
    /// (`SliCounts::of_record`), a slow stream that then broke being one bad request.
    pub fn from_sli(c: &SliCounts) -> Self {
        let eligible = c.eligible();
        Self {
            eligible,
            bad: c.bad.min(eligible),
        }
    }

    pub fn add(&mut self, o: &WindowCounts) {
        self.eligible += o.eligible;
        self.bad += o.bad;
    }
}

/// Burn rate in thousandths: `(bad / eligible) / (1 − slo)`, rounded down. No traffic burns
/// nothing; a 100% target (no budget at all) burns "infinitely" at the first bad request.
pub fn burn_rate_milli(w: WindowCounts, slo_bp: u32) -> u64 {
    if w.eligible == 0 || w.bad == 0 {
        return 0;
    }
    let budget_bp = u128::from(10_000u32.saturating_sub(slo_bp));
    if budget_bp == 0 {
        return u64::MAX;
    }
    // bad/eligible ÷ budget_bp/10_000, in thousandths.
    let milli =
        u128::from(w.bad) * 10_000 * u128::from(BURN_ONE) / (u128::from(w.eligible) * budget_bp);
    u64::try_from(milli).unwrap_or(u64::MAX)
}

/// "14.4" for 14,400.
pub fn format_burn(milli: u64) -> String {
    if milli == u64::MAX {
        return "inf".into();
    }
    let tenths = milli / 100;
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// One multi-window rule: both windows must burn faster than the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurnRule {
    pub threshold_milli: u64,
    /// The long window needs at least this many eligible requests: with three requests in
    /// an hour, one failure is a 33% error ratio and would page for nothing.
    pub min_requests: u64,
}

impl BurnRule {
    pub fn fires(&self, long: WindowCounts, short: WindowCounts, slo_bp: u32) -> bool {
        long.eligible >= self.min_requests.max(1)
            && burn_rate_milli(long, slo_bp) > self.threshold_milli
            && burn_rate_milli(short, slo_bp) > self.threshold_milli
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Someone looks at it in working hours.
    Ticket,
    /// Someone is woken up.
    Page,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ticket => "ticket",
            Severity::Page => "page",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ticket" => Some(Severity::Ticket),
            "page" => Some(Severity::Page),
            _ => None,
        }
    }
}

/// A scope's counts over the four windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Windows {
    pub short_page: WindowCounts,
    pub long_page: WindowCounts,
    pub short_ticket: WindowCounts,
    pub long_ticket: WindowCounts,
}

/// The burn rates of [`Windows`], in thousandths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Burns {
    pub short_page: u64,
    pub long_page: u64,
    pub short_ticket: u64,
    pub long_ticket: u64,
}

impl Windows {
    pub fn burns(&self, slo_bp: u32) -> Burns {
        Burns {
            short_page: burn_rate_milli(self.short_page, slo_bp),
            long_page: burn_rate_milli(self.long_page, slo_bp),
            short_ticket: burn_rate_milli(self.short_ticket, slo_bp),
            long_ticket: burn_rate_milli(self.long_ticket, slo_bp),
        }
    }
}

/// The page and ticket rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub page: BurnRule,
    pub ticket: BurnRule,
}

impl Default for Policy {
    /// The workbook's thresholds.
    fn default() -> Self {
        Self {
            page: BurnRule {
                threshold_milli: 14_400,
                min_requests: 10,
            },
            ticket: BurnRule {
                threshold_milli: 6_000,
                min_requests: 10,
            },
        }
    }
}

/// The alert a scope deserves now, if any: a page outranks a ticket.
pub fn decide(w: &Windows, slo_bp: u32, policy: &Policy) -> Option<Severity> {
    if policy.page.fires(w.long_page, w.short_page, slo_bp) {
        Some(Severity::Page)
    } else if policy.ticket.fires(w.long_ticket, w.short_ticket, slo_bp) {
        Some(Severity::Ticket)
    } else {
        None
    }
}

/// Share of a month's error budget that `bad_minutes` spent, in basis points of the budget
/// (10,000 = all of it; more = overspent), rounded up: an incident never reads as cheaper
/// than it was. The budget is the addendum's: `(1 − slo)` of the month's minutes. `None` for
/// a 100% target (no budget to spend).
pub fn budget_spent_bp(bad_minutes: u64, month_minutes: u64, slo_bp: u32) -> Option<u64> {
    let budget_units = u128::from(month_minutes) * u128::from(10_000u32.saturating_sub(slo_bp));
    if budget_units == 0 {
        return None;
    }
    // bad / (month × (10_000 − slo) / 10_000), in bp: bad × 10_000 × 10_000 / units.
    let spent = (u128::from(bad_minutes) * 100_000_000).div_ceil(budget_units);
    Some(u64::try_from(spent).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(eligible: u64, bad: u64) -> WindowCounts {
        WindowCounts { eligible, bad }
    }

    #[test]
    fn burn_rate_is_error_ratio_over_budget() {
        // 99.9%: 15 bad in 1,000 is 1.5%, 15 times the 0.1% budget.
        assert_eq!(burn_rate_milli(w(1_000, 15), 9990), 15_000);
        // 99.5% (hobby): 1 bad in 100 is 1%, twice the 0.5% budget.
        assert_eq!(burn_rate_milli(w(100, 1), 9950), 2_000);
        // 99.95% (business): 1 in 10,000 is 0.01% of a 0.05% budget: 0.2.
        assert_eq!(burn_rate_milli(w(10_000, 1), 9995), 200);
        // Everything failing at 99.9% burns 1000 times too fast.
        assert_eq!(burn_rate_milli(w(40, 40), 9990), 1_000_000);
        // Rounded down: 1 in 3 at 99.9% is 333.33...
        assert_eq!(burn_rate_milli(w(3, 1), 9990), 333_333);
        assert_eq!(format_burn(333_333), "333.3");
        assert_eq!(format_burn(14_400), "14.4");
    }

    #[test]
    fn no_traffic_burns_nothing_and_no_budget_burns_infinitely() {
        assert_eq!(burn_rate_milli(w(0, 0), 9990), 0);
        assert_eq!(burn_rate_milli(w(50, 0), 9990), 0);
        assert_eq!(burn_rate_milli(w(50, 1), 10_000), u64::MAX);
        assert_eq!(format_burn(u64::MAX), "inf");
    }

    #[test]
    fn counts_leave_429s_out_and_never_count_a_request_bad_twice() {
        use switchyard_metering::sli::{Refusal, Verdict};
        let c = SliCounts {
            requests: 100,
            ok: 90,
            errors_5xx: 3,
            errors_429: 10,
            ttft_slow: 2,
            bad: 5,
            throttled: 0,
        };
        assert_eq!(WindowCounts::from_sli(&c), w(90, 5));
        // A request both slow and failed is one bad request, judged where it is counted.
        let limited = Refusal {
            request_id: "r".into(),
            at_ms: 0,
            tenant_id: "t".into(),
            model: "m".into(),
            http_status: 429,
            throttled: false,
        };
        let one = SliCounts::of_refusal(&limited);
        assert_eq!((one.verdict(), one.eligible()), (Verdict::Excluded, 0));
        let shed = Refusal {
            http_status: 503,
            throttled: true,
            ..limited
        };
        let one = SliCounts::of_refusal(&shed);
        assert_eq!((one.verdict(), one.throttled), (Verdict::Bad, 1));
    }

    #[test]
    fn page_needs_both_windows_above_14_4() {
        let p = Policy::default();
        // 1 h: 1.5% errors (burn 15), 5 m: 2% (burn 20): page.
        let mut ws = Windows {
            long_page: w(6_000, 90),
            short_page: w(500, 10),
            long_ticket: w(36_000, 90),
            short_ticket: w(3_000, 20),
        };
        assert_eq!(decide(&ws, 9990, &p), Some(Severity::Page));
        // The 5 m window has recovered (burn 2): no page. The 6 h window burns 2.5 (90 in
        // 36,000), under 6: no ticket either.
        ws.short_page = w(500, 1);
        assert_eq!(decide(&ws, 9990, &p), None);
        // Exactly 14.4 is not above 14.4: 144 bad in 10,000.
        ws.short_page = w(500, 10);
        ws.long_page = w(10_000, 144);
        assert_eq!(burn_rate_milli(ws.long_page, 9990), 14_400);
        assert_ne!(decide(&ws, 9990, &p), Some(Severity::Page));
    }

    #[test]
    fn ticket_needs_both_windows_above_6() {
        let p = Policy::default();
        // 6 h: 0.7% (burn 7), 30 m: 1% (burn 10); 1 h at burn 10 is under 14.4: a ticket.
        let ws = Windows {
            long_page: w(6_000, 60),
            short_page: w(500, 5),
            long_ticket: w(36_000, 252),
            short_ticket: w(3_000, 30),
        };
        assert_eq!(decide(&ws, 9990, &p), Some(Severity::Ticket));
        // The same counts for a hobby tenant (99.5%, five times the budget): burns 1.4 and 2.
        assert_eq!(decide(&ws, 9950, &p), None);
    }

    #[test]
    fn too_little_traffic_does_not_alert() {
        let p = Policy::default();
        let ws = Windows {
            long_page: w(3, 3),
            short_page: w(3, 3),
            long_ticket: w(3, 3),
            short_ticket: w(3, 3),
        };
        assert_eq!(decide(&ws, 9990, &p), None);
        let ws = Windows {
            long_page: w(10, 10),
            short_page: w(2, 2),
            long_ticket: w(10, 10),
            short_ticket: w(2, 2),
        };
        assert_eq!(decide(&ws, 9990, &p), Some(Severity::Page));
    }

    #[test]
    fn budget_spent_is_bad_minutes_over_the_months_budget() {
        // A 30-day month at 99.9%: 43.2 minutes of budget; 5 bad minutes are 11.574...%,
        // rounded up to 1,158 bp.
        assert_eq!(budget_spent_bp(5, 43_200, 9990), Some(1_158));
        // 43.2 minutes would be all of it: 44 bad minutes overspend.
        assert_eq!(budget_spent_bp(44, 43_200, 9990), Some(10_186));
        // A 31-day month at 99.5%: 223.2 minutes; 1 bad minute is 0.448...% → 45 bp.
        assert_eq!(budget_spent_bp(1, 44_640, 9950), Some(45));
        assert_eq!(budget_spent_bp(0, 43_200, 9990), Some(0));
        assert_eq!(budget_spent_bp(1, 43_200, 10_000), None);
    }
}
