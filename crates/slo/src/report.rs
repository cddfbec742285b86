//! One tenant's SLA month, from its per-minute counts, latency histograms and the declared
//! maintenance windows. The caller fetches the rows and the fee; this only computes.
//!
//! One piece, over 500 lines with its tests (the code is about 350): one month's arithmetic, and
//! worked examples that check it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use switchyard_metering::maintenance::Maintenance;
use switchyard_metering::money::Nanos;
use switchyard_metering::sli::{
    minute_of, LatencyCount, Metric, MinuteCounts, ProbeMinute, SliCounts,
};
use switchyard_metering::store::Heartbeats;

use crate::availability::{
    availability_ppm, budget_left_bp, budget_left_minutes, budget_minutes, format_bp_percent,
    format_ppm_percent, ratio_ppm,
};
use crate::credit::{
    availability_credit_bp, credit_amount, latency_credit_bp, steps_below, PartialStep,
};
use crate::exclusions::exclusions;
use crate::objectives::{MAX_5XX_PPM, MAX_THROTTLED_PPM};
use crate::percentile::{percentile, Percentile};

/// The addendum's "p95 TTLT ≤ 8s @ 256 tokens".
pub const TTLT_256_SLO_MS: u64 = 8_000;

/// `[start_ms, end_ms)`; for a month in progress the caller ends it at the current minute
/// (minutes still to come are not "up" yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// What the tenant bought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTerms {
    pub tenant_id: String,
    pub tier: String,
    pub slo_availability_bp: u32,
    pub slo_ttft_p95_ms: u32,
    /// The month's invoice total: the "monthly fee" credits are a share of.
    pub fee: Nanos,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    pub partial_step: PartialStep,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantSla {
    pub tenant: String,
    pub tier: String,
    pub slo_availability_bp: u32,
    pub slo_availability_pct: String,
    /// Minutes in the period, those excluded (qualifying maintenance), and the rest.
    pub minutes: u64,
    pub minutes_excluded: u64,
    /// Minutes of maintenance declared for this tenant that could not be excluded (under 48 h
    /// notice, or over 60 minutes in the month).
    pub minutes_maintenance_not_excluded: u64,
    pub minutes_eligible: u64,
    /// Bad minutes, the unobserved ones included.
    pub minutes_bad: u64,
    /// Minutes in which no gateway was alive (no heartbeat, no traffic) and no qualifying
    /// maintenance covered them: nobody could serve or measure them, so they count as bad.
    pub minutes_unobserved: u64,
    /// Minutes in which a black-box probe of the public endpoint failed (bad, whatever the
    /// gateway saw), and minutes probed at all.
    pub minutes_probe_bad: u64,
    pub minutes_probed: u64,
    /// Availability as the gateway saw it (its traffic and heartbeats), and as the probers did
    /// (over the minutes they probed); `availability_ppm`, which credits are computed from,
    /// takes the worse of the two for each minute.
    pub gateway_availability_ppm: u64,
    pub probe_availability_ppm: u64,
    pub minutes_with_traffic: u64,
    pub availability_ppm: u64,
    pub availability_pct: String,
    pub error_budget_minutes: i64,
    pub error_budget_left_minutes: i64,
    /// Share of the budget left in basis points (10,000 = untouched; negative = overspent).
    pub error_budget_left_bp: Option<i64>,
    pub requests: u64,
    pub ok: u64,
    pub errors_5xx: u64,
    pub errors_429: u64,
    pub ttft_slow: u64,
    /// Requests shed for the fleet's lack of capacity (see [`crate::objectives`]).
    pub throttled: u64,
    /// 5xx among the requests the SLI counts (the tenant's own-limit 429s left out), against
    /// the 0.2% objective.
    pub rate_5xx_ppm: u64,
    pub errors_5xx_objective_ppm: u64,
    pub errors_5xx_slo_met: bool,
    /// Sheds among the same requests, against the 1% objective (the addendum's "429 ≤ 1%,
    /// excluding customer bursts beyond quota").
    pub rate_throttled_ppm: u64,
    pub throttled_objective_ppm: u64,
    pub throttled_slo_met: bool,
    /// The tenant's own-limit 429s among all its requests: how often it hit its limits (an
    /// exclusion, not an objective).
    pub rate_429_ppm: u64,
    pub p95_ttft: Percentile,
    pub p95_ttlt: Percentile,
    pub p95_ttlt_256: Percentile,
    pub slo_ttft_p95_ms: u32,
    pub ttft_slo_met: bool,
    pub ttlt_256_slo_ms: u64,
    pub ttlt_256_slo_met: bool,
    /// Longest run of consecutive hours whose p95 TTFT exceeded the SLO.
    pub ttft_breach_hours_in_a_row: u64,
    pub partial_step: PartialStep,
    pub steps_below_slo: u64,
    pub availability_credit_bp: u64,
    pub latency_credit_bp: u64,
    /// Both credits: each is capped as the addendum says (25% and 5%); they add up.
    pub credit_bp: u64,
    pub fee_nanos: Nanos,
    pub credit_nanos: Nanos,
}

/// What was seen of a period from outside the tenant's own traffic: the minutes no gateway was
/// alive in, and what black-box probers saw of the public endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outside {
    /// See [`unobserved_minutes`].
    pub unobserved: BTreeSet<i64>,
    /// Minutes with at least one probe.
    pub probed: BTreeSet<i64>,
    /// Minutes with at least one failed probe.
    pub probe_bad: BTreeSet<i64>,
}

impl Outside {
    pub fn of(period: Period, alive: &Heartbeats, probes: &[ProbeMinute]) -> Self {
        let (from, to) = minutes_of(period);
        let mut out = Self {
            unobserved: unobserved_minutes(period, alive),
            ..Self::default()
        };
        for p in probes.iter().filter(|p| (from..to).contains(&p.minute)) {
            if p.probes > 0 {
                out.probed.insert(p.minute);
            }
            if p.failed > 0 {
                out.probe_bad.insert(p.minute);
            }
        }
        out
    }
}

/// Minutes of `period` in which no gateway was alive, from the heartbeats: minutes before
/// the first heartbeat ever recorded are not judged (they predate the record).
pub fn unobserved_minutes(period: Period, alive: &Heartbeats) -> BTreeSet<i64> {
    let (from, to) = minutes_of(period);
    let Some(since) = alive.since_minute else {
        return BTreeSet::new();
    };
    (from.max(since)..to)
        .filter(|m| !alive.minutes.contains(m))
        .collect()
}

fn minutes_of(period: Period) -> (i64, i64) {
    (
        minute_of(period.start_ms),
        minute_of(period.end_ms).max(minute_of(period.start_ms)),
    )
}

/// `minutes` and `latency` may hold other tenants' rows; only `terms.tenant_id`'s are used.
/// `outside` is [`Outside::of`] the same period.
///
/// A minute is bad for the tenant when its own traffic saw a 5xx or a slow first token, when no
/// gateway was alive in it (and it had no traffic of the tenant's), or when a black-box probe
/// of the public endpoint failed in it: the worse of the gateway's view and the probers', minute
/// by minute. Excluded (qualifying maintenance) minutes are neither good nor bad.
pub fn tenant_report(
    period: Period,
    terms: &TenantTerms,
    minutes: &[MinuteCounts],
    latency: &[LatencyCount],
    windows: &[Maintenance],
    outside: &Outside,
    settings: Settings,
) -> TenantSla {
    let (from, to) = minutes_of(period);
    let total = u64::try_from(to - from).unwrap_or(0);
    let ex = exclusions(windows, &terms.tenant_id, from, to);

    let mut sum = SliCounts::default();
    let mut with_traffic = 0u64;
    let mut served = BTreeSet::new();
    let mut gateway_bad = BTreeSet::new();
    for m in minutes
        .iter()
        .filter(|m| m.tenant_id == terms.tenant_id && (from..to).contains(&m.minute))
    {
        // Traffic in excluded minutes still shows in the rates; only the uptime skips it.
        sum.add(&m.counts);
        with_traffic += 1;
        served.insert(m.minute);
        if !ex.excluded.contains(&m.minute) && m.counts.is_bad() {
            gateway_bad.insert(m.minute);
        }
    }
    let counted = |m: &&i64| !ex.excluded.contains(*m);
    // A minute with this tenant's traffic was observed whatever the heartbeats say.
    let unobserved: BTreeSet<i64> = outside
        .unobserved
        .range(from..to)
        .filter(counted)
        .filter(|m| !served.contains(*m))
        .copied()
        .collect();
    gateway_bad.extend(&unobserved);
    let probe_bad: BTreeSet<i64> = outside
        .probe_bad
        .range(from..to)
        .filter(counted)
        .copied()
        .collect();
    let probed =
        u64::try_from(outside.probed.range(from..to).filter(counted).count()).unwrap_or(u64::MAX);
    let bad_minutes: BTreeSet<i64> = gateway_bad.union(&probe_bad).copied().collect();
    let len = |s: &BTreeSet<i64>| u64::try_from(s.len()).unwrap_or(u64::MAX);
    let bad = len(&bad_minutes);
    let excluded = len(&ex.excluded);
    let eligible = total.saturating_sub(excluded);
    let good = eligible.saturating_sub(bad);
    let slo = terms.slo_availability_bp;

    let (hists, hourly_ttft) = histograms(latency, &terms.tenant_id, from, to);
    let p95 = |m: Metric| hists.get(&m).map(|h| percentile(h, 95)).unwrap_or_default();
    let (p95_ttft, p95_ttlt, p95_ttlt_256) =
        (p95(Metric::Ttft), p95(Metric::Ttlt), p95(Metric::Ttlt256));
    let breach_run = longest_breach(&hourly_ttft, u64::from(terms.slo_ttft_p95_ms));

    let steps = steps_below(slo, good, eligible, settings.partial_step);
    let availability_credit = availability_credit_bp(steps);
    let latency_credit = latency_credit_bp(breach_run);
    let credit_bp = availability_credit + latency_credit;
    let ppm = availability_ppm(good, eligible);
    TenantSla {
        tenant: terms.tenant_id.clone(),
        tier: terms.tier.clone(),
        slo_availability_bp: slo,
        slo_availability_pct: format_bp_percent(u64::from(slo)),
        minutes: total,
        minutes_excluded: excluded,
        minutes_maintenance_not_excluded: ex.not_excluded,
        minutes_eligible: eligible,
        minutes_bad: bad,
        minutes_unobserved: len(&unobserved),
        minutes_probe_bad: len(&probe_bad),
        minutes_probed: probed,
        gateway_availability_ppm: availability_ppm(
            eligible.saturating_sub(len(&gateway_bad)),
            eligible,
        ),
        probe_availability_ppm: availability_ppm(probed.saturating_sub(len(&probe_bad)), probed),
        minutes_with_traffic: with_traffic,
        availability_ppm: ppm,
        availability_pct: format_ppm_percent(ppm),
        error_budget_minutes: budget_minutes(slo, eligible),
        error_budget_left_minutes: budget_left_minutes(slo, eligible, bad),
        error_budget_left_bp: budget_left_bp(slo, eligible, bad),
        requests: sum.requests,
        ok: sum.ok,
        errors_5xx: sum.errors_5xx,
        errors_429: sum.errors_429,
        ttft_slow: sum.ttft_slow,
        throttled: sum.throttled,
        rate_5xx_ppm: ratio_ppm(sum.errors_5xx, sum.eligible()),
        errors_5xx_objective_ppm: MAX_5XX_PPM,
        errors_5xx_slo_met: ratio_ppm(sum.errors_5xx, sum.eligible()) <= MAX_5XX_PPM,
        rate_throttled_ppm: ratio_ppm(sum.throttled, sum.eligible()),
        throttled_objective_ppm: MAX_THROTTLED_PPM,
        throttled_slo_met: ratio_ppm(sum.throttled, sum.eligible()) <= MAX_THROTTLED_PPM,
        rate_429_ppm: ratio_ppm(sum.errors_429, sum.requests),
        ttft_slo_met: p95_ttft.within(u64::from(terms.slo_ttft_p95_ms)),
        ttlt_256_slo_met: p95_ttlt_256.within(TTLT_256_SLO_MS),
        p95_ttft,
        p95_ttlt,
        p95_ttlt_256,
        slo_ttft_p95_ms: terms.slo_ttft_p95_ms,
        ttlt_256_slo_ms: TTLT_256_SLO_MS,
        ttft_breach_hours_in_a_row: breach_run,
        partial_step: settings.partial_step,
        steps_below_slo: steps,
        availability_credit_bp: availability_credit,
        latency_credit_bp: latency_credit,
        credit_bp,
        fee_nanos: terms.fee,
        credit_nanos: credit_amount(terms.fee, credit_bp),
    }
}

type Histogram = BTreeMap<i64, u64>;

/// The period's histogram per metric, and the TTFT histogram per hour.
fn histograms(
    latency: &[LatencyCount],
    tenant_id: &str,
    from_minute: i64,
    to_minute: i64,
) -> (BTreeMap<Metric, Histogram>, BTreeMap<i64, Histogram>) {
    let mut month: BTreeMap<Metric, Histogram> = BTreeMap::new();
    let mut hourly: BTreeMap<i64, Histogram> = BTreeMap::new();
    // Rows come per hour: an hour is in the period if it starts in it (months are whole hours).
    for l in latency
        .iter()
        .filter(|l| l.tenant_id == tenant_id && (from_minute..to_minute).contains(&(l.hour * 60)))
    {
        *month
            .entry(l.metric)
            .or_default()
            .entry(l.le_ms)
            .or_default() += l.count;
        if l.metric == Metric::Ttft {
            *hourly
                .entry(l.hour)
                .or_default()
                .entry(l.le_ms)
                .or_default() += l.count;
        }
    }
    (month, hourly)
}

/// Longest run of consecutive hours (with traffic) whose p95 TTFT is over `slo_ms`. An hour
/// without traffic ends a run: nothing was slow in it.
fn longest_breach(hourly: &BTreeMap<i64, Histogram>, slo_ms: u64) -> u64 {
    let (mut best, mut run, mut last) = (0u64, 0u64, None::<i64>);
    for (&hour, h) in hourly {
        if percentile(h, 95).within(slo_ms) {
            run = 0;
        } else {
            run = if last == Some(hour - 1) && run > 0 {
                run + 1
            } else {
                1
            };
        }
        last = Some(hour);
        best = best.max(run);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_metering::maintenance::MaintenanceScope;
    use switchyard_metering::money::NANOS_PER_USD;
    use switchyard_metering::sli::MS_PER_MINUTE;

    const M: i64 = MS_PER_MINUTE;

    fn terms() -> TenantTerms {
        TenantTerms {
            tenant_id: "acme".into(),
            tier: "pro".into(),
            slo_availability_bp: 9_990,
            slo_ttft_p95_ms: 1_500,
            fee: 200 * NANOS_PER_USD,
        }
    }

    fn bad_minute(minute: i64) -> MinuteCounts {
        MinuteCounts {
            tenant_id: "acme".into(),
            minute,
            counts: SliCounts {
                requests: 2,
                ok: 1,
                errors_5xx: 1,
                bad: 1,
                ..Default::default()
            },
        }
    }

    fn ttft(hour: i64, le_ms: i64, count: u64) -> LatencyCount {
        LatencyCount {
            tenant_id: "acme".into(),
            hour,
            metric: Metric::Ttft,
            le_ms,
            count,
        }
    }

    #[test]
    fn a_thirty_day_month_with_maintenance_and_slow_hours() {
        // 30 days from minute 0: 43,200 minutes.
        let period = Period {
            start_ms: 0,
            end_ms: 43_200 * M,
        };
        // 150 bad minutes, 10 of them inside a 30-minute window announced days before (excluded).
        let minutes: Vec<_> = (10_000..10_150).map(bad_minute).collect();
        let windows = [Maintenance {
            id: 1,
            start_ms: 10_140 * M,
            end_ms: 10_170 * M,
            scope: MaintenanceScope::All,
            note: String::new(),
            announced_at_ms: 0,
            created_at_ms: 0,
        }];
        // Hours 5, 6, 7 with p95 TTFT 2 s (over 1.5 s); hour 9 fine.
        let latency = [
            ttft(5, 2_000, 10),
            ttft(6, 2_000, 10),
            ttft(7, 2_000, 10),
            ttft(9, 500, 10),
        ];
        let r = tenant_report(
            period,
            &terms(),
            &minutes,
            &latency,
            &windows,
            &Outside::default(),
            Settings::default(),
        );
        // Eligible: 43,200 − 30 = 43,170; bad: 140; good 43,030.
        assert_eq!(
            (r.minutes_eligible, r.minutes_bad, r.minutes_excluded),
            (43_170, 140, 30)
        );
        // 43,030 / 43,170 = 0.99675700… → 996,757 ppm.
        assert_eq!(r.availability_pct, "99.6757");
        // (9,990·43,170 − 10,000·43,030) / (10·43,170) = (431,268,300 − 430,300,000) / 431,700
        // = 968,300 / 431,700 = 2.24 → 2 steps → 10%.
        assert_eq!(r.steps_below_slo, 2);
        assert_eq!(r.availability_credit_bp, 1_000);
        // Budget: 43,170 × 10 / 10,000 = 43.17 → 43; left 43.17 − 140 = −96.83 → −97.
        assert_eq!(
            (r.error_budget_minutes, r.error_budget_left_minutes),
            (43, -97)
        );
        // Three slow hours in a row: the latency credit.
        assert_eq!(r.ttft_breach_hours_in_a_row, 3);
        assert_eq!(r.latency_credit_bp, 500);
        // 15% of $200 = $30.
        assert_eq!(r.credit_nanos, 30 * NANOS_PER_USD);
        // Month p95 TTFT: 40 samples, rank 38 → in the 2,000 ms bucket.
        assert_eq!(r.p95_ttft.le_ms, Some(2_000));
        assert!(!r.ttft_slo_met);
        // Rates over all traffic: 150 of 300 requests were 5xx = 500,000 ppm: far over 0.2%.
        assert_eq!(
            (r.requests, r.errors_5xx, r.rate_5xx_ppm),
            (300, 150, 500_000)
        );
        assert!(!r.errors_5xx_slo_met);
        assert!(r.throttled_slo_met);
    }

    #[test]
    fn a_quiet_month_is_all_up_and_owes_nothing() {
        let period = Period {
            start_ms: 0,
            end_ms: 43_200 * M,
        };
        let always_alive = Heartbeats {
            minutes: (0..43_200).collect(),
            since_minute: Some(0),
        };
        let outside = Outside::of(period, &always_alive, &[]);
        assert!(outside.unobserved.is_empty());
        let r = tenant_report(
            period,
            &terms(),
            &[],
            &[],
            &[],
            &outside,
            Settings::default(),
        );
        assert_eq!(r.availability_pct, "100.0000");
        assert_eq!((r.credit_bp, r.credit_nanos), (0, 0));
        assert_eq!(r.error_budget_left_bp, Some(10_000));
        assert!(r.ttft_slo_met && r.ttlt_256_slo_met);
    }

    #[test]
    fn minutes_no_gateway_saw_are_bad_unless_maintenance_covers_them() {
        let period = Period {
            start_ms: 0,
            end_ms: 43_200 * M,
        };
        // Heartbeats from minute 100 on (before: not judged), but none for minutes
        // 5,000..=5,079 (the gateway was down 80 minutes); traffic in minute 5,050 proves it
        // was up then; a window announced days before covers 5,070..5,080.
        let alive = Heartbeats {
            minutes: (100..43_200)
                .filter(|m| !(5_000..5_080).contains(m))
                .collect(),
            since_minute: Some(100),
        };
        let unobserved = unobserved_minutes(period, &alive);
        assert_eq!(unobserved.len(), 80);
        let mut served = bad_minute(5_050);
        served.counts = SliCounts {
            requests: 1,
            ok: 1,
            ..Default::default()
        };
        assert!(!served.counts.is_bad());
        let windows = [Maintenance {
            id: 1,
            start_ms: 5_070 * M,
            end_ms: 5_080 * M,
            scope: MaintenanceScope::All,
            note: String::new(),
            announced_at_ms: 0,
            created_at_ms: 0,
        }];
        // A prober saw the public endpoint fail in minutes 5,005 (also unobserved: one bad
        // minute, not two) and 9,000 (the gateway saw nothing wrong: the worse view wins).
        let probes =
            [(5_005, 2, 2), (9_000, 2, 1), (9_001, 2, 0)].map(|(minute, probes, failed)| {
                ProbeMinute {
                    minute,
                    prober: "eu-1".into(),
                    region: "eu".into(),
                    probes,
                    failed,
                }
            });
        let outside = Outside::of(period, &alive, &probes);
        let r = tenant_report(
            period,
            &terms(),
            &[served],
            &[],
            &windows,
            &outside,
            Settings::default(),
        );
        assert_eq!(r.minutes_unobserved, 80 - 1 - 10);
        assert_eq!((r.minutes_probe_bad, r.minutes_probed), (2, 3));
        assert_eq!(r.minutes_bad, 69 + 1);
        assert_eq!(r.minutes_eligible, 43_200 - 10);
        // The probers' own view: 1 good minute of 3 probed.
        assert_eq!(r.probe_availability_ppm, 333_333);
        // The gateway's own view misses minute 9,000.
        assert!(r.gateway_availability_ppm > r.availability_ppm);
        // No heartbeat ever: nothing is judged (a store from before heartbeats).
        assert!(unobserved_minutes(period, &Heartbeats::default()).is_empty());
    }

    #[test]
    fn a_gap_hour_breaks_a_breach_run() {
        let hourly: BTreeMap<i64, Histogram> = [1, 2, 4, 5]
            .into_iter()
            .map(|h| (h, BTreeMap::from([(2_000, 1)])))
            .collect();
        assert_eq!(longest_breach(&hourly, 1_500), 2);
    }
}
