//! Whether Redis is answering, as the request path needs to know it without asking Redis: after
//! a failure, admissions skip Redis for `retry`, so a dead or half-open connection costs one
//! request its timeout, not every request. Transitions are logged once each way.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Health {
    up: AtomicBool,
    /// Milliseconds since `epoch` before which Redis is not tried on the request path.
    skip_until_ms: AtomicU64,
    epoch: Instant,
    retry: Duration,
}

impl Health {
    pub fn new(retry: Duration) -> Self {
        Self {
            up: AtomicBool::new(true),
            skip_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            retry,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the request path should try Redis now.
    pub fn should_try(&self) -> bool {
        self.now_ms() >= self.skip_until_ms.load(Ordering::Relaxed)
    }

    /// Whether the last call to Redis worked.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let retry = u64::try_from(self.retry.as_millis()).unwrap_or(u64::MAX);
        self.skip_until_ms
            .store(self.now_ms().saturating_add(retry), Ordering::Relaxed);
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::error!(target: "switchyard::limits", %error, "Redis is unreachable: limits now follow limits.on_redis_down until it answers again");
        }
    }

    pub fn succeeded(&self, replicas: u32) {
        self.skip_until_ms.store(0, Ordering::Relaxed);
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "switchyard::limits", replicas, "Redis answers again: limits are shared across replicas again");
        }
    }
}
