//! Canary splits: a configured share of a model's requests goes to its canary pool (workers
//! with `pool = "canary"`, e.g. a quantized build) for an A/B comparison; the arm each request
//! took is in its `request settled` log line and in the TTFT/TTLT histograms' `arm` label.
//!
//! In `shadow` mode the share is copied instead: the client is served by the main pool as
//! usual, and a copy of its request goes to the canary, whose answer is measured (arm
//! `shadow`) and thrown away — a new build is compared on real traffic with no risk to it.
//!
//! The split is a deterministic weighted rotation, not a coin flip: over any 100 requests a
//! 10% canary gets 10, so a small test or a quiet hour still sees the configured share.

use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_config::{CanaryMode, CanarySplit};
use switchyard_fleet::Pool;

#[derive(Debug)]
pub struct Canaries {
    splits: Vec<(CanarySplit, AtomicU64)>,
}

/// Resolution of the weight: parts per 10,000.
const SCALE: u64 = 10_000;

impl Canaries {
    pub fn new(splits: &[CanarySplit]) -> Self {
        Self {
            splits: splits
                .iter()
                .map(|s| (s.clone(), AtomicU64::new(0)))
                .collect(),
        }
    }

    /// The pool this request of `model` should use.
    pub fn arm(&self, model: &str) -> Pool {
        match self.turn(model, CanaryMode::Split) {
            true => Pool::Canary,
            false => Pool::Main,
        }
    }

    /// Whether a copy of this request of `model` should go to its canary (shadow mode).
    pub fn shadow(&self, model: &str) -> bool {
        self.turn(model, CanaryMode::Shadow)
    }

    fn turn(&self, model: &str, mode: CanaryMode) -> bool {
        let Some((split, counter)) = self
            .splits
            .iter()
            .find(|(s, _)| s.model == model && s.mode == mode)
        else {
            return false;
        };
        let share = (split.weight.clamp(0.0, 1.0) * SCALE as f64).round() as u64;
        let n = counter.fetch_add(1, Ordering::Relaxed) % SCALE;
        // Request n is a canary when the canary count up to n+1 exceeds the count up to n:
        // spreads the canary requests evenly through the rotation.
        (n + 1) * share / SCALE > n * share / SCALE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_exact_and_spread_out() {
        let c = Canaries::new(&[CanarySplit {
            model: "m".into(),
            weight: 0.1,
            mode: CanaryMode::Split,
        }]);
        let arms: Vec<Pool> = (0..100).map(|_| c.arm("m")).collect();
        assert_eq!(arms.iter().filter(|a| **a == Pool::Canary).count(), 10);
        // Never two canaries in a row at 10%.
        assert!(arms
            .windows(2)
            .all(|w| !(w[0] == Pool::Canary && w[1] == Pool::Canary)));
        assert_eq!(c.arm("other"), Pool::Main);
        let all = Canaries::new(&[CanarySplit {
            model: "m".into(),
            weight: 1.0,
            mode: CanaryMode::Split,
        }]);
        assert!((0..50).all(|_| all.arm("m") == Pool::Canary));
        assert!(!all.shadow("m"));
        let shadow = Canaries::new(&[CanarySplit {
            model: "m".into(),
            weight: 0.5,
            mode: CanaryMode::Shadow,
        }]);
        assert_eq!(
            shadow.arm("m"),
            Pool::Main,
            "shadowed requests are served by main"
        );
        assert_eq!((0..10).filter(|_| shadow.shadow("m")).count(), 5);
    }
}
