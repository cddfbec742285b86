//! Rate limits with reserve-then-settle.
//!
//! Each subject (a tenant, a key) has a requests bucket and a tokens bucket (token buckets that
//! refill continuously: capacity = the per-minute limit, refill = limit / 60 s), a concurrency
//! count and a monthly token quota. Admission *reserves* the prompt estimate plus the maximum
//! completion; settlement charges what was really used and gives the rest back. A burst of
//! parallel streams therefore cannot overshoot a token limit: each one holds its worst case
//! until it ends.
//!
//! Why not `governor`: its GCRA cells cannot be given back, and settling a reservation is a
//! refund. The arithmetic here is small and pinned by property tests.

use std::time::{Duration, Instant};

use crate::model::Limits;

/// A continuously refilling bucket. Levels are `f64` tokens; a refill never exceeds capacity.
#[derive(Debug, Clone)]
pub struct Bucket {
    capacity: f64,
    level: f64,
    per_sec: f64,
    updated: Instant,
}

impl Bucket {
    pub fn new(per_minute: u64, now: Instant) -> Self {
        let capacity = per_minute as f64;
        Self {
            capacity,
            level: capacity,
            per_sec: capacity / 60.0,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + dt * self.per_sec).min(self.capacity);
        self.updated = now;
    }

    /// Time until `n` would fit, or `None` if it fits now. `n` above capacity never fits.
    pub fn wait_for(&mut self, n: f64, now: Instant) -> Option<Duration> {
        self.refill(now);
        if n <= self.level {
            return None;
        }
        if n > self.capacity || self.per_sec <= 0.0 {
            return Some(Duration::MAX);
        }
        Some(Duration::from_secs_f64((n - self.level) / self.per_sec))
    }

    pub fn take(&mut self, n: f64) {
        self.level -= n;
    }

    pub fn give_back(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.level = (self.level + n).min(self.capacity);
    }

    pub fn capacity(&self) -> f64 {
        self.capacity
    }

    pub fn remaining(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.level.max(0.0)
    }

    /// Time until the bucket is full again.
    pub fn reset_after(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.per_sec <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(((self.capacity - self.level) / self.per_sec).max(0.0))
    }

    /// New limits keep the current fill ratio.
    fn resize(&mut self, per_minute: u64, now: Instant) {
        self.refill(now);
        let ratio = if self.capacity > 0.0 {
            self.level / self.capacity
        } else {
            1.0
        };
        self.capacity = per_minute as f64;
        self.per_sec = self.capacity / 60.0;
        self.level = ratio * self.capacity;
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Denial {
    Requests {
        retry_after: Duration,
    },
    Tokens {
        retry_after: Duration,
    },
    /// The reservation is larger than the whole per-minute token limit: it can never fit.
    TooLarge {
        needed: u64,
        limit: u64,
    },
    Concurrency {
        limit: u32,
    },
    MonthlyQuota {
        limit: u64,
    },
}

/// One subject's limit state.
#[derive(Debug)]
pub struct LimitState {
    pub requests: Bucket,
    pub tokens: Bucket,
    concurrent: u32,
    max_concurrent: u32,
    /// Tokens settled this month and tokens reserved by requests in flight.
    month_used: u64,
    month_reserved: u64,
    monthly_quota: u64,
    month: u32,
}

/// Months since year 0, from unix ms (UTC), to notice a new month: `year * 12 + (month - 1)`.
/// Instants outside what `time` represents (years -9999..=9999) count as its first or last month.
pub fn month_index(unix_ms: i64) -> u32 {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(if unix_ms < 0 {
            time::PrimitiveDateTime::MIN.assume_utc()
        } else {
            time::PrimitiveDateTime::MAX.assume_utc()
        });
    let index = i64::from(t.year()) * 12 + i64::from(u8::from(t.month())) - 1;
    // Before year 0 there is no u32 index; those all share the first.
    u32::try_from(index).unwrap_or(0)
}

impl LimitState {
    pub fn new(limits: &Limits, month_used: u64, now: Instant, unix_ms: i64) -> Self {
        Self {
            requests: Bucket::new(u64::from(limits.requests_per_minute), now),
            tokens: Bucket::new(limits.tokens_per_minute, now),
            concurrent: 0,
            max_concurrent: limits.max_concurrent,
            month_used,
            month_reserved: 0,
            monthly_quota: limits.monthly_tokens,
            month: month_index(unix_ms),
        }
    }

    pub fn reconfigure(&mut self, limits: &Limits, now: Instant) {
        self.requests
            .resize(u64::from(limits.requests_per_minute), now);
        self.tokens.resize(limits.tokens_per_minute, now);
        self.max_concurrent = limits.max_concurrent;
        self.monthly_quota = limits.monthly_tokens;
    }

    fn roll_month(&mut self, unix_ms: i64) {
        let month = month_index(unix_ms);
        if month != self.month {
            self.month = month;
            self.month_used = 0;
        }
    }

    /// Checks without changing anything.
    pub fn check(&mut self, tokens: u64, now: Instant, unix_ms: i64) -> Result<(), Denial> {
        self.roll_month(unix_ms);
        if self.concurrent >= self.max_concurrent {
            return Err(Denial::Concurrency {
                limit: self.max_concurrent,
            });
        }
        if self.monthly_quota > 0
            && self.month_used + self.month_reserved + tokens > self.monthly_quota
        {
            return Err(Denial::MonthlyQuota {
                limit: self.monthly_quota,
            });
        }
        if let Some(retry_after) = self.requests.wait_for(1.0, now) {
            return Err(Denial::Requests { retry_after });
        }
        match self.tokens.wait_for(tokens as f64, now) {
            None => Ok(()),
            Some(d) if d == Duration::MAX => Err(Denial::TooLarge {
                needed: tokens,
                limit: self.tokens.capacity() as u64,
            }),
            Some(retry_after) => Err(Denial::Tokens { retry_after }),
        }
    }

    /// Takes the reservation; call only after `check` passed under the same lock.
    pub fn reserve(&mut self, tokens: u64) {
        self.requests.take(1.0);
        self.tokens.take(tokens as f64);
        self.concurrent += 1;
        self.month_reserved += tokens;
    }

    /// Ends a reservation of `reserved` tokens that used `used`. Unused tokens go back to the
    /// bucket; a request that used more than it reserved (a worker ignoring `max_tokens`) is
    /// charged the excess, so the bucket reflects real consumption.
    pub fn settle(&mut self, reserved: u64, used: u64, now: Instant, unix_ms: i64) {
        self.roll_month(unix_ms);
        self.concurrent = self.concurrent.saturating_sub(1);
        self.month_reserved = self.month_reserved.saturating_sub(reserved);
        self.month_used += used;
        if used <= reserved {
            self.tokens.give_back((reserved - used) as f64, now);
        } else {
            self.tokens.take((used - reserved) as f64);
        }
    }

    pub fn concurrent(&self) -> u32 {
        self.concurrent
    }

    pub fn month_used(&self) -> u64 {
        self.month_used
    }

    /// Tokens used in `month` as far as this state knows (0 if it last counted another month).
    pub fn month_used_in(&self, month: u32) -> u64 {
        if self.month == month {
            self.month_used
        } else {
            0
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(rpm: u32, tpm: u64, conc: u32, monthly: u64) -> Limits {
        Limits {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            max_concurrent: conc,
            monthly_tokens: monthly,
            ..Limits::default()
        }
    }

    const T0: i64 = 1_795_000_000_000;

    #[test]
    fn month_index_rolls_at_utc_month_start() {
        // 2026-11-30T23:59:59Z and 2026-12-01T00:00:00Z.
        assert_eq!(
            month_index(1_796_083_199_000) + 1,
            month_index(1_796_083_200_000)
        );
        assert_eq!(month_index(0), 1970 * 12);
        // Out of range: clamped, not a panic.
        assert_eq!(month_index(i64::MAX), 9999 * 12 + 11);
        assert_eq!(month_index(i64::MIN), 0);
    }

    #[test]
    fn a_parallel_burst_cannot_overshoot_the_token_limit() {
        let now = Instant::now();
        let mut s = LimitState::new(&limits(1000, 1000, 100, 0), 0, now, T0);
        let mut admitted = 0;
        for _ in 0..50 {
            if s.check(300, now, T0).is_ok() {
                s.reserve(300);
                admitted += 1;
            }
        }
        assert_eq!(admitted, 3, "3 × 300 fit in 1000, the fourth does not");
        match s.check(300, now, T0) {
            Err(Denial::Tokens { retry_after }) => {
                // 200 missing at 1000/60 per second: 12 s.
                assert!(
                    (retry_after.as_secs_f64() - 12.0).abs() < 0.01,
                    "{retry_after:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Settling with 100 used gives 200 back at once.
        s.settle(300, 100, now, T0);
        assert!(s.check(300, now, T0).is_ok());
    }

    #[test]
    fn concurrency_and_monthly_quota() {
        let now = Instant::now();
        let mut s = LimitState::new(&limits(1000, 100_000, 2, 1_000), 900, now, T0);
        assert!(matches!(
            s.check(200, now, T0),
            Err(Denial::MonthlyQuota { limit: 1000 })
        ));
        s.check(50, now, T0).unwrap();
        s.reserve(50);
        s.check(50, now, T0).unwrap();
        s.reserve(50);
        assert!(matches!(
            s.check(1, now, T0),
            Err(Denial::Concurrency { limit: 2 })
        ));
        s.settle(50, 10, now, T0);
        s.settle(50, 10, now, T0);
        assert_eq!(s.month_used(), 920);
        // A new month starts from zero.
        let next_month = T0 + 40 * 86_400_000;
        s.check(1_000, now, next_month).unwrap();
    }

    #[test]
    fn a_reservation_above_the_whole_limit_is_too_large_not_retryable() {
        let now = Instant::now();
        let mut s = LimitState::new(&limits(10, 100, 10, 0), 0, now, T0);
        assert_eq!(
            s.check(101, now, T0),
            Err(Denial::TooLarge {
                needed: 101,
                limit: 100
            })
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Admit { tokens: u64 },
        SettleOldest { used_permille: u16 },
        Wait { ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..500).prop_map(|tokens| Op::Admit { tokens }),
            (0u16..=1200).prop_map(|used_permille| Op::SettleOldest { used_permille }),
            (0u64..5_000).prop_map(|ms| Op::Wait { ms }),
        ]
    }

    proptest! {
        /// Over any run, tokens charged (reserved, then corrected at settle to what was used)
        /// never exceed the capacity plus what refilled in the elapsed time, plus the excess of
        /// requests that used more than they reserved (which we charge but cannot prevent).
        #[test]
        fn consumption_never_exceeds_capacity_plus_refill(
            tpm in 100u64..10_000,
            ops in prop::collection::vec(op(), 1..200),
        ) {
            let start = Instant::now();
            let mut now = start;
            let mut s = LimitState::new(&limits(100_000, tpm, 1_000, 0), 0, now, T0);
            let mut open: std::collections::VecDeque<u64> = Default::default();
            let mut charged = 0f64;
            let mut unavoidable_excess = 0f64;
            for op in ops {
                match op {
                    Op::Admit { tokens } => {
                        if s.check(tokens, now, T0).is_ok() {
                            s.reserve(tokens);
                            open.push_back(tokens);
                            charged += tokens as f64;
                        }
                    }
                    Op::SettleOldest { used_permille } => {
                        if let Some(reserved) = open.pop_front() {
                            let used = reserved * u64::from(used_permille) / 1000;
                            s.settle(reserved, used, now, T0);
                            charged -= reserved as f64;
                            charged += used as f64;
                            if used > reserved {
                                unavoidable_excess += (used - reserved) as f64;
                            }
                        }
                    }
                    Op::Wait { ms } => now += Duration::from_millis(ms),
                }
                let refilled = now.duration_since(start).as_secs_f64() * tpm as f64 / 60.0;
                prop_assert!(charged <= tpm as f64 + refilled + unavoidable_excess + 1e-6,
                    "charged {charged} > capacity {tpm} + refilled {refilled} + excess {unavoidable_excess}");
                let remaining = s.tokens.remaining(now);
                prop_assert!(remaining <= tpm as f64 + 1e-6);
                prop_assert_eq!(s.concurrent() as usize, open.len());
            }
        }

        #[test]
        fn settling_everything_unused_restores_the_bucket(
            tpm in 100u64..10_000,
            reservations in prop::collection::vec(1u64..200, 1..50),
        ) {
            let now = Instant::now();
            let mut s = LimitState::new(&limits(100_000, tpm, 1_000, 0), 0, now, T0);
            let mut taken = Vec::new();
            for r in reservations {
                if s.check(r, now, T0).is_ok() {
                    s.reserve(r);
                    taken.push(r);
                }
            }
            for r in taken {
                s.settle(r, 0, now, T0);
            }
            prop_assert!((s.tokens.remaining(now) - tpm as f64).abs() < 1e-6);
            prop_assert_eq!(s.concurrent(), 0);
        }
    }
}
