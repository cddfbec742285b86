//! GPUs for a load: GPUs ≈ QPS × (prompt + completion tokens) / (tokens/s per GPU × batch
//! efficiency), × headroom (1.3–1.5 for spikes and tail latency), rounded up.
//!
//! Tokens/s per GPU is what one GPU serves counting prompt and completion tokens alike, as
//! `switchyard bench` reports it (`total_tokens_per_s` divided by the GPUs behind the
//! endpoint). All figures are `f64` planning estimates; only the final count is an integer.

use serde::Serialize;

use crate::error::{fraction, non_negative, positive, PlanError};

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CapacityInput {
    /// Requests per second to serve.
    pub qps: f64,
    /// Average prompt tokens per request.
    pub prompt_tokens: f64,
    /// Average completion tokens per request.
    pub completion_tokens: f64,
    /// Measured throughput of one GPU, tokens/s (prompt + completion).
    pub tokens_per_sec_per_gpu: f64,
    /// Batch efficiency, 0.6–0.9 in the source document.
    pub batch_efficiency: f64,
    /// Multiplier for spikes and tail latency, ≥ 1 (1.3–1.5 in the source document).
    pub headroom: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Capacity {
    /// QPS × (prompt + completion).
    pub tokens_per_sec_needed: f64,
    /// tokens/s per GPU × batch efficiency.
    pub effective_tokens_per_sec_per_gpu: f64,
    /// Before headroom.
    pub gpus_exact: f64,
    pub gpus_with_headroom: f64,
    /// Whole GPUs to rent: ⌈gpus_with_headroom⌉ (at least 1).
    pub gpus: u64,
}

pub fn gpus_needed(i: &CapacityInput) -> Result<Capacity, PlanError> {
    positive("QPS", i.qps)?;
    non_negative("prompt tokens", i.prompt_tokens)?;
    non_negative("completion tokens", i.completion_tokens)?;
    if i.prompt_tokens + i.completion_tokens <= 0.0 {
        return Err(PlanError::Invalid(
            "a request must have some tokens (prompt + completion > 0)".into(),
        ));
    }
    positive("tokens/s per GPU", i.tokens_per_sec_per_gpu)?;
    fraction("batch efficiency", i.batch_efficiency)?;
    if !(i.headroom.is_finite() && i.headroom >= 1.0) {
        return Err(PlanError::Invalid(format!(
            "headroom must be a number >= 1, got {}",
            i.headroom
        )));
    }
    let needed = i.qps * (i.prompt_tokens + i.completion_tokens);
    let effective = i.tokens_per_sec_per_gpu * i.batch_efficiency;
    let exact = needed / effective;
    let with_headroom = exact * i.headroom;
    // A hair of tolerance so that 4.000000000001 from float rounding is 4 GPUs, not 5.
    let gpus = ((with_headroom - 1e-9).ceil() as u64).max(1);
    Ok(Capacity {
        tokens_per_sec_needed: needed,
        effective_tokens_per_sec_per_gpu: effective,
        gpus_exact: exact,
        gpus_with_headroom: with_headroom,
        gpus,
    })
}

/// Little's law: requests in flight = arrival rate × time each spends. Replicas needed so that
/// every request in flight has a KV-cache slot: ⌈qps × seconds per request / max sequences⌉.
pub fn replicas_for_concurrency(
    qps: f64,
    seconds_per_request: f64,
    max_sequences_per_replica: u64,
) -> Result<(f64, u64), PlanError> {
    positive("QPS", qps)?;
    positive("seconds per request", seconds_per_request)?;
    if max_sequences_per_replica == 0 {
        return Err(PlanError::Invalid(
            "a replica must hold at least one sequence".into(),
        ));
    }
    let in_flight = qps * seconds_per_request;
    let replicas = ((in_flight / max_sequences_per_replica as f64 - 1e-9).ceil() as u64).max(1);
    Ok((in_flight, replicas))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> CapacityInput {
        CapacityInput {
            qps: 10.0,
            prompt_tokens: 500.0,
            completion_tokens: 200.0,
            tokens_per_sec_per_gpu: 1600.0,
            batch_efficiency: 0.75,
            headroom: 1.3,
        }
    }

    #[test]
    fn worked_example() {
        // 10 QPS × (500 + 200) = 7,000 tokens/s; 1,600 × 0.75 = 1,200 per GPU;
        // 7,000 / 1,200 = 5.833 GPUs; × 1.3 = 7.583 → 8 GPUs.
        let c = gpus_needed(&input()).unwrap();
        assert_eq!(c.tokens_per_sec_needed, 7000.0);
        assert_eq!(c.effective_tokens_per_sec_per_gpu, 1200.0);
        assert!((c.gpus_exact - 5.833_333_333).abs() < 1e-6);
        assert!((c.gpus_with_headroom - 7.583_333_333).abs() < 1e-6);
        assert_eq!(c.gpus, 8);
    }

    #[test]
    fn exact_multiples_do_not_round_up() {
        // 1.1 QPS × 700 tokens = 770 tokens/s; 100 × 0.7 = 70 per GPU; 770 / 70 = exactly 11.
        // In binary floating point 1.1 × 700 is 770.0000000000001, so the quotient comes out
        // as 11.000000000000002: without the rounding tolerance this would rent a 12th GPU.
        let c = gpus_needed(&CapacityInput {
            qps: 1.1,
            prompt_tokens: 500.0,
            completion_tokens: 200.0,
            tokens_per_sec_per_gpu: 100.0,
            batch_efficiency: 0.7,
            headroom: 1.0,
        })
        .unwrap();
        assert!(
            c.gpus_with_headroom > 11.0,
            "the float error this test is about"
        );
        assert_eq!(c.gpus, 11);
        // A hair more than a whole GPU's worth is a whole GPU more: 771 / 70 = 11.01 → 12.
        let c = gpus_needed(&CapacityInput {
            qps: 1.1,
            prompt_tokens: 500.0,
            completion_tokens: 200.0 + 1.0 / 1.1,
            tokens_per_sec_per_gpu: 100.0,
            batch_efficiency: 0.7,
            headroom: 1.0,
        })
        .unwrap();
        assert_eq!(c.gpus, 12);
        // A tiny load still needs one GPU: 0.001 × 700 / 1,200 × 1.3 = 0.00076 → 1.
        let c = gpus_needed(&CapacityInput {
            qps: 0.001,
            ..input()
        })
        .unwrap();
        assert_eq!(c.gpus, 1);
    }

    #[test]
    fn impossible_inputs() {
        for bad in [
            CapacityInput {
                qps: 0.0,
                ..input()
            },
            CapacityInput {
                tokens_per_sec_per_gpu: -1.0,
                ..input()
            },
            CapacityInput {
                batch_efficiency: 1.5,
                ..input()
            },
            CapacityInput {
                headroom: 0.9,
                ..input()
            },
            CapacityInput {
                prompt_tokens: 0.0,
                completion_tokens: 0.0,
                ..input()
            },
            CapacityInput {
                qps: f64::NAN,
                ..input()
            },
        ] {
            assert!(gpus_needed(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn littles_law() {
        // 10 QPS × 6 s = 60 in flight; 57 sequences per replica → ⌈60 / 57⌉ = 2 replicas.
        let (in_flight, replicas) = replicas_for_concurrency(10.0, 6.0, 57).unwrap();
        assert_eq!(in_flight, 60.0);
        assert_eq!(replicas, 2);
        // 1.1 QPS × 110 s = 121 in flight, exactly one replica of 121 sequences; in floating
        // point 121.00000000000001, which must not round up to a second replica.
        let (in_flight, replicas) = replicas_for_concurrency(1.1, 110.0, 121).unwrap();
        assert!(in_flight > 121.0, "the float error this test is about");
        assert_eq!(replicas, 1);
        assert_eq!(replicas_for_concurrency(1.1, 110.0, 120).unwrap().1, 2);
        assert!(replicas_for_concurrency(10.0, 6.0, 0).is_err());
        assert!(replicas_for_concurrency(10.0, 0.0, 57).is_err());
    }
}
