//! Provider scoring with the source document's rubric, each criterion scored 1–5:
//!
//! | criterion | measured (the ledger) | else from the operator's file |
//! |---|---|---|
//! | uptime | share of requests served without a provider-side failure | `uptime_pct` (self-reported or your probes), else `scores.uptime` |
//! | gpu_fit | the provider's GPU against the target model: sequences that fit | `scores.gpu_fit` |
//! | network | p95 time to first token | `rtt_ms`, else `scores.network` |
//! | price_stability | variation of cost of goods per worker-millisecond, hour by hour | `price_history`, else `scores.price_stability` |
//! | support | — | `support` (operator's judgement) |
//!
//! A measured figure needs at least [`MIN_SAMPLES`] requests; with fewer the operator's entry
//! is used. The overall score is the weighted mean of the criteria that have a score; a
//! criterion with neither is shown as missing and left out of the mean (and `coverage` says
//! how many of the five were scored). Thresholds follow the document's SLOs: 99.95 / 99.9 /
//! 99.5 / 99.0 % availability (Business / Pro / Hobby), p95 TTFT 0.5 / 1.0 / 1.5 / 2.5 s,
//! 50–100 ms RTT.
//!
//! One piece, over 500 lines with its tests (the code is about 420): the scoring rules and their
//! weights are read and changed together.

mod measured;
mod rubric;

use serde::{Deserialize, Serialize};

pub use measured::{measure, Measured};
pub use rubric::{
    coefficient_of_variation, fit_score, percentile, price_variation_score, rtt_score, ttft_score,
    uptime_score,
};

use crate::error::PlanError;
use crate::memory::{fit, FitRequest};
use crate::mix::LedgerRow;
use crate::presets::{gpu_by_name, KvDtype, ModelPreset, Quant};

/// Fewer requests than this are too few to measure a provider by.
pub const MIN_SAMPLES: u64 = 20;

/// The operator's file (TOML): weights and what is known about each provider.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersFile {
    #[serde(default)]
    pub weights: Weights,
    #[serde(default)]
    pub providers: Vec<ProviderEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub uptime: f64,
    pub gpu_fit: f64,
    pub network: f64,
    pub price_stability: f64,
    pub support: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            uptime: 1.0,
            gpu_fit: 1.0,
            network: 1.0,
            price_stability: 1.0,
            support: 1.0,
        }
    }
}

/// Scores 1–5 the operator gives where nothing can be measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorScores {
    pub uptime: Option<u8>,
    pub gpu_fit: Option<u8>,
    pub network: Option<u8>,
    pub price_stability: Option<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// As the workers' `provider` field names it.
    pub name: String,
    /// A GPU preset name (`switchyard plan presets`).
    pub gpu: Option<String>,
    /// GPUs per node (tensor parallel), 1 by default.
    pub gpus: Option<u32>,
    /// USD per GPU-hour now (shown; planning only).
    pub price_per_hour: Option<f64>,
    /// Self-reported or from your own probes, percent.
    pub uptime_pct: Option<f64>,
    /// Network round trip to your audience, ms.
    pub rtt_ms: Option<f64>,
    /// Past hourly prices, oldest first.
    #[serde(default)]
    pub price_history: Vec<f64>,
    /// Support and communication, 1–5.
    pub support: Option<u8>,
    #[serde(default)]
    pub scores: OperatorScores,
}

/// Where a criterion's score came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// From the ledger.
    Measured,
    /// Computed from the operator's figures (GPU, RTT, uptime %, price history).
    Computed,
    /// The operator's own score.
    Operator,
    Missing,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Criterion {
    pub score: Option<u8>,
    pub source: Source,
    /// What the score rests on, e.g. "99.80% of 1,000 requests served".
    pub basis: String,
}

impl Criterion {
    fn missing(basis: &str) -> Self {
        Self {
            score: None,
            source: Source::Missing,
            basis: basis.into(),
        }
    }
    fn new(score: u8, source: Source, basis: String) -> Self {
        Self {
            score: Some(score),
            source,
            basis,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderScore {
    pub provider: String,
    pub rank: usize,
    /// Weighted mean of the scored criteria, 1–5; `None` when none is scored.
    pub score: Option<f64>,
    /// How many of the five criteria have a score.
    pub coverage: u8,
    pub requests: u64,
    pub ttft_p95_ms: Option<u64>,
    pub ttlt_p95_ms: Option<u64>,
    pub gpu: Option<String>,
    pub price_per_hour: Option<f64>,
    pub uptime: Criterion,
    pub gpu_fit: Criterion,
    pub network: Criterion,
    pub price_stability: Criterion,
    pub support: Criterion,
}

/// The model the providers are judged for (GPU fit).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub model: &'a ModelPreset,
    pub quant: Quant,
    pub kv_dtype: KvDtype,
    pub context: u32,
    pub memory_utilization: f64,
}

fn check_score(provider: &str, what: &str, s: Option<u8>) -> Result<Option<u8>, PlanError> {
    match s {
        Some(v) if !(1..=5).contains(&v) => Err(PlanError::Invalid(format!(
            "provider {provider}: {what} must be a score from 1 to 5, got {v}"
        ))),
        other => Ok(other),
    }
}

/// The operator's figures are checked whether or not the ledger makes them moot: a typo in
/// the file is an error today, not on the day the measurements run out.
fn check_figures(e: &ProviderEntry) -> Result<(), PlanError> {
    let name = &e.name;
    let bad = |what: &str, v: f64, range: &str| {
        PlanError::Invalid(format!("provider {name}: {what} must be {range}, got {v}"))
    };
    if let Some(pct) = e.uptime_pct.filter(|p| !(0.0..=100.0).contains(p)) {
        return Err(bad("uptime_pct", pct, "within 0..=100"));
    }
    if let Some(rtt) = e.rtt_ms.filter(|r| !(r.is_finite() && *r >= 0.0)) {
        return Err(bad("rtt_ms", rtt, "a number >= 0"));
    }
    if let Some(p) = e.price_per_hour.filter(|p| !(p.is_finite() && *p >= 0.0)) {
        return Err(bad("price_per_hour", p, "a number >= 0"));
    }
    if let Some(p) = e
        .price_history
        .iter()
        .copied()
        .find(|p| !(p.is_finite() && *p > 0.0))
    {
        return Err(bad("every price_history entry", p, "a number > 0"));
    }
    Ok(())
}

fn operator(s: Option<u8>, missing: &str) -> Criterion {
    match s {
        Some(v) => Criterion::new(v, Source::Operator, "operator's score".into()),
        None => Criterion::missing(missing),
    }
}

fn score_one(
    entry: &ProviderEntry,
    m: &Measured,
    target: Option<&Target<'_>>,
) -> Result<ProviderScore, PlanError> {
    let name = &entry.name;
    let s = OperatorScores {
        uptime: check_score(name, "scores.uptime", entry.scores.uptime)?,
        gpu_fit: check_score(name, "scores.gpu_fit", entry.scores.gpu_fit)?,
        network: check_score(name, "scores.network", entry.scores.network)?,
        price_stability: check_score(name, "scores.price_stability", entry.scores.price_stability)?,
    };
    let support_score = check_score(name, "support", entry.support)?;
    check_figures(entry)?;

    let judged = m.completed + m.provider_failures;
    let uptime = if judged >= MIN_SAMPLES {
        let pct = m.completed as f64 / judged as f64 * 100.0;
        Criterion::new(
            uptime_score(pct),
            Source::Measured,
            format!("{pct:.2}% of {judged} requests served"),
        )
    } else if let Some(pct) = entry.uptime_pct {
        Criterion::new(
            uptime_score(pct),
            Source::Computed,
            format!("{pct}% reported"),
        )
    } else {
        operator(s.uptime, "no requests, no uptime_pct")
    };

    let ttft_p95 = (m.ttft_ms.len() as u64 >= MIN_SAMPLES)
        .then(|| percentile(&m.ttft_ms, 95.0))
        .flatten();
    let network = if let Some(p) = ttft_p95 {
        Criterion::new(
            ttft_score(p as f64),
            Source::Measured,
            format!("p95 TTFT {p} ms over {} requests", m.ttft_ms.len()),
        )
    } else if let Some(rtt) = entry.rtt_ms {
        Criterion::new(rtt_score(rtt), Source::Computed, format!("RTT {rtt} ms"))
    } else {
        operator(s.network, "no TTFT measured, no rtt_ms")
    };

    let price_stability = if let Some((cv, hours)) = m.price_variation() {
        Criterion::new(
            price_variation_score(cv),
            Source::Measured,
            format!(
                "cost per worker-ms varies {:.1}% over {hours} hours",
                cv * 100.0
            ),
        )
    } else if let Some(cv) = coefficient_of_variation(&entry.price_history) {
        Criterion::new(
            price_variation_score(cv),
            Source::Computed,
            format!(
                "price varies {:.1}% over {} prices",
                cv * 100.0,
                entry.price_history.len()
            ),
        )
    } else {
        operator(s.price_stability, "no price history")
    };

    let gpu_fit = match (target, entry.gpu.as_deref()) {
        (Some(t), Some(gpu_name)) => match gpu_by_name(gpu_name) {
            Ok(gpu) => {
                let f = fit(&FitRequest {
                    model: t.model,
                    quant: t.quant,
                    kv_dtype: t.kv_dtype,
                    context: t.context,
                    gpu,
                    gpus: entry.gpus.unwrap_or(1),
                    memory_utilization: t.memory_utilization,
                })
                .map_err(|e| PlanError::Invalid(format!("provider {name}: {e}")))?;
                let basis = if f.fits {
                    format!(
                        "{} × {}-token sequences of {} ({}) on {}× {}",
                        f.max_sequences, f.context_tokens, f.model, f.quant, f.gpus, f.gpu
                    )
                } else {
                    format!(
                        "{} ({}) does not fit on {}× {}",
                        f.model, f.quant, f.gpus, f.gpu
                    )
                };
                Criterion::new(fit_score(f.max_sequences), Source::Computed, basis)
            }
            Err(_) => match s.gpu_fit {
                Some(v) => Criterion::new(
                    v,
                    Source::Operator,
                    format!("gpu '{gpu_name}' is no preset; operator's score"),
                ),
                None => Criterion::missing(&format!("gpu '{gpu_name}' is no preset")),
            },
        },
        (None, _) => operator(s.gpu_fit, "no --model to fit"),
        (Some(_), None) => operator(s.gpu_fit, "GPU unknown"),
    };

    let support = operator(support_score, "no support score");

    Ok(ProviderScore {
        provider: name.clone(),
        rank: 0,
        score: None,
        coverage: 0,
        requests: m.requests,
        ttft_p95_ms: percentile(&m.ttft_ms, 95.0),
        ttlt_p95_ms: percentile(&m.ttlt_ms, 95.0),
        gpu: entry.gpu.clone(),
        price_per_hour: entry.price_per_hour,
        uptime,
        gpu_fit,
        network,
        price_stability,
        support,
    })
}

/// Scores every provider that is in the file or in the ledger, best first.
pub fn score_providers(
    file: &ProvidersFile,
    rows: &[LedgerRow],
    target: Option<&Target<'_>>,
) -> Result<Vec<ProviderScore>, PlanError> {
    let w = file.weights;
    for (k, v) in [
        ("uptime", w.uptime),
        ("gpu_fit", w.gpu_fit),
        ("network", w.network),
        ("price_stability", w.price_stability),
        ("support", w.support),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(PlanError::Invalid(format!(
                "weights.{k} must be a number >= 0, got {v}"
            )));
        }
    }
    let measured = measure(rows);
    let mut entries: Vec<ProviderEntry> = file.providers.clone();
    let mut seen = std::collections::BTreeSet::new();
    for e in &entries {
        if !seen.insert(e.name.clone()) {
            return Err(PlanError::Invalid(format!(
                "provider {} is listed twice",
                e.name
            )));
        }
    }
    for name in measured.keys() {
        if !seen.contains(name) {
            entries.push(ProviderEntry {
                name: name.clone(),
                ..ProviderEntry::default()
            });
        }
    }
    let empty = Measured::default();
    let mut scored = entries
        .iter()
        .map(|e| score_one(e, measured.get(&e.name).unwrap_or(&empty), target))
        .collect::<Result<Vec<_>, _>>()?;
    for p in &mut scored {
        let parts = [
            (&p.uptime, w.uptime),
            (&p.gpu_fit, w.gpu_fit),
            (&p.network, w.network),
            (&p.price_stability, w.price_stability),
            (&p.support, w.support),
        ];
        let (mut sum, mut weight, mut coverage) = (0.0, 0.0, 0u8);
        for (c, wt) in parts {
            if let Some(s) = c.score {
                coverage += 1;
                sum += s as f64 * wt;
                weight += wt;
            }
        }
        p.coverage = coverage;
        p.score = (weight > 0.0).then(|| sum / weight);
    }
    scored.sort_by(|a, b| {
        b.score
            .unwrap_or(0.0)
            .total_cmp(&a.score.unwrap_or(0.0))
            .then(b.coverage.cmp(&a.coverage))
            .then(a.provider.cmp(&b.provider))
    });
    for (i, p) in scored.iter_mut().enumerate() {
        p.rank = i + 1;
    }
    Ok(scored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::{row, RowStatus};
    use crate::presets::model_by_name;

    fn rows(provider: &str, ok: usize, failed: usize, ttft: u64) -> Vec<LedgerRow> {
        let mut out = Vec::new();
        for i in 0..ok + failed {
            let status = if i < ok {
                RowStatus::Completed
            } else {
                RowStatus::Failed
            };
            let mut r = row(i as i64 * 1000, 10, 10, status);
            r.provider = provider.into();
            r.ttft_ms = Some(ttft);
            out.push(r);
        }
        out
    }

    #[test]
    fn measured_data_wins_and_operator_entries_fill_the_gaps() {
        // "steady": 1,000 served, 0 failed → 100% → 5; p95 TTFT 300 ms → 5.
        // "flaky": 990 served, 10 failed (502) → 99.0% → 2; p95 TTFT 1,200 ms → 3.
        let mut all = rows("steady", 1000, 0, 300);
        all.extend(rows("flaky", 990, 10, 1200));
        // A client's 400 and a disconnect do not count against "flaky".
        let mut r = row(0, 1, 1, RowStatus::Failed);
        r.provider = "flaky".into();
        r.http_status = 400;
        all.push(r);
        let mut r = row(0, 1, 1, RowStatus::ClientDisconnected);
        r.provider = "flaky".into();
        all.push(r);
        let file: ProvidersFile = ProvidersFile {
            weights: Weights::default(),
            providers: vec![
                ProviderEntry {
                    name: "flaky".into(),
                    gpu: Some("h100".into()),
                    uptime_pct: Some(99.99), // self-reported; the ledger overrules it
                    support: Some(4),
                    price_history: vec![2.0, 2.0, 2.0],
                    ..Default::default()
                },
                ProviderEntry {
                    name: "paper-only".into(),
                    gpu: Some("rtx4090".into()),
                    uptime_pct: Some(99.5),
                    rtt_ms: Some(40.0),
                    support: Some(2),
                    ..Default::default()
                },
            ],
        };
        let target = Target {
            model: model_by_name("llama-3.1-8b").unwrap(),
            quant: Quant::Fp16,
            kv_dtype: KvDtype::Fp16,
            context: 8192,
            memory_utilization: 0.9,
        };
        let s = score_providers(&file, &all, Some(&target)).unwrap();
        let by = |n: &str| s.iter().find(|p| p.provider == n).unwrap().clone();

        let flaky = by("flaky");
        assert_eq!(flaky.requests, 1002);
        assert_eq!(flaky.uptime.score, Some(2));
        assert_eq!(flaky.uptime.source, Source::Measured);
        assert_eq!(flaky.uptime.basis, "99.00% of 1000 requests served");
        assert_eq!(flaky.network.score, Some(3));
        // h100: ⌊81,559 MiB × 0.9⌋ − 16.06e9 = 60,908,728,985 B / 1 GiB = 56 sequences → 5.
        assert_eq!(flaky.gpu_fit.score, Some(5));
        assert!(
            flaky.gpu_fit.basis.starts_with("56 × 8192-token"),
            "{:?}",
            flaky.gpu_fit
        );
        assert_eq!(flaky.price_stability.score, Some(5));
        assert_eq!(flaky.price_stability.source, Source::Computed);
        assert_eq!(flaky.support.score, Some(4));
        // (2 + 5 + 3 + 5 + 4) / 5 = 3.8
        assert!((flaky.score.unwrap() - 3.8).abs() < 1e-12);
        assert_eq!(flaky.coverage, 5);

        // From the file alone: uptime 99.5% → 3; RTT 40 ms → 5; rtx4090: ⌊24,564 MiB × 0.9⌋ =
        // 23,181,498,777 B − 16.06e9 = 7,121,498,777 B / 1 GiB = 6.6 → 6 sequences → 2; support 2;
        // no price history → missing. (3 + 2 + 5 + 2) / 4 = 3.0.
        let paper = by("paper-only");
        assert_eq!(paper.requests, 0);
        assert_eq!(paper.uptime.source, Source::Computed);
        assert_eq!(paper.gpu_fit.score, Some(2));
        assert_eq!(paper.price_stability.source, Source::Missing);
        assert_eq!(paper.coverage, 4);
        assert!((paper.score.unwrap() - 3.0).abs() < 1e-12);

        // Only in the ledger: uptime 5, network 5, nothing else → 5.0 with coverage 2.
        let steady = by("steady");
        assert_eq!(steady.coverage, 2);
        assert_eq!(steady.score, Some(5.0));
        assert_eq!(steady.gpu_fit.source, Source::Missing);

        // Ranked: steady 5.0, flaky 3.8, paper-only 3.0.
        let order: Vec<&str> = s.iter().map(|p| p.provider.as_str()).collect();
        assert_eq!(order, ["steady", "flaky", "paper-only"]);
        assert_eq!(s[0].rank, 1);
    }

    #[test]
    fn bad_operator_entries_are_errors() {
        let file = ProvidersFile {
            weights: Weights::default(),
            providers: vec![ProviderEntry {
                name: "x".into(),
                support: Some(7),
                ..Default::default()
            }],
        };
        let err = score_providers(&file, &[], None).unwrap_err().to_string();
        assert_eq!(
            err,
            "provider x: support must be a score from 1 to 5, got 7"
        );
        let twice = ProvidersFile {
            weights: Weights::default(),
            providers: vec![
                ProviderEntry {
                    name: "x".into(),
                    ..Default::default()
                },
                ProviderEntry {
                    name: "x".into(),
                    ..Default::default()
                },
            ],
        };
        assert!(score_providers(&twice, &[], None).is_err());
        // Checked even when the ledger's measurements make the figure moot.
        let all = rows("x", 30, 0, 300);
        for (entry, message) in [
            (
                ProviderEntry {
                    uptime_pct: Some(150.0),
                    ..Default::default()
                },
                "provider x: uptime_pct must be within 0..=100, got 150",
            ),
            (
                ProviderEntry {
                    rtt_ms: Some(-5.0),
                    ..Default::default()
                },
                "provider x: rtt_ms must be a number >= 0, got -5",
            ),
            (
                ProviderEntry {
                    price_history: vec![1.0, -1.0],
                    ..Default::default()
                },
                "provider x: every price_history entry must be a number > 0, got -1",
            ),
        ] {
            let file = ProvidersFile {
                weights: Weights::default(),
                providers: vec![ProviderEntry {
                    name: "x".into(),
                    ..entry
                }],
            };
            let err = score_providers(&file, &all, None).unwrap_err().to_string();
            assert_eq!(err, message);
        }
    }
}
