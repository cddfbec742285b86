//! Fault injection: turns the current [`FaultConfig`] and one roll of the worker's seeded
//! RNG into a per-request plan, decided once at arrival so a request never changes its
//! fate half-way (and a fixed seed replays the same chaos run).

use crate::config::FaultConfig;
use rand::Rng;

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Normal,
    /// 503 at once.
    Refuse,
    /// Never answer.
    Hang,
    /// 500 after prefill.
    Error500,
    /// Abort the connection after this many decode steps.
    Cut(u32),
    /// Stop sending after this many decode steps, connection kept open.
    Stall(u32),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FaultPlan {
    pub(crate) fate: Fate,
    pub(crate) slow: f64,
}

/// Rolls each fault in a fixed order; the first that fires decides the fate. Every
/// probability is rolled even when an earlier one fired, so changing one probability
/// does not shift the random sequence seen by the others.
pub(crate) fn roll(f: &FaultConfig, rng: &mut impl Rng) -> FaultPlan {
    let mut hit = |p: f64| {
        let x: f64 = rng.random();
        p > 0.0 && x < p
    };
    let refuse = hit(f.refuse);
    let hang = hit(f.hang);
    let error_500 = hit(f.error_500);
    let cut = hit(f.cut_stream);
    let stall = hit(f.stall_stream);
    let fate = if refuse {
        Fate::Refuse
    } else if hang {
        Fate::Hang
    } else if error_500 {
        Fate::Error500
    } else if cut {
        Fate::Cut(f.cut_after_tokens)
    } else if stall {
        Fate::Stall(f.cut_after_tokens)
    } else {
        Fate::Normal
    };
    FaultPlan {
        fate,
        slow: f.slow_factor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn certain_and_impossible_faults() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(roll(&FaultConfig::default(), &mut rng).fate, Fate::Normal);
        let f = FaultConfig {
            error_500: 1.0,
            cut_stream: 1.0,
            ..FaultConfig::default()
        };
        assert_eq!(roll(&f, &mut rng).fate, Fate::Error500);
        let f = FaultConfig {
            stall_stream: 1.0,
            cut_after_tokens: 3,
            ..FaultConfig::default()
        };
        assert_eq!(roll(&f, &mut rng).fate, Fate::Stall(3));
    }

    #[test]
    fn probability_is_roughly_honoured() {
        let mut rng = StdRng::seed_from_u64(7);
        let f = FaultConfig {
            refuse: 0.25,
            ..FaultConfig::default()
        };
        let hits = (0..4000)
            .filter(|_| roll(&f, &mut rng).fate == Fate::Refuse)
            .count();
        assert!((800..1200).contains(&hits), "{hits}");
    }
}
