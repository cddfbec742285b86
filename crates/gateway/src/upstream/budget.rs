//! The retry budget: retries and hedges may add at most `ratio` of the requests' own volume,
//! plus a small floor per second, so that when the fleet is failing, retries cannot multiply
//! the load on what is left of it (the "retry storm" that turns a partial outage into a total
//! one). The same shape as Finagle's and gRPC's retry budgets.
//!
//! Lock-free: a balance in thousandths of a retry, credited by each request and by the clock,
//! debited by each retry, and capped so that a quiet hour cannot save up a storm.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

const MILLI: i64 = 1000;

#[derive(Debug)]
pub struct RetryBudget {
    /// Credit per request, in thousandths of a retry.
    per_request: i64,
    /// Credit per second of wall time, in thousandths.
    per_second: i64,
    cap: i64,
    balance: AtomicI64,
    /// Milliseconds since `epoch()` when the clock credit was last added.
    refilled_ms: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl RetryBudget {
    /// `ratio`: retries per request (0.2 = one retry per five requests); `min_per_second`:
    /// retries always allowed however little traffic there is (a lone request may still be
    /// retried).
    pub fn new(ratio: f64, min_per_second: u32) -> Self {
        let per_request = (ratio * MILLI as f64).round() as i64;
        let per_second = i64::from(min_per_second) * MILLI;
        // Ten seconds' worth of floor, or 100 retries, whichever is more.
        let cap = (per_second * 10).max(100 * MILLI);
        Self {
            per_request,
            per_second,
            cap,
            balance: AtomicI64::new(cap.min(per_second.max(MILLI))),
            refilled_ms: AtomicU64::new(now_ms()),
        }
    }

    /// A request arrived: it earns the budget its share.
    pub fn deposit(&self) {
        self.credit(self.per_request);
    }

    /// Takes one retry from the budget, if there is one.
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(now_ms())
    }

    /// [`RetryBudget::try_withdraw`] at `now` (milliseconds of the budget's clock).
    fn try_withdraw_at(&self, now: u64) -> bool {
        self.refill(now);
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b >= MILLI).then_some(b - MILLI)
            })
            .is_ok()
    }

    /// Whole retries available now (for metrics and tests).
    pub fn available(&self) -> i64 {
        self.available_at(now_ms())
    }

    fn available_at(&self, now: u64) -> i64 {
        self.refill(now);
        self.balance.load(Ordering::Acquire) / MILLI
    }

    fn refill(&self, now: u64) {
        let last = self.refilled_ms.load(Ordering::Acquire);
        if now <= last {
            return;
        }
        // Whoever moves the timestamp adds the elapsed time's credit; the others add nothing.
        if self
            .refilled_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let elapsed = i64::try_from(now - last).unwrap_or(i64::MAX);
            self.credit(self.per_second.saturating_mul(elapsed) / 1000);
        }
    }

    fn credit(&self, amount: i64) {
        if amount <= 0 {
            return;
        }
        let cap = self.cap;
        let _ = self
            .balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_add(amount).min(cap))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_by_the_ratio_of_requests() {
        // No clock floor: only requests earn retries.
        let budget = RetryBudget::new(0.2, 0);
        // The starting balance is one retry, so that a lone first failure is retried.
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw(), "nothing left");
        for _ in 0..100 {
            budget.deposit();
        }
        let granted = (0..100).filter(|_| budget.try_withdraw()).count();
        assert_eq!(granted, 20, "100 requests at 20% earn 20 retries");
    }

    #[test]
    fn the_floor_refills_with_time_and_the_balance_is_capped() {
        let budget = RetryBudget::new(0.0, 100);
        let t0 = budget.refilled_ms.load(Ordering::Acquire);
        while budget.try_withdraw_at(t0) {}
        assert_eq!(budget.available_at(t0), 0);
        // 100 per second for 60 ms of the budget's clock: 6 retries back.
        assert_eq!(budget.available_at(t0 + 60), 6);
        let capped = RetryBudget::new(1.0, 0);
        for _ in 0..10_000 {
            capped.deposit();
        }
        assert_eq!(
            capped.available(),
            100,
            "a quiet period cannot save up a storm"
        );
    }
}
