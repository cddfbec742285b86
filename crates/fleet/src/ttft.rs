//! A worker's time-to-first-token figures: one moving average for routing, and one per prompt
//! size for outlier detection. A first token after a 30,000-token prompt is slow on any worker;
//! compared with short prompts' it would make the worker that happened to serve one tenant's
//! long prompts look broken. Outlier detection therefore compares a worker with its pool within
//! a size class only: long prompts with long prompts.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::breaker::mono_ms;

/// A TTFT EWMA older than this is forgotten. Routing prefers the fastest worker, so a worker
/// measured slow once (a cold start, a noisy neighbour) would otherwise never be sent a request
/// again to show it has recovered; forgotten, it counts as unmeasured and gets measured anew.
const STALE_MS: u64 = 10_000;

/// Upper bounds (exclusive) of the prompt size classes, in estimated tokens; the last class
/// holds everything above.
const CLASS_BOUNDS: [u64; 3] = [1_024, 4_096, 16_384];
pub const CLASSES: usize = CLASS_BOUNDS.len() + 1;

/// "under 1024 tokens", "1024 to 4096 tokens", ...: a class as a reason names it.
pub fn class_label(class: usize) -> String {
    match (
        class.checked_sub(1).and_then(|i| CLASS_BOUNDS.get(i)),
        CLASS_BOUNDS.get(class),
    ) {
        (None, Some(hi)) => format!("under {hi} tokens"),
        (Some(lo), Some(hi)) => format!("{lo} to {hi} tokens"),
        (Some(lo), None) => format!("{lo} tokens or more"),
        (None, None) => "any size".into(),
    }
}

/// The size class of a prompt of `tokens` (estimated) tokens.
pub fn class_of(tokens: u64) -> usize {
    CLASS_BOUNDS
        .iter()
        .position(|bound| tokens < *bound)
        .unwrap_or(CLASS_BOUNDS.len())
}

/// An exponentially weighted moving average of TTFT samples, in µs.
#[derive(Debug, Default)]
pub struct Ewma {
    us: AtomicU64,
    samples: AtomicU32,
    /// When the last sample came (monotonic ms).
    at_ms: AtomicU64,
}

impl Ewma {
    /// Weight 1/5 for the new sample: a slow worker shows within a few requests, one slow
    /// request does not condemn a fast one.
    pub fn record(&self, ttft: Duration) {
        let sample = u64::try_from(ttft.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.get().unwrap_or(0);
        let new = if old == 0 {
            sample
        } else {
            (old.saturating_mul(4).saturating_add(sample)) / 5
        };
        if old == 0 {
            self.samples.store(0, Ordering::Relaxed);
        }
        self.us.store(new, Ordering::Relaxed);
        self.samples.fetch_add(1, Ordering::Relaxed);
        self.at_ms.store(mono_ms(), Ordering::Relaxed);
    }

    /// The average in µs; `None` before the first sample and once it is stale.
    pub fn get(&self) -> Option<u64> {
        let v = self.us.load(Ordering::Relaxed);
        let fresh = mono_ms().saturating_sub(self.at_ms.load(Ordering::Relaxed)) < STALE_MS;
        (v > 0 && fresh).then_some(v)
    }

    /// Samples in the current (not stale) average.
    pub fn samples(&self) -> u32 {
        if self.get().is_some() {
            self.samples.load(Ordering::Relaxed)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_fall_in_size_classes() {
        assert_eq!(class_of(0), 0);
        assert_eq!(class_of(1_023), 0);
        assert_eq!(class_of(1_024), 1);
        assert_eq!(class_of(16_383), 2);
        assert_eq!(class_of(u64::MAX), 3);
    }

    #[test]
    fn the_average_weighs_a_new_sample_a_fifth() {
        let e = Ewma::default();
        assert_eq!(e.get(), None);
        e.record(Duration::from_millis(100));
        assert_eq!(e.get(), Some(100_000));
        e.record(Duration::from_millis(600));
        assert_eq!(e.get(), Some(200_000)); // (4 × 100 + 600) / 5
        assert_eq!(e.samples(), 2);
    }
}
