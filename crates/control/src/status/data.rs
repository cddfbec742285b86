//! What the public status page shows, computed from the fleet's worker states and the
//! ledger's per-minute SLI rollups, summed over every tenant (no tenant id ever enters it).
//!
//! - **Current status** per model and per region: `down` when none of its workers is in
//!   rotation (requests would get 503) or when most of the last minutes' requests got a 5xx;
//!   `degraded` when some worker is out of rotation against the operator's will (unhealthy or
//!   ejected) or when the last minutes saw 5xx or 5 s+ first tokens above 1%; else
//!   `operational`. Draining and starting workers are the operator's doing: they are counted,
//!   not held against the status.
//! - **History** over 24 h, 7 d and 30 d: availability in the addendum's sense (share of
//!   1-minute intervals without a 5xx or a first token of 5 s or more; a minute without
//!   traffic is up) measured over *all* traffic, so it is a lower bound of every tenant's own
//!   figure; p95 TTFT from the rollups' histograms (the upper bound of the bucket holding it);
//!   and the 5xx rate. Maintenance is not excluded here: the page shows what happened.
//!
//! Windows end with the current minute (included) and are cut into equal buckets counted back
//! from it, so every bucket is whole and a window is exactly its length in minutes.
//!
//! One piece, over 500 lines with its tests: the status page's figures from one set of store reads
//! (current state, history windows, their buckets), which must agree with each other.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use switchyard_fleet::WorkerState;
use switchyard_metering::maintenance::{Maintenance, MaintenanceScope};
use switchyard_metering::sli::{
    minute_of, BucketLatency, FleetMinute, Metric, ScopeCounts, SliCounts, LATENCY_BOUNDS_MS,
    MS_PER_MINUTE,
};
use switchyard_metering::{Store, StoreError};
use switchyard_slo::availability::{availability_ppm, format_ppm_percent, ratio_ppm};
use switchyard_slo::percentile::{percentile, Percentile};
use switchyard_slo::{Outside, Period};

use crate::admin::format_rfc3339;

/// Minutes of SLIs (the current one included) the current status looks at.
pub const RECENT_MINUTES: i64 = 5;
/// 5xx share of recent requests at which a scope is down (most requests fail).
pub const DOWN_ERROR_PPM: u64 = 500_000;
/// Share of recent requests with a 5xx or a slow first token at which a scope is degraded.
pub const DEGRADED_BAD_PPM: u64 = 10_000;

/// A chart's span: `buckets` buckets of `bucket_minutes`.
#[derive(Debug, Clone, Copy)]
pub struct WindowSpec {
    pub name: &'static str,
    pub label: &'static str,
    pub buckets: i64,
    pub bucket_minutes: i64,
}

impl WindowSpec {
    pub fn minutes(&self) -> i64 {
        self.buckets * self.bucket_minutes
    }
}

/// 96 × 15 min, 84 × 2 h, 90 × 8 h: under a hundred points each, readable on a phone. Every
/// bucket length is a multiple of 15 minutes, so one latency query at 15 minutes serves all.
pub const WINDOWS: [WindowSpec; 3] = [
    WindowSpec {
        name: "24h",
        label: "24 hours",
        buckets: 96,
        bucket_minutes: 15,
    },
    WindowSpec {
        name: "7d",
        label: "7 days",
        buckets: 84,
        bucket_minutes: 120,
    },
    WindowSpec {
        name: "30d",
        label: "30 days",
        buckets: 90,
        bucket_minutes: 480,
    },
];

/// The finest bucket length of [`WINDOWS`], which all the others are multiples of.
const LATENCY_QUERY_BUCKET: i64 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Operational,
    Degraded,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Operational => "operational",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Health::Operational => "Operational",
            Health::Degraded => "Degraded",
            Health::Down => "Down",
        }
    }
}

/// What the page needs of a worker: never its name, URL or provider.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    pub model: String,
    pub region: String,
    pub state: WorkerState,
}

impl WorkerInfo {
    pub fn of_fleet(fleet: &switchyard_fleet::Fleet) -> Vec<WorkerInfo> {
        fleet
            .workers()
            .iter()
            .map(|w| WorkerInfo {
                model: w.spec.model.clone(),
                region: w.spec.region.clone(),
                state: w.state(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WorkerCounts {
    pub total: u32,
    /// Ready or on probation: taking requests.
    pub in_rotation: u32,
    /// Unhealthy or ejected: out of rotation not by the operator's choice.
    pub impaired: u32,
}

impl WorkerCounts {
    fn add(&mut self, state: WorkerState) {
        self.total += 1;
        match state {
            WorkerState::Ready | WorkerState::Probation => self.in_rotation += 1,
            WorkerState::Unhealthy | WorkerState::Ejected => self.impaired += 1,
            WorkerState::Starting | WorkerState::Draining => {}
        }
    }
}

/// The last [`RECENT_MINUTES`] minutes of one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Recent {
    pub requests: u64,
    pub errors_5xx: u64,
    pub ttft_slow: u64,
    pub error_rate_ppm: u64,
}

impl Recent {
    fn of(c: &SliCounts) -> Self {
        Self {
            requests: c.requests,
            errors_5xx: c.errors_5xx,
            ttft_slow: c.ttft_slow,
            error_rate_ppm: ratio_ppm(c.errors_5xx, c.requests),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeStatus {
    pub name: String,
    pub status: Health,
    /// Why, in words fit for the public.
    pub reason: String,
    pub workers: WorkerCounts,
    pub recent: Recent,
}

/// The status of one model or region from its workers and its recent counts.
pub fn classify(workers: WorkerCounts, recent: &SliCounts) -> (Health, String) {
    // The SLI's own definition: bad requests among those it counts (429s left out).
    let eligible = recent.eligible();
    let error_ppm = ratio_ppm(recent.errors_5xx, eligible);
    let bad_ppm = ratio_ppm(recent.bad, eligible);
    let pct = |ppm: u64| format!("{}.{:02}%", ppm / 10_000, ppm % 10_000 / 100);
    if workers.total > 0 && workers.in_rotation == 0 {
        return (Health::Down, "no worker is in rotation".into());
    }
    if recent.requests > 0 && error_ppm >= DOWN_ERROR_PPM {
        return (
            Health::Down,
            format!(
                "{} of requests failed in the last {RECENT_MINUTES} minutes",
                pct(error_ppm)
            ),
        );
    }
    if workers.impaired > 0 {
        return (
            Health::Degraded,
            format!(
                "{} of {} workers out of rotation",
                workers.impaired, workers.total
            ),
        );
    }
    if recent.requests > 0 && bad_ppm >= DEGRADED_BAD_PPM {
        return (
            Health::Degraded,
            format!(
                "{} of requests failed or were slow in the last {RECENT_MINUTES} minutes",
                pct(bad_ppm)
            ),
        );
    }
    (Health::Operational, "operating normally".into())
}

/// One chart bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    pub start: String,
    pub start_ms: i64,
    pub requests: u64,
    pub errors_5xx: u64,
    pub ttft_slow: u64,
    pub minutes_bad: u64,
    pub availability_ppm: u64,
    /// `None` without requests.
    pub error_rate_ppm: Option<u64>,
    /// `None` without a first token measured; the last bucket bound when beyond it.
    pub p95_ttft_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub minutes: u64,
    pub minutes_bad: u64,
    /// The worse of the gateway's view and the black-box probers' for each minute.
    pub availability_ppm: u64,
    /// The probers' own view: minutes they probed, and the share in which none failed
    /// (`None` when nothing was probed).
    pub probed_minutes: u64,
    pub probe_availability_ppm: Option<u64>,
    pub availability_pct: String,
    pub requests: u64,
    pub errors_5xx: u64,
    pub ttft_slow: u64,
    pub error_rate_ppm: Option<u64>,
    pub p95_ttft_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    pub name: &'static str,
    pub label: &'static str,
    pub minutes: i64,
    pub bucket_minutes: i64,
    pub from: String,
    pub to: String,
    pub summary: Summary,
    pub points: Vec<Point>,
}

/// Everything `/status.json` serves and `/status` draws.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub object: &'static str,
    pub generated_at: String,
    pub generated_at_ms: i64,
    pub status: Health,
    pub recent_minutes: i64,
    pub models: Vec<ScopeStatus>,
    pub regions: Vec<ScopeStatus>,
    pub windows: Vec<Window>,
    /// Announced maintenance for everyone, in progress or within [`MAINTENANCE_AHEAD_MS`].
    /// Windows for one tenant are not shown (no tenant reaches this page).
    pub maintenance: Vec<Announced>,
}

/// How far ahead the page lists announced maintenance.
pub const MAINTENANCE_AHEAD_MS: i64 = 30 * 24 * 60 * MS_PER_MINUTE;

/// A maintenance window as the public page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Announced {
    pub start: String,
    pub end: String,
    pub minutes: i64,
    pub note: String,
    pub announced_at: String,
    pub in_progress: bool,
}

impl Snapshot {
    pub fn window(&self, name: &str) -> Option<&Window> {
        self.windows.iter().find(|w| w.name == name)
    }
}

/// Reads the store (async: the page must not block the runtime) and the fleet, then builds.
pub async fn compute(
    store: &dyn Store,
    workers: Vec<WorkerInfo>,
    now_ms: i64,
) -> Result<Snapshot, StoreError> {
    let to_ms = (minute_of(now_ms) + 1) * MS_PER_MINUTE;
    let longest = WINDOWS.iter().map(WindowSpec::minutes).max().unwrap_or(0);
    let from_ms = to_ms - longest * MS_PER_MINUTE;
    let recent = store
        .sli_scopes(to_ms - RECENT_MINUTES * MS_PER_MINUTE, to_ms)
        .await?;
    let minutes = store.sli_fleet_minutes(from_ms, to_ms).await?;
    let ttft = store
        .sli_fleet_latency(from_ms, to_ms, Metric::Ttft, LATENCY_QUERY_BUCKET)
        .await?;
    let windows = store
        .list_maintenance(Some(now_ms), Some(now_ms + MAINTENANCE_AHEAD_MS))
        .await?;
    let alive = store.heartbeats(from_ms, to_ms).await?;
    let probes = store.probe_minutes(from_ms, to_ms).await?;
    let outside = Outside::of(
        Period {
            start_ms: from_ms,
            end_ms: to_ms,
        },
        &alive,
        &probes,
    );
    let mut s = build(now_ms, &workers, &recent, &minutes, &ttft, &outside);
    s.maintenance = announced(&windows, now_ms);
    Ok(s)
}

fn announced(windows: &[Maintenance], now_ms: i64) -> Vec<Announced> {
    windows
        .iter()
        .filter(|w| w.scope == MaintenanceScope::All)
        .map(|w| Announced {
            start: format_rfc3339(w.start_ms),
            end: format_rfc3339(w.end_ms),
            minutes: (w.end_ms - w.start_ms + MS_PER_MINUTE - 1) / MS_PER_MINUTE,
            note: w.note.clone(),
            announced_at: format_rfc3339(w.created_at_ms),
            in_progress: w.start_ms <= now_ms && now_ms < w.end_ms,
        })
        .collect()
}

/// The pure half of [`compute`]: `ttft` is bucketed by [`LATENCY_QUERY_BUCKET`] minutes from
/// the longest window's first minute; `outside` holds the minutes no gateway was alive in and
/// what black-box probers saw (bad minutes, as the SLA report counts them).
pub fn build(
    now_ms: i64,
    workers: &[WorkerInfo],
    recent: &[ScopeCounts],
    minutes: &[FleetMinute],
    ttft: &[BucketLatency],
    outside: &Outside,
) -> Snapshot {
    let models = scopes(workers, recent, |w| &w.model, |s| Some(&s.model));
    // Refusals before any worker have no region: they count for their model only.
    let regions = scopes(
        workers,
        recent,
        |w| &w.region,
        |s| (!s.region.is_empty()).then_some(&s.region),
    );
    let status = models
        .iter()
        .chain(&regions)
        .map(|s| s.status)
        .max()
        .unwrap_or(if workers.is_empty() {
            Health::Down
        } else {
            Health::Operational
        });
    let to_minute = minute_of(now_ms) + 1;
    let longest = WINDOWS.iter().map(WindowSpec::minutes).max().unwrap_or(0);
    let windows = WINDOWS
        .iter()
        .map(|spec| window(spec, to_minute, to_minute - longest, minutes, ttft, outside))
        .collect();
    Snapshot {
        object: "status",
        generated_at: format_rfc3339(now_ms),
        generated_at_ms: now_ms,
        status,
        recent_minutes: RECENT_MINUTES,
        models,
        regions,
        windows,
        maintenance: Vec::new(),
    }
}

fn scopes<'a>(
    workers: &'a [WorkerInfo],
    recent: &'a [ScopeCounts],
    of_worker: impl Fn(&'a WorkerInfo) -> &'a String,
    of_counts: impl Fn(&'a ScopeCounts) -> Option<&'a String>,
) -> Vec<ScopeStatus> {
    // Scopes are the live fleet's: a model no worker serves any more is not shown.
    let mut by: BTreeMap<&str, (WorkerCounts, SliCounts)> = BTreeMap::new();
    for w in workers {
        by.entry(of_worker(w).as_str()).or_default().0.add(w.state);
    }
    for s in recent {
        if let Some(entry) = of_counts(s).and_then(|name| by.get_mut(name.as_str())) {
            entry.1.add(&s.counts);
        }
    }
    by.into_iter()
        .map(|(name, (workers, counts))| {
            let (status, reason) = classify(workers, &counts);
            ScopeStatus {
                name: name.to_string(),
                status,
                reason,
                workers,
                recent: Recent::of(&counts),
            }
        })
        .collect()
}

/// One window's buckets. `minutes` and `ttft` start at `query_from` (the longest window's
/// first minute); rows before this window's start are skipped.
fn window(
    spec: &WindowSpec,
    to_minute: i64,
    query_from: i64,
    minutes: &[FleetMinute],
    ttft: &[BucketLatency],
    outside: &Outside,
) -> Window {
    let from = to_minute - spec.minutes();
    let n = usize::try_from(spec.buckets).unwrap_or(0);
    let index = |minute: i64| -> Option<usize> {
        if minute < from || minute >= to_minute {
            return None;
        }
        usize::try_from((minute - from) / spec.bucket_minutes).ok()
    };
    let mut counts = vec![SliCounts::default(); n];
    let mut bad = vec![0u64; n];
    let mut served = BTreeSet::new();
    let mut bad_minutes = BTreeSet::new();
    for m in minutes {
        if let Some(c) = index(m.minute).and_then(|i| counts.get_mut(i).zip(bad.get_mut(i))) {
            c.0.add(&m.counts);
            *c.1 += u64::from(m.counts.is_bad());
            served.insert(m.minute);
            if m.counts.is_bad() {
                bad_minutes.insert(m.minute);
            }
        }
    }
    // Minutes no gateway was alive in are bad too, unless traffic shows one was; and so are
    // minutes in which a black-box probe failed (the worse view wins). Not the current minute:
    // it is not over, and this process may not have beaten in it yet.
    let current = to_minute - 1;
    let mut outside_bad: BTreeSet<i64> = outside
        .unobserved
        .range(from..current.max(from))
        .filter(|m| !served.contains(*m))
        .copied()
        .collect();
    outside_bad.extend(outside.probe_bad.range(from..to_minute));
    for &m in &outside_bad {
        if bad_minutes.contains(&m) {
            continue;
        }
        if let Some(b) = index(m).and_then(|i| bad.get_mut(i)) {
            *b += 1;
        }
    }
    let probed = u64::try_from(outside.probed.range(from..to_minute).count()).unwrap_or(0);
    let probe_bad = u64::try_from(outside.probe_bad.range(from..to_minute).count()).unwrap_or(0);
    let mut hists: Vec<BTreeMap<i64, u64>> = vec![BTreeMap::new(); n];
    let mut whole: BTreeMap<i64, u64> = BTreeMap::new();
    for l in ttft {
        let minute = query_from + l.bucket * LATENCY_QUERY_BUCKET;
        if let Some(h) = index(minute).and_then(|i| hists.get_mut(i)) {
            *h.entry(l.le_ms).or_default() += l.count;
            *whole.entry(l.le_ms).or_default() += l.count;
        }
    }
    let bucket_len = u64::try_from(spec.bucket_minutes).unwrap_or(0);
    let points = (0..n)
        .map(|i| {
            let start_minute = from + spec.bucket_minutes * i64::try_from(i).unwrap_or(0);
            let c = counts.get(i).copied().unwrap_or_default();
            let b = bad.get(i).copied().unwrap_or(0);
            Point {
                start: format_rfc3339(start_minute * MS_PER_MINUTE),
                start_ms: start_minute * MS_PER_MINUTE,
                requests: c.requests,
                errors_5xx: c.errors_5xx,
                ttft_slow: c.ttft_slow,
                minutes_bad: b,
                availability_ppm: availability_ppm(bucket_len.saturating_sub(b), bucket_len),
                error_rate_ppm: (c.requests > 0).then(|| ratio_ppm(c.errors_5xx, c.requests)),
                p95_ttft_ms: hists.get(i).and_then(p95_ms),
            }
        })
        .collect::<Vec<_>>();
    let total_minutes = u64::try_from(spec.minutes()).unwrap_or(0);
    let mut sum = SliCounts::default();
    for c in &counts {
        sum.add(c);
    }
    let minutes_bad: u64 = bad.iter().sum();
    let ppm = availability_ppm(total_minutes.saturating_sub(minutes_bad), total_minutes);
    Window {
        name: spec.name,
        label: spec.label,
        minutes: spec.minutes(),
        bucket_minutes: spec.bucket_minutes,
        from: format_rfc3339(from * MS_PER_MINUTE),
        to: format_rfc3339(to_minute * MS_PER_MINUTE),
        summary: Summary {
            minutes: total_minutes,
            minutes_bad,
            availability_ppm: ppm,
            probed_minutes: probed,
            probe_availability_ppm: (probed > 0)
                .then(|| availability_ppm(probed.saturating_sub(probe_bad), probed)),
            availability_pct: format_ppm_percent(ppm),
            requests: sum.requests,
            errors_5xx: sum.errors_5xx,
            ttft_slow: sum.ttft_slow,
            error_rate_ppm: (sum.requests > 0).then(|| ratio_ppm(sum.errors_5xx, sum.requests)),
            p95_ttft_ms: p95_ms(&whole),
        },
        points,
    }
}

/// The p95's bucket bound; beyond the last bound reads as the last bound (the page says "≥").
fn p95_ms(h: &BTreeMap<i64, u64>) -> Option<i64> {
    match percentile(h, 95) {
        Percentile { samples: 0, .. } => None,
        Percentile {
            le_ms: Some(le), ..
        } => Some(le),
        Percentile { .. } => LATENCY_BOUNDS_MS.last().copied(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn counts(requests: u64, errors_5xx: u64, ttft_slow: u64) -> SliCounts {
        SliCounts {
            requests,
            ok: requests - errors_5xx,
            errors_5xx,
            errors_429: 0,
            ttft_slow,
            bad: (errors_5xx + ttft_slow).min(requests),
            throttled: 0,
        }
    }

    fn workers(total: u32, in_rotation: u32, impaired: u32) -> WorkerCounts {
        WorkerCounts {
            total,
            in_rotation,
            impaired,
        }
    }

    #[test]
    fn classification_thresholds() {
        let quiet = SliCounts::default();
        assert_eq!(classify(workers(2, 2, 0), &quiet).0, Health::Operational);
        // All drained: requests would get 503.
        assert_eq!(classify(workers(2, 0, 0), &quiet).0, Health::Down);
        assert_eq!(classify(workers(2, 1, 1), &quiet).0, Health::Degraded);
        // 1 failure in 100 is 1%: degraded; 1 in 101 is not.
        assert_eq!(
            classify(workers(1, 1, 0), &counts(100, 1, 0)).0,
            Health::Degraded
        );
        assert_eq!(
            classify(workers(1, 1, 0), &counts(101, 1, 0)).0,
            Health::Operational
        );
        // Slow first tokens count towards degraded, never towards down.
        assert_eq!(
            classify(workers(1, 1, 0), &counts(10, 0, 10)).0,
            Health::Degraded
        );
        let (h, why) = classify(workers(1, 1, 0), &counts(4, 2, 0));
        assert_eq!(
            (h, why.as_str()),
            (
                Health::Down,
                "50.00% of requests failed in the last 5 minutes"
            )
        );
        assert_eq!(
            classify(workers(1, 1, 0), &counts(5, 2, 0)).0,
            Health::Degraded
        );
    }

    #[test]
    fn windows_are_whole_buckets_ending_with_the_current_minute() {
        // now = minute 100_000, 30 s in.
        let now_ms = 100_000 * MS_PER_MINUTE + 30_000;
        let to = 100_001;
        let query_from = to - 43_200;
        let w = WorkerInfo {
            model: "m".into(),
            region: "eu".into(),
            state: WorkerState::Ready,
        };
        let minutes = vec![
            // The current minute: last bucket of every window.
            FleetMinute {
                minute: 100_000,
                counts: counts(4, 1, 0),
            },
            // 15 minutes earlier: the 24 h window's second-to-last bucket.
            FleetMinute {
                minute: 99_985,
                counts: counts(2, 0, 0),
            },
            // Just outside 24 h, inside 7 d.
            FleetMinute {
                minute: to - 1_441,
                counts: counts(1, 1, 0),
            },
        ];
        // 15-minute latency buckets from query_from: the last one holds the current minute.
        let last = (to - 1 - query_from) / 15;
        let ttft = vec![
            BucketLatency {
                bucket: last,
                le_ms: 250,
                count: 19,
            },
            BucketLatency {
                bucket: last,
                le_ms: 2_000,
                count: 1,
            },
            BucketLatency {
                bucket: last - 1,
                le_ms: 2_000,
                count: 5,
            },
        ];
        let s = build(now_ms, &[w], &[], &minutes, &ttft, &Outside::default());
        let day = s.window("24h").unwrap();
        assert_eq!(day.points.len(), 96);
        assert_eq!(day.summary.minutes, 1_440);
        assert_eq!(day.summary.requests, 6);
        assert_eq!(day.summary.minutes_bad, 1);
        // 1,439 / 1,440 = 0.99930555… → 999,305 ppm.
        assert_eq!(day.summary.availability_ppm, 999_305);
        assert_eq!(day.summary.error_rate_ppm, Some(166_666));
        let last_point = day.points.last().unwrap();
        assert_eq!(last_point.requests, 4);
        assert_eq!(last_point.minutes_bad, 1);
        // 14 / 15 minutes good.
        assert_eq!(last_point.availability_ppm, 933_333);
        // 20 samples, rank 19: the 250 ms bucket.
        assert_eq!(last_point.p95_ttft_ms, Some(250));
        assert_eq!(day.points[94].requests, 2);
        assert_eq!(day.points[94].p95_ttft_ms, Some(2_000));
        assert_eq!(day.points[0].error_rate_ppm, None);
        assert_eq!(day.points[0].p95_ttft_ms, None);
        assert_eq!(day.points[0].availability_ppm, 1_000_000);
        // Whole window: 25 samples, rank 24 → 2,000 ms.
        assert_eq!(day.summary.p95_ttft_ms, Some(2_000));
        let week = s.window("7d").unwrap();
        assert_eq!(week.summary.requests, 7);
        assert_eq!(week.summary.minutes_bad, 2);
        assert_eq!(s.window("30d").unwrap().summary.minutes, 43_200);
    }

    #[test]
    fn scopes_come_from_the_fleet_and_refusals_count_for_models_only() {
        let w = |model: &str, region: &str, state| WorkerInfo {
            model: model.into(),
            region: region.into(),
            state,
        };
        let fleet = [
            w("a", "eu", WorkerState::Ready),
            w("a", "us", WorkerState::Ejected),
            w("b", "us", WorkerState::Draining),
        ];
        let recent = [
            ScopeCounts {
                model: "a".into(),
                region: "eu".into(),
                counts: counts(10, 0, 0),
            },
            ScopeCounts {
                model: "b".into(),
                region: String::new(),
                counts: counts(3, 3, 0),
            },
            // A model no longer in the fleet is not shown.
            ScopeCounts {
                model: "gone".into(),
                region: "eu".into(),
                counts: counts(1, 1, 0),
            },
        ];
        let s = build(0, &fleet, &recent, &[], &[], &Outside::default());
        let names = |v: &[ScopeStatus]| {
            v.iter()
                .map(|s| (s.name.clone(), s.status))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&s.models),
            [("a".into(), Health::Degraded), ("b".into(), Health::Down)]
        );
        assert_eq!(s.models[1].recent.requests, 3);
        assert_eq!(
            names(&s.regions),
            [("eu".into(), Health::Degraded), ("us".into(), Health::Down)]
        );
        assert_eq!(s.regions[0].recent.requests, 11);
        assert_eq!(s.status, Health::Down);
    }
}
