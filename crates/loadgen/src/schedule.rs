//! Seeded randomness: when open-loop requests are due, what max_tokens each asks for, and how
//! long a drawn prompt is.
//!
//! Every draw is a pure function of (seed, stream, request number) through SplitMix64, so a
//! schedule is the same for the same seed on every machine and every version of every
//! dependency, and a request's draw does not depend on how many came before it.

use std::time::Duration;

use crate::config::Arrivals;

/// Separates the draws of different purposes made from one seed.
const ARRIVALS: u64 = 0x6172_7269_7661_6c73; // "arrivals"
const MAX_TOKENS: u64 = 0x6d61_785f_746f_6b73; // "max_toks"
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn draw(seed: u64, stream: u64, i: u64) -> u64 {
    mix(mix(seed ^ stream) ^ i.wrapping_mul(GOLDEN))
}

/// Uniform in [0, 1).
fn unit(seed: u64, stream: u64, i: u64) -> f64 {
    (draw(seed, stream, i) >> 11) as f64 / (1u64 << 53) as f64
}

/// Uniform in `lo..=hi` (`lo <= hi`) for request `i`'s max_tokens.
pub(crate) fn draw_in(seed: u64, i: u64, lo: u32, hi: u32) -> u32 {
    draw_stream(seed, MAX_TOKENS, i, lo, hi)
}

/// Uniform in `lo..=hi` (`lo <= hi`): draw `i` of `stream`.
pub(crate) fn draw_stream(seed: u64, stream: u64, i: u64, lo: u32, hi: u32) -> u32 {
    let span = u64::from(hi - lo) + 1;
    // The modulo bias of a 64-bit draw over a span below 2^32 is below 2^-32.
    lo + (draw(seed, stream, i) % span) as u32
}

/// When each request of an open-loop run is due, as an offset from the run's start: the
/// first at 0, then `1 / rate` apart (uniform) or exponentially distributed gaps with mean
/// `1 / rate` (Poisson, from the seed). Ends where an offset is beyond what a [`Duration`]
/// holds.
#[derive(Debug, Clone)]
pub struct Schedule {
    arrivals: Arrivals,
    rate: f64,
    seed: u64,
    i: u64,
    /// Poisson: the next offset, in seconds (the sum of the gaps so far).
    t: f64,
}

impl Schedule {
    pub fn new(arrivals: Arrivals, rate: f64, seed: u64) -> Self {
        Self {
            arrivals,
            rate,
            seed,
            i: 0,
            t: 0.0,
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let i = self.i;
        self.i = self.i.checked_add(1)?;
        let t = match self.arrivals {
            // Computed afresh each time, so that rounding does not accumulate.
            Arrivals::Uniform => i as f64 / self.rate,
            Arrivals::Poisson => {
                let t = self.t;
                let u = unit(self.seed, ARRIVALS, i);
                self.t += -(1.0 - u).ln() / self.rate;
                t
            }
        };
        Duration::try_from_secs_f64(t).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_evenly_spaced() {
        let s: Vec<Duration> = Schedule::new(Arrivals::Uniform, 4.0, 1).take(3).collect();
        assert_eq!(
            s,
            [0, 250, 500].map(Duration::from_millis).to_vec(),
            "{s:?}"
        );
    }

    #[test]
    fn draws_are_pinned() {
        // The schedule is part of a benchmark's definition: a change here changes every
        // seeded run, so it must be deliberate.
        assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
        let first: Vec<u128> = Schedule::new(Arrivals::Poisson, 10.0, 1)
            .take(3)
            .map(|d| d.as_micros())
            .collect();
        assert_eq!(first, [0, 81_667, 101_205]);
        let mt: Vec<u32> = (0..5).map(|i| draw_in(1, i, 64, 128)).collect();
        assert_eq!(mt, [127, 106, 76, 114, 121]);
    }
}
