//! Service-level indicators per minute: what the SLA report is computed from.
//!
//! Every finished request (a [`UsageRecord`]) and every request the gateway refused before any
//! worker (a [`Refusal`]) folds into the counts of the minute it *arrived* in (UTC unix
//! minutes), per tenant, model, region and provider. The store keeps those per-minute rollups
//! next to the usage rows, so a month can be reconstructed after restarts without rereading
//! millions of rows. Latencies go into fixed histogram buckets: a p95 from them is the upper
//! bound of the bucket holding the 95th percentile, never below the true value, and every SLO
//! threshold (1.2 s, 1.5 s, 2.5 s, 5 s, 8 s) is a bucket edge so compliance is exact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{UsageRecord, UsageStatus};

pub const MS_PER_MINUTE: i64 = 60_000;

/// The addendum's "successful response": first token in under 5 s.
pub const TTFT_SLOW_MS: u64 = 5_000;

/// The addendum measures TTLT "@ 256 tokens".
pub const TTLT_TOKENS: u64 = 256;

/// Inclusive upper bounds of the latency buckets, in ms; above the last is [`OVERFLOW_LE_MS`].
/// From 5 ms, like the Prometheus histograms, so that a fast model's p95 is not read as 50 ms.
pub const LATENCY_BOUNDS_MS: [i64; 24] = [
    5, 10, 25, 50, 100, 250, 500, 750, 1_000, 1_200, 1_500, 2_000, 2_500, 3_000, 4_000, 5_000,
    6_000, 8_000, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000,
];

/// The overflow bucket's bound.
pub const OVERFLOW_LE_MS: i64 = i64::MAX;

/// The bucket (its inclusive upper bound) a latency falls in.
pub fn bucket_le(ms: u64) -> i64 {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    LATENCY_BOUNDS_MS
        .iter()
        .copied()
        .find(|&le| ms <= le)
        .unwrap_or(OVERFLOW_LE_MS)
}

/// Unix minute of a unix-ms instant (floor, also before 1970).
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MS_PER_MINUTE)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Time to first token.
    Ttft,
    /// Time to last token of a completed request.
    Ttlt,
    /// TTLT of a completed stream scaled to 256 completion tokens:
    /// `ttft + (total - ttft) * 256 / completion_tokens`. Unstreamed answers have no separate
    /// first token, so their decode time is unknown and they are left out.
    Ttlt256,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::Ttft, Metric::Ttlt, Metric::Ttlt256];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Ttft => "ttft",
            Metric::Ttlt => "ttlt",
            Metric::Ttlt256 => "ttlt_256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A request the gateway answered itself, before any worker (so without a usage row): 503 no
/// healthy worker, 429 from our own limiter, and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub request_id: String,
    /// Unix ms when the request arrived.
    pub at_ms: i64,
    pub tenant_id: String,
    pub model: String,
    pub http_status: u16,
    /// Refused for the fleet's lack of capacity (shed), not for want of a worker at all.
    #[serde(default)]
    pub throttled: bool,
}

/// What one black-box prober saw of the public endpoint in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeMinute {
    pub minute: i64,
    pub prober: String,
    pub region: String,
    pub probes: u64,
    /// Probes that failed: a 5xx, no answer, a broken stream, or a token over its limit.
    pub failed: u64,
}

/// A request's place in the availability SLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Bad,
    /// Over the tenant's own limits (429): out of numerator and denominator alike.
    Excluded,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Good => "good",
            Verdict::Bad => "bad",
            Verdict::Excluded => "excluded",
        }
    }
}

/// Counts of one minute (or of any sum of minutes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliCounts {
    pub requests: u64,
    /// Completed requests.
    pub ok: u64,
    /// HTTP 5xx, plus streams that failed after their 200 (the client saw an error).
    pub errors_5xx: u64,
    pub errors_429: u64,
    /// First token 5 s or more after arrival.
    pub ttft_slow: u64,
    /// Requests that count against availability: a 5xx or a slow first token, once each
    /// (see [`SliCounts::of_record`]). Never a 429.
    #[serde(default)]
    pub bad: u64,
    /// Requests shed for the fleet's lack of capacity (the addendum's throttling, as opposed
    /// to the tenant's own limits).
    #[serde(default)]
    pub throttled: u64,
}

impl SliCounts {
    pub fn add(&mut self, o: &SliCounts) {
        self.requests += o.requests;
        self.ok += o.ok;
        self.errors_5xx += o.errors_5xx;
        self.errors_429 += o.errors_429;
        self.ttft_slow += o.ttft_slow;
        self.bad += o.bad;
        self.throttled += o.throttled;
    }

    /// The addendum's bad minute: a 5xx, or a first token that took 5 s or more. 429s and
    /// other 4xx are the customer's (misuse beyond quota is excluded), not downtime.
    pub fn is_bad(&self) -> bool {
        self.bad > 0
    }

    /// Requests the availability SLI is taken over: all but the tenant's own-limit 429s.
    pub fn eligible(&self) -> u64 {
        self.requests.saturating_sub(self.errors_429)
    }

    /// One request's verdict, the SLI's single definition (the ledger's rollups, the
    /// gateway's burn alerts, its Prometheus series and the status page all count this).
    pub fn verdict(&self) -> Verdict {
        if self.errors_429 > 0 {
            Verdict::Excluded
        } else if self.bad > 0 {
            Verdict::Bad
        } else {
            Verdict::Good
        }
    }

    pub fn of_record(r: &UsageRecord) -> Self {
        Self::classified(Self {
            requests: 1,
            ok: u64::from(r.status == UsageStatus::Completed),
            // A stream cut after its 200, or a request whose gateway died under it: the client
            // saw an error either way.
            errors_5xx: u64::from(
                r.http_status >= 500
                    || matches!(
                        r.status,
                        UsageStatus::FailedMidStream | UsageStatus::Interrupted
                    ),
            ),
            errors_429: u64::from(r.http_status == 429),
            ttft_slow: u64::from(!r.ttft_exempt && r.ttft_ms.is_some_and(|t| t >= TTFT_SLOW_MS)),
            bad: 0,
            throttled: 0,
        })
    }

    pub fn of_refusal(r: &Refusal) -> Self {
        Self::classified(Self {
            requests: 1,
            ok: 0,
            errors_5xx: u64::from(r.http_status >= 500),
            errors_429: u64::from(r.http_status == 429),
            ttft_slow: 0,
            bad: 0,
            throttled: u64::from(r.throttled),
        })
    }

    /// Why one request got its verdict: `tenant_limit` (excluded), `shed`, `5xx`,
    /// `slow_first_token` (bad, in that order when several hold), or `none` (good). With the
    /// verdict, it is enough to count every objective from (availability, 5xx, throttling).
    pub fn cause(&self) -> &'static str {
        if self.errors_429 > 0 {
            "tenant_limit"
        } else if self.throttled > 0 {
            "shed"
        } else if self.errors_5xx > 0 {
            "5xx"
        } else if self.ttft_slow > 0 {
            "slow_first_token"
        } else {
            "none"
        }
    }

    /// One request's `bad`: a 5xx or a slow first token, counted once; never a 429.
    fn classified(mut one: Self) -> Self {
        one.bad = u64::from(one.errors_429 == 0 && (one.errors_5xx > 0 || one.ttft_slow > 0));
        one
    }
}

/// Where a minute's counts belong. The tier is added by the store (the tenant's tier when the
/// rollup is written), so the request path does not carry it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SliKey {
    pub minute: i64,
    pub tenant_id: String,
    pub model: String,
    pub region: String,
    pub provider: String,
}

/// What a batch adds to one key's minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliDelta {
    pub counts: SliCounts,
    /// (metric, bucket bound) → count.
    pub latency: BTreeMap<(Metric, i64), u64>,
}

/// One tenant's counts in one minute, summed over models, regions and providers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCounts {
    pub tenant_id: String,
    pub minute: i64,
    pub counts: SliCounts,
}

/// One tenant's latency bucket in one hour (unix hours), summed over the hour's minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyCount {
    pub tenant_id: String,
    pub hour: i64,
    pub metric: Metric,
    pub le_ms: i64,
    pub count: u64,
}

/// Counts of one minute over the whole fleet (every tenant, model, region and provider summed):
/// what the public status page charts, with no tenant in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetMinute {
    pub minute: i64,
    pub counts: SliCounts,
}

/// Counts of one model in one region over a span of minutes, every tenant summed. Requests
/// refused before any worker have region `""`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeCounts {
    pub model: String,
    pub region: String,
    pub counts: SliCounts,
}

/// One latency bucket of the whole fleet in one chart bucket: `bucket` counts `bucket_minutes`
/// from the query's first minute (0 is the first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketLatency {
    pub bucket: i64,
    pub le_ms: i64,
    pub count: u64,
}

/// Sums records and refusals per key: one upsert per key and bucket instead of per request.
pub fn fold<'a>(
    records: impl IntoIterator<Item = &'a UsageRecord>,
    refusals: impl IntoIterator<Item = &'a Refusal>,
) -> BTreeMap<SliKey, SliDelta> {
    let mut out: BTreeMap<SliKey, SliDelta> = BTreeMap::new();
    for r in records {
        let key = SliKey {
            minute: minute_of(r.started_at_ms),
            tenant_id: r.tenant_id.clone(),
            model: r.model.clone(),
            region: r.region.clone(),
            provider: r.provider.clone(),
        };
        let d = out.entry(key).or_default();
        d.counts.add(&SliCounts::of_record(r));
        for (metric, ms) in latencies(r) {
            *d.latency.entry((metric, bucket_le(ms))).or_default() += 1;
        }
    }
    for r in refusals {
        let key = SliKey {
            minute: minute_of(r.at_ms),
            tenant_id: r.tenant_id.clone(),
            model: r.model.clone(),
            region: String::new(),
            provider: String::new(),
        };
        out.entry(key)
            .or_default()
            .counts
            .add(&SliCounts::of_refusal(r));
    }
    out
}

/// The latencies a record contributes, per metric.
fn latencies(r: &UsageRecord) -> Vec<(Metric, u64)> {
    let mut out = Vec::with_capacity(3);
    // A prompt over the tier's cap is outside the TTFT objectives: no TTFT figures.
    let ttft_ms = r.ttft_ms.filter(|_| !r.ttft_exempt);
    if let Some(ttft) = ttft_ms {
        out.push((Metric::Ttft, ttft));
    }
    if r.status == UsageStatus::Completed {
        out.push((Metric::Ttlt, r.total_ms));
        // Streamed to the client or not, the answer came as a stream with a first token.
        if let (Some(ttft), ct @ 1..) = (ttft_ms, r.completion_tokens) {
            let decode = u128::from(r.total_ms.saturating_sub(ttft));
            let scaled = decode * u128::from(TTLT_TOKENS) / u128::from(ct);
            let at_256 = u128::from(ttft) + scaled;
            out.push((Metric::Ttlt256, u64::try_from(at_256).unwrap_or(u64::MAX)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, at_ms: i64, status: UsageStatus, http: u16) -> UsageRecord {
        UsageRecord {
            request_id: id.into(),
            started_at_ms: at_ms,
            tenant_id: "acme".into(),
            key_id: "k".into(),
            model: "m".into(),
            endpoint: "/v1/chat/completions".into(),
            stream: true,
            worker: "w".into(),
            provider: "p".into(),
            region: "eu".into(),
            prompt_tokens: 10,
            completion_tokens: 128,
            usage_estimated: false,
            usage_source: Default::default(),
            usage_note: None,
            ttft_ms: Some(400),
            ttft_exempt: false,
            total_ms: 2_400,
            status,
            http_status: http,
            finish_reason: None,
            cost: 0,
            cogs: 0,
        }
    }

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket_le(0), 5);
        assert_eq!(bucket_le(28), 50);
        assert_eq!(bucket_le(1_500), 1_500);
        assert_eq!(bucket_le(1_501), 2_000);
        assert_eq!(bucket_le(5_000), 5_000);
        assert_eq!(bucket_le(120_001), OVERFLOW_LE_MS);
        assert!(LATENCY_BOUNDS_MS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn minutes_floor_also_before_the_epoch() {
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 1);
        assert_eq!(minute_of(-1), -1);
    }

    #[test]
    fn records_fold_into_their_arrival_minute() {
        let ok = record("a", 60_000, UsageStatus::Completed, 200);
        let mut slow = record("b", 119_999, UsageStatus::Completed, 200);
        slow.ttft_ms = Some(5_000); // exactly 5 s is not "< 5 s": slow
        slow.total_ms = 7_000;
        let failed = record("c", 120_000, UsageStatus::Failed, 502);
        let mid = record("d", 120_001, UsageStatus::FailedMidStream, 200);
        let refused = Refusal {
            request_id: "e".into(),
            at_ms: 120_500,
            tenant_id: "acme".into(),
            model: "m".into(),
            http_status: 503,
            throttled: false,
        };
        let limited = Refusal {
            http_status: 429,
            request_id: "f".into(),
            ..refused.clone()
        };
        let out = fold([&ok, &slow, &failed, &mid], [&refused, &limited]);
        let worker_key = |minute| SliKey {
            minute,
            tenant_id: "acme".into(),
            model: "m".into(),
            region: "eu".into(),
            provider: "p".into(),
        };
        let m1 = &out[&worker_key(1)];
        assert_eq!(
            m1.counts,
            SliCounts {
                requests: 2,
                ok: 2,
                errors_5xx: 0,
                errors_429: 0,
                ttft_slow: 1,
                bad: 1,
                throttled: 0,
            }
        );
        // TTLT at 256 tokens: 400 + (2400 - 400) * 256 / 128 = 4400 → bucket 5000.
        assert_eq!(m1.latency[&(Metric::Ttlt256, 5_000)], 1);
        assert_eq!(m1.latency[&(Metric::Ttlt, 2_500)], 1);
        // The slow one: 5000 + 2000 * 256 / 128 = 9000 → bucket 10000; its TTLT 7000 → 8000.
        assert_eq!(m1.latency[&(Metric::Ttlt256, 10_000)], 1);
        assert_eq!(m1.latency[&(Metric::Ttlt, 8_000)], 1);
        let m2 = &out[&worker_key(2)];
        assert_eq!(m2.counts.errors_5xx, 2);
        assert_eq!(m2.counts.bad, 2);
        assert_eq!(m2.counts.ok, 0);
        let gateway_key = SliKey {
            region: String::new(),
            provider: String::new(),
            ..worker_key(2)
        };
        assert_eq!(
            out[&gateway_key].counts,
            SliCounts {
                requests: 2,
                ok: 0,
                errors_5xx: 1,
                errors_429: 1,
                ttft_slow: 0,
                bad: 1,
                throttled: 0,
            }
        );
        assert!(out[&gateway_key].counts.is_bad());
    }
}
