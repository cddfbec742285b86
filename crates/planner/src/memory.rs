//! GPU memory: VRAM ≈ weights + KV cache.
//!
//! - weights = parameters × bytes per weight (the quantization);
//! - KV cache = layers × kv_heads × 2 (K and V) × head_dim × dtype bytes × tokens × sequences.
//!
//! A runtime may use `memory_utilization` of each GPU's memory (vLLM's
//! `--gpu-memory-utilization`, 0.90 by default); the rest is for activations and the CUDA
//! context. What is left after the weights holds the KV cache, so the number of sequences of
//! `context` tokens that can run at once is ⌊(usable − weights) / KV per sequence⌋. A model
//! "fits" when at least one full-context sequence does. All sizes are integer bytes.

use serde::Serialize;

use crate::error::{fraction, PlanError};
use crate::presets::{GpuPreset, KvDtype, ModelPreset, Quant};
use crate::units::format_bytes;

/// KV-cache bytes one token takes: layers × kv_heads × 2 (K, V) × head_dim × dtype bytes.
pub fn kv_bytes_per_token(layers: u64, kv_heads: u64, head_dim: u64, dtype_bytes: u64) -> u64 {
    layers * kv_heads * 2 * head_dim * dtype_bytes
}

/// KV-cache bytes for `sequences` sequences of `tokens` tokens each (prompt + generated).
pub fn kv_cache_bytes(per_token: u64, tokens: u64, sequences: u64) -> Result<u64, PlanError> {
    per_token
        .checked_mul(tokens)
        .and_then(|b| b.checked_mul(sequences))
        .ok_or_else(|| PlanError::Invalid("KV cache size overflows 64 bits".into()))
}

/// Bytes of the weights: parameters × bits per weight / 8.
pub fn weight_bytes(params: u64, quant: Quant) -> u64 {
    (params as u128 * quant.bits() as u128 / 8) as u64
}

/// Tensor-parallel degrees a replica may use.
pub const TENSOR_PARALLEL: [u32; 4] = [1, 2, 4, 8];

/// One model on one kind of GPU.
#[derive(Debug, Clone, Copy)]
pub struct FitRequest<'a> {
    pub model: &'a ModelPreset,
    pub quant: Quant,
    pub kv_dtype: KvDtype,
    /// Tokens per sequence (prompt + completion) to plan for.
    pub context: u32,
    pub gpu: &'a GpuPreset,
    /// GPUs per replica (tensor parallel).
    pub gpus: u32,
    /// Fraction of each GPU's memory the runtime may use.
    pub memory_utilization: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fit {
    pub model: &'static str,
    pub quant: &'static str,
    pub kv_dtype: &'static str,
    pub gpu: &'static str,
    pub gpus: u32,
    pub context_tokens: u32,
    /// Total memory of the replica's GPUs.
    pub vram_bytes: u64,
    /// What the runtime may use: vram × memory_utilization.
    pub usable_bytes: u64,
    pub weights_bytes: u64,
    pub kv_bytes_per_token: u64,
    pub kv_bytes_per_sequence: u64,
    /// usable − weights (0 when the weights alone do not fit).
    pub kv_budget_bytes: u64,
    /// Sequences of `context_tokens` that fit at once.
    pub max_sequences: u64,
    pub fits: bool,
    /// weights + one sequence − usable, when it does not fit; else 0.
    pub shortfall_bytes: u64,
}

pub fn fit(req: &FitRequest<'_>) -> Result<Fit, PlanError> {
    let m = req.model;
    fraction("memory utilization", req.memory_utilization)?;
    if req.context == 0 {
        return Err(PlanError::Invalid(
            "context must be at least 1 token".into(),
        ));
    }
    if req.context > m.max_context {
        return Err(PlanError::Invalid(format!(
            "context {} is longer than {}'s {} tokens",
            req.context, m.name, m.max_context
        )));
    }
    if !TENSOR_PARALLEL.contains(&req.gpus) {
        return Err(PlanError::Invalid(format!(
            "GPUs per replica must be one of 1, 2, 4, 8 (tensor parallel), got {}",
            req.gpus
        )));
    }
    if !m.attention_heads.is_multiple_of(req.gpus) {
        return Err(PlanError::Invalid(format!(
            "{} has {} attention heads, which {} GPUs cannot split evenly",
            m.name, m.attention_heads, req.gpus
        )));
    }
    let vram = req.gpu.vram_bytes() * req.gpus as u64;
    let usable = (vram as f64 * req.memory_utilization).floor() as u64;
    let weights = weight_bytes(m.params, req.quant);
    let per_token = kv_bytes_per_token(
        m.layers.into(),
        m.kv_heads.into(),
        m.head_dim.into(),
        req.kv_dtype.bytes(),
    );
    let per_seq = kv_cache_bytes(per_token, req.context.into(), 1)?;
    let budget = usable.saturating_sub(weights);
    let max_sequences = budget / per_seq;
    Ok(Fit {
        model: m.name,
        quant: req.quant.name(),
        kv_dtype: req.kv_dtype.name(),
        gpu: req.gpu.name,
        gpus: req.gpus,
        context_tokens: req.context,
        vram_bytes: vram,
        usable_bytes: usable,
        weights_bytes: weights,
        kv_bytes_per_token: per_token,
        kv_bytes_per_sequence: per_seq,
        kv_budget_bytes: budget,
        max_sequences,
        fits: max_sequences >= 1,
        shortfall_bytes: weights.saturating_add(per_seq).saturating_sub(usable),
    })
}

/// The fit, or an error saying by how much it misses and what would fit instead.
pub fn require_fit(req: &FitRequest<'_>) -> Result<Fit, PlanError> {
    let f = fit(req)?;
    if f.fits {
        return Ok(f);
    }
    let mut alternatives = Vec::new();
    if let Some(n) = TENSOR_PARALLEL
        .iter()
        .copied()
        .filter(|&n| n > req.gpus)
        .find(|&n| fit(&FitRequest { gpus: n, ..*req }).is_ok_and(|f| f.fits))
    {
        alternatives.push(format!("on {n}× {} (tensor parallel)", req.gpu.name));
    }
    if let Some(q) = Quant::ALL
        .iter()
        .copied()
        .filter(|q| q.bits() < req.quant.bits())
        .rev()
        .find(|&q| fit(&FitRequest { quant: q, ..*req }).is_ok_and(|f| f.fits))
    {
        alternatives.push(format!("at {} on {}× {}", q.name(), req.gpus, req.gpu.name));
    }
    let hint = if alternatives.is_empty() {
        String::new()
    } else {
        format!(". It fits {}", alternatives.join(", or "))
    };
    Err(PlanError::DoesNotFit(format!(
        "{} ({}) does not fit on {}× {}: it needs {} of weights + {} of KV cache for one \
         {}-token sequence = {}, but {}× {} gives {} usable ({} × {:.2}): short by {}{hint}",
        f.model,
        f.quant,
        f.gpus,
        f.gpu,
        format_bytes(f.weights_bytes),
        format_bytes(f.kv_bytes_per_sequence),
        f.context_tokens,
        format_bytes(f.weights_bytes + f.kv_bytes_per_sequence),
        f.gpus,
        f.gpu,
        format_bytes(f.usable_bytes),
        format_bytes(f.vram_bytes),
        req.memory_utilization,
        format_bytes(f.shortfall_bytes),
    )))
}

/// The fit on every GPU preset; an error naming the closest miss when it fits none of them.
pub fn fit_each_gpu(
    base: &FitRequest<'_>,
    gpus: &'static [GpuPreset],
) -> Result<Vec<Fit>, PlanError> {
    let fits = gpus
        .iter()
        .map(|gpu| fit(&FitRequest { gpu, ..*base }))
        .collect::<Result<Vec<_>, _>>()?;
    if fits.iter().any(|f| f.fits) {
        return Ok(fits);
    }
    // The largest GPU misses by the least; its error says by how much and what would fit.
    match gpus.iter().max_by_key(|g| g.vram_mib) {
        Some(gpu) => require_fit(&FitRequest { gpu, ..*base }).map(|_| fits),
        None => Err(PlanError::Invalid("no GPU presets".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::{gpu_by_name, model_by_name, GPUS};
    use crate::units::GIB;

    #[test]
    fn source_document_kv_example_is_8_gib_not_430_mb() {
        // 32 layers × 32 heads × 2 (K,V) × 128 head_dim × 2 bytes = 524,288 B = 512 KiB a token;
        // × 2,048 tokens = 1,073,741,824 B = 1 GiB a sequence; × 8 sequences = 8 GiB.
        // The document's "≈ 430 MB" is off by a factor of 20.
        let per_token = kv_bytes_per_token(32, 32, 128, 2);
        assert_eq!(per_token, 524_288);
        let total = kv_cache_bytes(per_token, 2_048, 8).unwrap();
        assert_eq!(total, 8_589_934_592);
        assert_eq!(total, 8 * GIB);
        assert!(total > 19 * 430_000_000);
        // llama-2-7b has exactly that shape (multi-head attention).
        let m = model_by_name("llama-2-7b").unwrap();
        assert_eq!(
            kv_bytes_per_token(m.layers.into(), m.kv_heads.into(), m.head_dim.into(), 2),
            per_token
        );
    }

    #[test]
    fn grouped_query_attention_shrinks_the_cache() {
        // llama-3.1-8b: 32 × 8 KV heads × 2 × 128 × 2 = 131,072 B = 128 KiB a token,
        // a quarter of llama-2-7b's; 8,192 tokens → exactly 1 GiB a sequence.
        let m = model_by_name("llama-3.1-8b").unwrap();
        let t = kv_bytes_per_token(m.layers.into(), m.kv_heads.into(), m.head_dim.into(), 2);
        assert_eq!(t, 131_072);
        assert_eq!(kv_cache_bytes(t, 8_192, 1).unwrap(), GIB);
        // llama-3.1-70b: 80 × 8 × 2 × 128 × 2 = 327,680 B = 320 KiB a token.
        let m = model_by_name("llama-3.1-70b").unwrap();
        let t = kv_bytes_per_token(m.layers.into(), m.kv_heads.into(), m.head_dim.into(), 2);
        assert_eq!(t, 327_680);
        assert!(kv_cache_bytes(u64::MAX, 2, 1).is_err());
    }

    #[test]
    fn weights_by_quantization() {
        // 8.03e9 params: fp16 16.06e9 B, fp8/int8 8.03e9 B, int4 4.015e9 B.
        assert_eq!(weight_bytes(8_030_000_000, Quant::Fp16), 16_060_000_000);
        assert_eq!(weight_bytes(8_030_000_000, Quant::Fp8), 8_030_000_000);
        assert_eq!(weight_bytes(8_030_000_000, Quant::Int8), 8_030_000_000);
        assert_eq!(weight_bytes(8_030_000_000, Quant::Int4), 4_015_000_000);
    }

    fn req<'a>(model: &str, quant: Quant, gpu: &str, gpus: u32, context: u32) -> FitRequest<'a> {
        FitRequest {
            model: model_by_name(model).unwrap(),
            quant,
            kv_dtype: KvDtype::Fp16,
            context,
            gpu: gpu_by_name(gpu).unwrap(),
            gpus,
            memory_utilization: 0.9,
        }
    }

    #[test]
    fn llama_8b_fp16_on_an_a100_80gb() {
        // usable = 81,920 MiB × 2^20 × 0.9 = 77,309,411,328 B (72 GiB);
        // weights 16,060,000,000 B; KV budget 61,249,411,328 B;
        // ÷ 1 GiB a sequence at 8,192 tokens = 57.04 → 57 sequences.
        let f = fit(&req("llama-3.1-8b", Quant::Fp16, "a100-80gb", 1, 8192)).unwrap();
        assert_eq!(f.usable_bytes, 77_309_411_328);
        assert_eq!(f.weights_bytes, 16_060_000_000);
        assert_eq!(f.kv_budget_bytes, 61_249_411_328);
        assert_eq!(f.max_sequences, 57);
        assert!(f.fits);
        assert_eq!(f.shortfall_bytes, 0);
    }

    #[test]
    fn llama_70b_fp16_does_not_fit_one_h100_and_says_by_how_much() {
        // usable = ⌊81,559 MiB × 2^20 × 0.9⌋ = 76,968,728,985 B; weights = 70.55e9 × 2 =
        // 141,100,000,000 B; one 8,192-token sequence = 327,680 × 8,192 = 2,684,354,560 B;
        // short by 141,100,000,000 + 2,684,354,560 − 76,968,728,985 = 66,815,625,575 B
        // (62.23 GiB).
        let r = req("llama-3.1-70b", Quant::Fp16, "h100-80gb", 1, 8192);
        let f = fit(&r).unwrap();
        assert!(!f.fits);
        assert_eq!(f.max_sequences, 0);
        assert_eq!(f.shortfall_bytes, 66_815_625_575);
        let err = require_fit(&r).unwrap_err().to_string();
        assert!(err.contains("does not fit on 1× h100-80gb"), "{err}");
        assert!(err.contains("short by 62.23 GiB"), "{err}");
        // On 2: ⌊2 × 81,559 MiB × 0.9⌋ = 153,937,457,971 usable > 143,784,354,560 needed.
        // At fp8 on 1 (the widest format that fits): 70,550,000,000 + 2,684,354,560 =
        // 73,234,354,560 B ≤ 76,968,728,985 usable.
        assert!(
            err.contains("It fits on 2× h100-80gb (tensor parallel)"),
            "{err}"
        );
        assert!(err.ends_with("or at fp8 on 1× h100-80gb"), "{err}");
        let two = fit(&FitRequest { gpus: 2, ..r }).unwrap();
        // (153,937,457,971 − 141,100,000,000) / 2,684,354,560 = 4.78 → 4 sequences.
        assert_eq!(two.max_sequences, 4);
    }

    #[test]
    fn impossible_inputs_are_errors() {
        let r = req("llama-3.1-8b", Quant::Fp16, "l4", 1, 8192);
        assert!(fit(&FitRequest {
            context: 200_000,
            ..r
        })
        .is_err());
        assert!(fit(&FitRequest { gpus: 3, ..r }).is_err());
        assert!(fit(&FitRequest {
            memory_utilization: 1.2,
            ..r
        })
        .is_err());
        // qwen2.5-7b has 28 heads: 8 GPUs cannot split them.
        let q = req("qwen2.5-7b", Quant::Fp16, "l4", 8, 4096);
        assert!(fit(&q)
            .unwrap_err()
            .to_string()
            .contains("28 attention heads"));
    }

    #[test]
    fn a_model_that_fits_no_gpu_names_the_closest_miss() {
        // qwen2.5-72b at fp16: 145,420,000,000 B of weights + 10,737,418,240 B for one
        // 32,768-token sequence. None of the four 24 GiB cards holds it, and the error names
        // the largest of them; the mi300x (⌊196,592 MiB × 0.9⌋ = 185,527,487,692 B) does.
        let base = req("qwen2.5-72b", Quant::Fp16, "l4", 1, 32_768);
        let small: &'static [crate::presets::GpuPreset] = &GPUS[..4];
        let err = fit_each_gpu(&base, small).unwrap_err().to_string();
        assert!(err.contains("does not fit on 1× rtx3090"), "{err}");
        assert!(err.contains("short by"), "{err}");
        let all = fit_each_gpu(&base, GPUS).unwrap();
        assert!(all.iter().any(|f| f.fits && f.gpu == "mi300x"));
    }
}
