//! The result of a run: counts, tokens, throughput and latency percentiles. Serialized as
//! `switchyard bench --json`; `switchyard plan` reads it back.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::request::Outcome;
use crate::slo::Slo;

/// Names the JSON layout; a reader checks it.
pub const SCHEMA: &str = "switchyard-bench/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub schema: String,
    pub target: TargetReport,
    pub load: LoadReport,
    /// From the first request's start to the last one's end.
    pub elapsed_s: f64,
    pub requests: Counts,
    pub tokens: Tokens,
    pub throughput: Throughput,
    pub latency_ms: Latencies,
    /// With latency objectives: the requests that met them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput: Option<Goodput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    pub url: String,
    pub model: String,
    pub endpoint: String,
    pub stream: bool,
    /// Some response came from a simulated worker (`x-switchyard-sim`): its figures are the
    /// simulator's timing model, not a GPU's.
    pub simulated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// "closed" or "open".
    pub mode: String,
    pub concurrency: Option<u32>,
    /// Requests/s asked for (open loop).
    pub rate: Option<f64>,
    pub requests: Option<u64>,
    pub duration_s: Option<f64>,
    /// Each request's, or the top of their range.
    pub max_tokens: u32,
    /// The bottom of the range each request's max_tokens was drawn from, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_min: Option<u32>,
    /// Open loop: "uniform" or "poisson".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<String>,
    /// The seed of the Poisson arrivals, max_tokens and prompt draws, when any was drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// What the prompts were: "fixed prompt", "20-200-word prompts", "dataset of N
    /// conversations".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Requests sent before the run, not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<u64>,
    /// How many of them failed (a server that fails its warm-up is worth a look).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_failed: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    /// Sums over all responses, successful or not, of what each reported or was counted.
    pub prompt: u64,
    pub completion: u64,
    /// Successful responses only (throughput is computed from these).
    pub ok_prompt: u64,
    pub ok_completion: u64,
    /// Responses whose tokens came from `usage`.
    pub with_usage: u64,
    /// Successful responses without `usage`, whose completion tokens were counted as one per
    /// text event (and whose prompt tokens are unknown).
    pub counted: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub requests_per_s: f64,
    /// Completion tokens of successful requests per second.
    pub output_tokens_per_s: f64,
    /// Prompt + completion tokens of successful requests per second.
    pub total_tokens_per_s: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// Successful requests only.
    pub ttft: LatencySummary,
    pub itl: LatencySummary,
    /// Time per output token after the first, per request with two or more.
    #[serde(default)]
    pub tpot: LatencySummary,
    pub ttlt: LatencySummary,
}

/// The requests that met the run's latency objectives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Goodput {
    /// The objectives, as `ttft=1500ms,tpot=50ms`.
    pub slo: String,
    pub requests: u64,
    pub requests_per_s: f64,
    /// Of the requests sent (a failed one never meets them).
    pub fraction: f64,
}

/// Microseconds, 1 µs to 1 hour, 3 significant digits.
pub(crate) fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| format!("histogram: {e:?}"))
}

fn micros(d: Duration) -> u64 {
    (d.as_micros().min(u64::MAX as u128) as u64).max(1)
}

pub(crate) fn summary(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    LatencySummary {
        count: h.len(),
        min: ms(h.min()),
        mean: h.mean() / 1000.0,
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    }
}

/// Accumulates outcomes as they arrive.
pub(crate) struct Aggregate {
    pub counts: Counts,
    pub simulated: bool,
    pub tokens: Tokens,
    ttft: Histogram<u64>,
    itl: Histogram<u64>,
    tpot: Histogram<u64>,
    ttlt: Histogram<u64>,
    slo: Option<Slo>,
    /// Requests that met `slo`.
    pub good: u64,
}

impl Aggregate {
    pub fn new(slo: Option<Slo>) -> Result<Self, String> {
        Ok(Self {
            counts: Counts::default(),
            simulated: false,
            tokens: Tokens::default(),
            ttft: histogram()?,
            itl: histogram()?,
            tpot: histogram()?,
            ttlt: histogram()?,
            slo,
            good: 0,
        })
    }

    pub fn add(&mut self, o: &Outcome) {
        self.counts.sent += 1;
        if self.slo.is_some_and(|slo| slo.met(o)) {
            self.good += 1;
        }
        self.simulated |= o.simulated;
        let (prompt, completion) = match (o.prompt_tokens, o.completion_tokens) {
            (Some(p), Some(c)) => {
                self.tokens.with_usage += 1;
                (p, c)
            }
            _ => {
                if o.error.is_none() {
                    self.tokens.counted += 1;
                }
                (o.prompt_tokens.unwrap_or(0), o.text_events)
            }
        };
        self.tokens.prompt += prompt;
        self.tokens.completion += completion;
        match &o.error {
            Some(kind) => {
                self.counts.failed += 1;
                *self.counts.errors.entry(kind.clone()).or_insert(0) += 1;
            }
            None => {
                self.counts.ok += 1;
                self.tokens.ok_prompt += prompt;
                self.tokens.ok_completion += completion;
                if let Some(t) = o.ttft {
                    self.ttft.saturating_record(micros(t));
                }
                for gap in &o.itl {
                    self.itl.saturating_record(micros(*gap));
                }
                if let Some(t) = o.ttlt {
                    self.ttlt.saturating_record(micros(t));
                }
                if let Some(t) = crate::slo::tpot(o) {
                    self.tpot.saturating_record(micros(t));
                }
            }
        }
    }

    pub fn latencies(&self) -> Latencies {
        Latencies {
            ttft: summary(&self.ttft),
            itl: summary(&self.itl),
            tpot: summary(&self.tpot),
            ttlt: summary(&self.ttlt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ttft_ms: u64, gaps_ms: &[u64], prompt: u64, completion: u64) -> Outcome {
        Outcome {
            error: None,
            ttft: Some(Duration::from_millis(ttft_ms)),
            itl: gaps_ms.iter().map(|g| Duration::from_millis(*g)).collect(),
            ttlt: Some(Duration::from_millis(ttft_ms + gaps_ms.iter().sum::<u64>())),
            prompt_tokens: Some(prompt),
            completion_tokens: Some(completion),
            text_events: gaps_ms.len() as u64 + 1,
            simulated: false,
            status: Some(200),
            sent: Duration::ZERO,
        }
    }

    #[test]
    fn counts_tokens_and_percentiles() {
        let mut a = Aggregate::new(Some(Slo::parse("ttft=50ms").unwrap())).unwrap();
        // 100 requests with TTFT 1..=100 ms: p50 = 50 ms, p99 = 99 ms (within 0.1%).
        for i in 1..=100 {
            a.add(&ok(i, &[10, 10], 7, 3));
        }
        a.add(&Outcome {
            error: Some("http_503".into()),
            ..Outcome::default()
        });
        // A stream without usage: 4 text events = 4 completion tokens, prompt unknown.
        a.add(&Outcome {
            text_events: 4,
            ttft: Some(Duration::from_millis(5)),
            ttlt: Some(Duration::from_millis(9)),
            ..Outcome::default()
        });
        assert_eq!(a.counts.sent, 102);
        assert_eq!(a.counts.ok, 101);
        assert_eq!(a.counts.failed, 1);
        assert_eq!(a.counts.errors["http_503"], 1);
        assert_eq!(a.tokens.prompt, 700);
        assert_eq!(a.tokens.completion, 304);
        assert_eq!(a.tokens.with_usage, 100);
        assert_eq!(a.tokens.counted, 1);
        let l = a.latencies();
        assert_eq!(l.ttft.count, 101);
        assert!((l.ttft.p50 - 50.0).abs() < 0.1, "{:?}", l.ttft);
        assert!((l.ttft.p99 - 99.0).abs() < 0.1, "{:?}", l.ttft);
        assert_eq!(l.itl.count, 200);
        assert!((l.itl.p50 - 10.0).abs() < 0.01);
        // Three tokens 20 ms after the first: 10 ms each; the stream without usage counts its
        // 4 events (4 ms over 3).
        assert_eq!(l.tpot.count, 101);
        assert!((l.tpot.p50 - 10.0).abs() < 0.01, "{:?}", l.tpot);
        // TTFT 1..=50 ms, and the 5 ms stream: 51 requests within 50 ms.
        assert_eq!(a.good, 51);
        assert_eq!(summary(&histogram().unwrap()), LatencySummary::default());
    }
}
