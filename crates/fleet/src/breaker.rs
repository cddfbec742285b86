//! A worker's place in rotation, and how it moves: the circuit breaker of one worker.
//!
//! ```text
//!  Starting ──health pass──▶ Ready ◀──probation passed── Probation
//!                             │  ▲                          ▲   │
//!          health fails ──────┘  └── health pass            │   │ one failure
//!                ▼                      │                   │   ▼
//!            Unhealthy ─────────────────┘     ejection over + health pass
//!                                                           │
//!  Ready ──failures in a row / TTFT outlier──▶ Ejected ─────┘
//! ```
//!
//! Ejection lasts `base × 2^(n-1)` (capped) for the n-th ejection in a row, so a worker that
//! keeps failing is tried less and less often. After it, the worker is on probation: it gets one
//! request at a time, and `probation_successes` successes put it back in full rotation while a
//! single failure ejects it again for longer. Probation always ends one way or the other within
//! a few requests, so the breaker cannot stick half-open. Draining is separate from health: a
//! draining worker finishes what it has and gets nothing new, whatever its health.
//!
//! Everything a request reads is atomic; the mutex holds only the human-readable reason, and is
//! taken on transitions and admin reads, never to route.
//!
//! One piece, over 500 lines with its tests (the code is about 450): the breaker's states and every
//! transition between them, in one place to check that none sticks.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Declared or registered, not yet seen healthy.
    Starting,
    Ready,
    /// Failing active health checks.
    Unhealthy,
    /// Taken out by live traffic (failures in a row, TTFT far above the pool's).
    Ejected,
    /// Back after an ejection, one request at a time until it proves itself.
    Probation,
    /// Finishing its requests, getting no new ones.
    Draining,
}

impl WorkerState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Ready,
            2 => Self::Unhealthy,
            3 => Self::Ejected,
            4 => Self::Probation,
            _ => Self::Starting,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Self::Starting | Self::Draining => 0,
            Self::Ready => 1,
            Self::Unhealthy => 2,
            Self::Ejected => 3,
            Self::Probation => 4,
        }
    }
}

/// Passive outlier detection: when live traffic takes a worker out, and how it comes back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// First ejection's length; doubles with each ejection in a row.
    pub base_ejection_ms: u64,
    pub max_ejection_ms: u64,
    /// Successes on probation before full rotation.
    pub probation_successes: u32,
    /// A worker whose TTFT EWMA exceeds the pool's median by this factor *and* by
    /// `ttft_min_excess_ms` is ejected as an outlier.
    pub ttft_factor: f64,
    pub ttft_min_excess_ms: u64,
    /// TTFT samples a worker needs before it can be judged an outlier.
    pub ttft_min_samples: u32,
    /// Outlier detection never takes out more than this share of a model's workers: when the
    /// whole pool is slow, the pool is the problem, and ejecting would turn slow into down.
    pub max_ejected_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            base_ejection_ms: 10_000,
            max_ejection_ms: 300_000,
            probation_successes: 3,
            ttft_factor: 3.0,
            ttft_min_excess_ms: 500,
            ttft_min_samples: 5,
            max_ejected_percent: 50,
        }
    }
}

impl OutlierConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.base_ejection_ms == 0 || self.max_ejection_ms < self.base_ejection_ms {
            return Err(
                "outlier.base_ejection_ms must be positive and at most outlier.max_ejection_ms"
                    .into(),
            );
        }
        if self.probation_successes == 0 {
            return Err("outlier.probation_successes must be at least 1".into());
        }
        if !(self.ttft_factor.is_finite() && self.ttft_factor >= 1.0) {
            return Err("outlier.ttft_factor must be a number of at least 1".into());
        }
        if self.max_ejected_percent > 100 {
            return Err("outlier.max_ejected_percent must be between 0 and 100".into());
        }
        Ok(())
    }

    fn ejection_length(&self, nth: u32) -> Duration {
        let factor = 1u64 << nth.saturating_sub(1).min(20);
        Duration::from_millis(
            self.base_ejection_ms
                .saturating_mul(factor)
                .min(self.max_ejection_ms),
        )
    }
}

/// Milliseconds on a monotonic clock local to this process (for deadlines kept in atomics).
pub(crate) fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    let real = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    #[cfg(test)]
    let real = real.saturating_add(test_clock::offset());
    real
}

/// Unit tests move the fleet's monotonic clock on instead of sleeping: an ejection is over
/// when the test says so, however busy the machine. Per thread, so tests cannot disturb one
/// another.
#[cfg(test)]
pub(crate) mod test_clock {
    use std::cell::Cell;

    thread_local! {
        static OFFSET_MS: Cell<u64> = const { Cell::new(0) };
    }

    pub(crate) fn advance(ms: u64) {
        OFFSET_MS.with(|o| o.set(o.get().saturating_add(ms)));
    }

    pub(crate) fn offset() -> u64 {
        OFFSET_MS.with(Cell::get)
    }
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[derive(Debug, Clone, Default)]
struct Note {
    reason: String,
    since_unix_ms: i64,
}

/// One worker's breaker and the live figures routing reads.
#[derive(Debug)]
pub(crate) struct Health {
    policy: OutlierConfig,
    state: AtomicU8,
    draining: AtomicBool,
    /// Ejections in a row without a clean probation in between.
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
    probation_passes: AtomicU32,
    consecutive_failures: AtomicU32,
    /// TTFT moving average, for routing.
    ttft: crate::ttft::Ewma,
    /// The same per prompt size class, for outlier detection.
    ttft_by_size: [crate::ttft::Ewma; crate::ttft::CLASSES],
    note: Mutex<Note>,
    last_probe: Mutex<Option<ProbeView>>,
    usage_rejected: Mutex<Option<UsageRejectionView>>,
}

/// What the admin API shows of a worker's breaker.
#[derive(Debug, Clone, Serialize)]
pub struct HealthView {
    pub state: WorkerState,
    pub reason: String,
    pub since_unix_ms: i64,
    pub ejections: u32,
    /// How long an ejection has left, if ejected.
    pub ejected_for_ms: Option<u64>,
    pub consecutive_failures: u32,
    pub ttft_ewma_ms: Option<f64>,
    pub ttft_samples: u32,
    /// The last synthetic probe (a known prompt sent by the gateway itself).
    pub last_probe: Option<ProbeView>,
    /// The last time this worker's usage report was refused (out of bounds or malformed).
    pub usage_rejected: Option<UsageRejectionView>,
}

/// A worker's usage reports that were refused: when last, what it claimed, how many in all.
#[derive(Debug, Clone, Serialize)]
pub struct UsageRejectionView {
    pub at_unix_ms: i64,
    pub claim: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeView {
    pub at_unix_ms: i64,
    pub passed: bool,
    pub ttft_ms: Option<f64>,
    pub ttlt_ms: Option<f64>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

impl Health {
    pub(crate) fn new(policy: OutlierConfig) -> Self {
        Self {
            policy,
            state: AtomicU8::new(WorkerState::Starting.as_u8()),
            draining: AtomicBool::new(false),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            probation_passes: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            ttft: Default::default(),
            ttft_by_size: Default::default(),
            last_probe: Mutex::new(None),
            usage_rejected: Mutex::new(None),
            note: Mutex::new(Note {
                reason: "waiting for the first health check".into(),
                since_unix_ms: unix_ms(),
            }),
        }
    }

    pub(crate) fn raw_state(&self) -> WorkerState {
        WorkerState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn state(&self) -> WorkerState {
        if self.draining.load(Ordering::Relaxed) {
            WorkerState::Draining
        } else {
            self.raw_state()
        }
    }

    /// Whether routing may send it a request, given what it already has.
    pub(crate) fn routable(&self, outstanding: u32) -> bool {
        if self.draining.load(Ordering::Relaxed) {
            return false;
        }
        match self.raw_state() {
            WorkerState::Ready => true,
            WorkerState::Probation => outstanding == 0,
            _ => false,
        }
    }

    /// Moves `from` → `to` if the state is still `from`; logs and notes why.
    fn transition(&self, name: &str, from: WorkerState, to: WorkerState, reason: &str) -> bool {
        let moved = self
            .state
            .compare_exchange(
                from.as_u8(),
                to.as_u8(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if moved {
            self.set_note(reason);
            match to {
                WorkerState::Ready => {
                    tracing::info!(worker = name, from = ?from, reason, "worker in rotation")
                }
                _ => {
                    tracing::warn!(worker = name, from = ?from, to = ?to, reason, "worker state changed")
                }
            }
        }
        moved
    }

    fn set_note(&self, reason: &str) {
        if let Ok(mut note) = self.note.lock() {
            note.reason = reason.to_string();
            note.since_unix_ms = unix_ms();
        }
    }

    /// An active health check passed (`healthy_after` in a row).
    pub(crate) fn health_passed(&self, name: &str) {
        match self.raw_state() {
            s @ (WorkerState::Starting | WorkerState::Unhealthy) => {
                self.consecutive_failures.store(0, Ordering::Relaxed);
                self.transition(name, s, WorkerState::Ready, "health check passed");
            }
            WorkerState::Ejected if mono_ms() >= self.ejected_until_ms.load(Ordering::Relaxed) => {
                self.probation_passes.store(0, Ordering::Relaxed);
                self.consecutive_failures.store(0, Ordering::Relaxed);
                self.transition(
                    name,
                    WorkerState::Ejected,
                    WorkerState::Probation,
                    "ejection over and health check passed: one request at a time",
                );
            }
            _ => {}
        }
    }

    /// Active health checks failed (`unhealthy_after` in a row). An ejected worker stays
    /// ejected: its backoff is the longer verdict.
    pub(crate) fn health_failed(&self, name: &str, why: &str) {
        for s in [
            WorkerState::Starting,
            WorkerState::Ready,
            WorkerState::Probation,
        ] {
            if self.transition(name, s, WorkerState::Unhealthy, why) {
                return;
            }
        }
        // Still unhealthy, maybe for another reason now (a timeout, then a certificate that
        // names another worker): the operator sees the latest, since stays when it began.
        if self.raw_state() == WorkerState::Unhealthy {
            if let Ok(mut note) = self.note.lock() {
                note.reason = why.to_string();
            }
        }
    }

    pub(crate) fn record_success(&self, name: &str) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if self.raw_state() == WorkerState::Probation {
            let passes = self.probation_passes.fetch_add(1, Ordering::Relaxed) + 1;
            if passes >= self.policy.probation_successes
                && self.transition(
                    name,
                    WorkerState::Probation,
                    WorkerState::Ready,
                    "probation passed",
                )
            {
                // A clean return: the next ejection starts the backoff from the beginning.
                self.ejections.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Live traffic saw the worker fail (never a client's 4xx). On probation one failure
    /// ejects; in rotation, `threshold` in a row do.
    pub(crate) fn record_failure(&self, name: &str, threshold: u32, why: &str) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        match self.raw_state() {
            WorkerState::Probation => {
                self.eject(
                    name,
                    WorkerState::Probation,
                    &format!("failed on probation: {why}"),
                );
            }
            WorkerState::Ready if failures >= threshold => {
                self.eject(
                    name,
                    WorkerState::Ready,
                    &format!("{failures} failures in a row, last: {why}"),
                );
            }
            _ => {}
        }
    }

    /// Ejects from `from` (a no-op if another thread moved it first). Returns whether it did.
    pub(crate) fn eject(&self, name: &str, from: WorkerState, why: &str) -> bool {
        let nth = self.ejections.load(Ordering::Relaxed) + 1;
        let length = self.policy.ejection_length(nth);
        // Set the deadline before the state, so that no reader sees Ejected with an old one.
        self.ejected_until_ms.store(
            mono_ms().saturating_add(u64::try_from(length.as_millis()).unwrap_or(u64::MAX)),
            Ordering::Relaxed,
        );
        let reason = format!("ejected for {} s: {why}", length.as_secs_f64());
        if self.transition(name, from, WorkerState::Ejected, &reason) {
            self.ejections.store(nth, Ordering::Relaxed);
            self.probation_passes.store(0, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// A first token after a prompt of about `prompt_tokens` tokens: for routing (one
    /// average) and for outlier detection (one average per prompt size).
    pub(crate) fn record_ttft(&self, ttft: Duration, prompt_tokens: u64) {
        self.ttft.record(ttft);
        if let Some(class) = self.ttft_by_size.get(crate::ttft::class_of(prompt_tokens)) {
            class.record(ttft);
        }
    }

    /// TTFT EWMA in µs; `None` before the first sample and once it is stale.
    pub(crate) fn ttft_ewma_us(&self) -> Option<u64> {
        self.ttft.get()
    }

    /// Samples in the current (not stale) EWMA.
    pub(crate) fn ttft_samples(&self) -> u32 {
        self.ttft.samples()
    }

    /// The EWMA of first tokens after prompts of `class`'s size, with its sample count.
    pub(crate) fn ttft_of_size(&self, class: usize) -> Option<(u64, u32)> {
        let e = self.ttft_by_size.get(class)?;
        Some((e.get()?, e.samples()))
    }

    pub(crate) fn set_probe(&self, probe: ProbeView) {
        if let Ok(mut last) = self.last_probe.lock() {
            *last = Some(probe);
        }
    }

    pub(crate) fn note_usage_rejected(&self, claim: &str) {
        if let Ok(mut last) = self.usage_rejected.lock() {
            let count = last.as_ref().map_or(0, |r| r.count) + 1;
            *last = Some(UsageRejectionView {
                at_unix_ms: unix_ms(),
                claim: claim.to_string(),
                count,
            });
        }
    }

    pub(crate) fn set_draining(&self, name: &str, draining: bool, why: &str) -> bool {
        let was = self.draining.swap(draining, Ordering::AcqRel);
        if was != draining {
            self.set_note(why);
            tracing::warn!(
                worker = name,
                draining,
                reason = why,
                "worker drain changed"
            );
        }
        was != draining
    }

    pub(crate) fn view(&self) -> HealthView {
        let note = self.note.lock().map(|n| n.clone()).unwrap_or_default();
        let state = self.state();
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        HealthView {
            state,
            reason: note.reason,
            since_unix_ms: note.since_unix_ms,
            ejections: self.ejections.load(Ordering::Relaxed),
            ejected_for_ms: (state == WorkerState::Ejected)
                .then(|| until.saturating_sub(mono_ms())),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            ttft_ewma_ms: self.ttft_ewma_us().map(|us| us as f64 / 1000.0),
            ttft_samples: self.ttft_samples(),
            last_probe: self.last_probe.lock().ok().and_then(|p| p.clone()),
            usage_rejected: self.usage_rejected.lock().ok().and_then(|r| r.clone()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy(base_ms: u64) -> OutlierConfig {
        OutlierConfig {
            base_ejection_ms: base_ms,
            max_ejection_ms: base_ms * 4,
            probation_successes: 2,
            ..OutlierConfig::default()
        }
    }

    #[test]
    fn ejection_lengths_double_and_cap() {
        let p = policy(100);
        let ms: Vec<u128> = (1..=5).map(|n| p.ejection_length(n).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 400, 400]);
    }

    #[test]
    fn failures_eject_and_probation_readmits_one_request_at_a_time() {
        let h = Health::new(policy(30));
        assert!(!h.routable(0), "starting workers get no traffic");
        h.health_passed("w");
        assert!(h.routable(5));
        h.record_failure("w", 2, "500");
        assert_eq!(h.state(), WorkerState::Ready);
        h.record_failure("w", 2, "500");
        assert_eq!(h.state(), WorkerState::Ejected);
        h.health_passed("w");
        assert_eq!(
            h.state(),
            WorkerState::Ejected,
            "not before the ejection is over"
        );
        test_clock::advance(40);
        h.health_passed("w");
        assert_eq!(h.state(), WorkerState::Probation);
        assert!(h.routable(0) && !h.routable(1), "one request at a time");
        h.record_success("w");
        assert_eq!(h.state(), WorkerState::Probation);
        h.record_success("w");
        assert_eq!(h.state(), WorkerState::Ready);
        assert_eq!(h.view().ejections, 0, "a clean return resets the backoff");
    }

    #[test]
    fn a_failure_on_probation_ejects_for_longer() {
        let h = Health::new(policy(30));
        h.health_passed("w");
        h.record_failure("w", 1, "timeout");
        test_clock::advance(40);
        h.health_passed("w");
        assert_eq!(h.state(), WorkerState::Probation);
        h.record_failure("w", 1, "timeout");
        let v = h.view();
        assert_eq!(v.state, WorkerState::Ejected);
        assert_eq!(v.ejections, 2);
        assert!(v.ejected_for_ms.unwrap() > 30, "second ejection is 60 ms");
        assert!(v.reason.contains("failed on probation"), "{}", v.reason);
    }

    #[test]
    fn draining_overrides_health_and_health_checks_do_not_undo_it() {
        let h = Health::new(policy(30));
        h.health_passed("w");
        assert!(h.set_draining("w", true, "provider drained by admin"));
        assert_eq!(h.state(), WorkerState::Draining);
        h.health_passed("w");
        assert!(!h.routable(0));
        h.set_draining("w", false, "undrained");
        assert!(h.routable(0));
    }

    #[test]
    fn health_failure_leaves_an_ejection_alone() {
        let h = Health::new(policy(30));
        h.health_passed("w");
        h.record_failure("w", 1, "stall");
        h.health_failed("w", "probe refused");
        assert_eq!(h.state(), WorkerState::Ejected);
    }

    #[test]
    fn ttft_is_averaged_overall_and_per_prompt_size() {
        let h = Health::new(policy(30));
        assert_eq!(h.ttft_ewma_us(), None);
        h.record_ttft(Duration::from_millis(100), 50);
        h.record_ttft(Duration::from_millis(600), 20_000);
        assert_eq!(h.ttft_ewma_us(), Some(200_000)); // (4 × 100 + 600) / 5
        assert_eq!(h.ttft_of_size(0), Some((100_000, 1)));
        assert_eq!(h.ttft_of_size(3), Some((600_000, 1)));
        assert_eq!(h.ttft_of_size(1), None);
    }
}
