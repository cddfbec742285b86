//! Presets: the architectures of common open models (7–70B), quantization formats and GPUs.
//!
//! Architectures are the published `config.json` values (layers, hidden size, attention and
//! KV heads, head dim, vocabulary, native context); parameter counts are the published totals,
//! rounded to 10 M. GPU memory is the total the driver reports (`nvidia-smi`/`rocm-smi`), which
//! is a little below the marketing "80 GB" on some cards. Prices are typical on-demand
//! marketplace rates per GPU-hour at the time of writing: a starting point only; pass the
//! price you actually pay (`--price-per-hour`).

use serde::Serialize;

use crate::error::PlanError;

/// One model architecture. `kv_heads < heads` is grouped-query attention: the KV cache holds
/// `kv_heads` heads per layer, not `heads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ModelPreset {
    pub name: &'static str,
    /// Total parameters (weights), as published.
    pub params: u64,
    pub layers: u32,
    pub hidden_size: u32,
    pub attention_heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub vocab_size: u32,
    /// The longest context the model was trained for (without extra RoPE scaling).
    pub max_context: u32,
}

/// A table row: the arguments are the columns, in the struct's order.
#[allow(clippy::too_many_arguments)]
const fn model(
    name: &'static str,
    params: u64,
    layers: u32,
    hidden_size: u32,
    attention_heads: u32,
    kv_heads: u32,
    head_dim: u32,
    vocab_size: u32,
    max_context: u32,
) -> ModelPreset {
    ModelPreset {
        name,
        params,
        layers,
        hidden_size,
        attention_heads,
        kv_heads,
        head_dim,
        vocab_size,
        max_context,
    }
}

/// From smallest to largest.
pub const MODELS: &[ModelPreset] = &[
    // Multi-head attention (kv_heads = heads): the source document's KV example shape.
    model(
        "llama-2-7b",
        6_740_000_000,
        32,
        4096,
        32,
        32,
        128,
        32_000,
        4_096,
    ),
    model(
        "mistral-7b",
        7_250_000_000,
        32,
        4096,
        32,
        8,
        128,
        32_768,
        32_768,
    ),
    model(
        "qwen2.5-7b",
        7_620_000_000,
        28,
        3584,
        28,
        4,
        128,
        152_064,
        32_768,
    ),
    model(
        "llama-3.1-8b",
        8_030_000_000,
        32,
        4096,
        32,
        8,
        128,
        128_256,
        131_072,
    ),
    model(
        "gemma-2-9b",
        9_240_000_000,
        42,
        3584,
        16,
        8,
        256,
        256_000,
        8_192,
    ),
    model(
        "mistral-nemo-12b",
        12_250_000_000,
        40,
        5120,
        32,
        8,
        128,
        131_072,
        131_072,
    ),
    model(
        "qwen2.5-14b",
        14_770_000_000,
        48,
        5120,
        40,
        8,
        128,
        152_064,
        32_768,
    ),
    model(
        "gemma-2-27b",
        27_230_000_000,
        46,
        4608,
        32,
        16,
        128,
        256_000,
        8_192,
    ),
    model(
        "qwen2.5-32b",
        32_760_000_000,
        64,
        5120,
        40,
        8,
        128,
        152_064,
        32_768,
    ),
    // A mixture of experts: all experts' weights are resident, so memory is by total params.
    model(
        "mixtral-8x7b",
        46_700_000_000,
        32,
        4096,
        32,
        8,
        128,
        32_000,
        32_768,
    ),
    model(
        "llama-3.1-70b",
        70_550_000_000,
        80,
        8192,
        64,
        8,
        128,
        128_256,
        131_072,
    ),
    model(
        "qwen2.5-72b",
        72_710_000_000,
        80,
        8192,
        64,
        8,
        128,
        152_064,
        32_768,
    ),
];

/// Weight formats, by storage per weight. INT4 (GPTQ/AWQ-style) also stores a scale per group
/// of weights (about 3% more at group size 128), which this planner leaves to the memory
/// utilisation margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    Int4,
    Int8,
    Fp8,
    Fp16,
}

impl Quant {
    pub const ALL: [Quant; 4] = [Quant::Int4, Quant::Int8, Quant::Fp8, Quant::Fp16];

    pub fn name(self) -> &'static str {
        match self {
            Quant::Int4 => "int4",
            Quant::Int8 => "int8",
            Quant::Fp8 => "fp8",
            Quant::Fp16 => "fp16",
        }
    }

    /// Bits per weight: 4, 8, 8, 16 (so bytes per weight 0.5, 1, 1, 2).
    pub fn bits(self) -> u64 {
        match self {
            Quant::Int4 => 4,
            Quant::Int8 | Quant::Fp8 => 8,
            Quant::Fp16 => 16,
        }
    }

    pub fn bytes_per_weight(self) -> f64 {
        self.bits() as f64 / 8.0
    }

    pub fn parse(s: &str) -> Result<Quant, PlanError> {
        match s.to_ascii_lowercase().as_str() {
            "int4" | "q4" | "awq" | "gptq" => Ok(Quant::Int4),
            "int8" | "q8" => Ok(Quant::Int8),
            "fp8" => Ok(Quant::Fp8),
            "fp16" | "bf16" | "f16" => Ok(Quant::Fp16),
            _ => Err(unknown(
                "quantization",
                s,
                Quant::ALL.map(Quant::name).iter(),
            )),
        }
    }
}

/// The KV cache's element type: FP16/BF16 by default; FP8 halves it (vLLM `--kv-cache-dtype fp8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KvDtype {
    Fp16,
    Fp8,
}

impl KvDtype {
    pub fn name(self) -> &'static str {
        match self {
            KvDtype::Fp16 => "fp16",
            KvDtype::Fp8 => "fp8",
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            KvDtype::Fp16 => 2,
            KvDtype::Fp8 => 1,
        }
    }

    pub fn parse(s: &str) -> Result<KvDtype, PlanError> {
        match s.to_ascii_lowercase().as_str() {
            "fp16" | "bf16" | "f16" => Ok(KvDtype::Fp16),
            "fp8" | "int8" => Ok(KvDtype::Fp8),
            _ => Err(unknown("KV cache dtype", s, ["fp16", "fp8"].iter())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GpuPreset {
    pub name: &'static str,
    /// Total device memory as the driver reports it, MiB.
    pub vram_mib: u64,
    /// Typical on-demand marketplace price, USD per GPU-hour (planning estimate, f64).
    pub price_per_hour: f64,
}

impl GpuPreset {
    pub fn vram_bytes(&self) -> u64 {
        self.vram_mib * crate::units::MIB
    }
}

/// From smallest to largest memory.
pub const GPUS: &[GpuPreset] = &[
    GpuPreset {
        name: "a10g",
        vram_mib: 23_028,
        price_per_hour: 0.75,
    },
    GpuPreset {
        name: "l4",
        vram_mib: 23_034,
        price_per_hour: 0.50,
    },
    GpuPreset {
        name: "rtx4090",
        vram_mib: 24_564,
        price_per_hour: 0.40,
    },
    GpuPreset {
        name: "rtx3090",
        vram_mib: 24_576,
        price_per_hour: 0.22,
    },
    GpuPreset {
        name: "a100-40gb",
        vram_mib: 40_960,
        price_per_hour: 1.10,
    },
    GpuPreset {
        name: "l40s",
        vram_mib: 46_068,
        price_per_hour: 0.85,
    },
    GpuPreset {
        name: "rtx-a6000",
        vram_mib: 49_140,
        price_per_hour: 0.50,
    },
    GpuPreset {
        name: "h100-80gb",
        vram_mib: 81_559,
        price_per_hour: 2.80,
    },
    GpuPreset {
        name: "a100-80gb",
        vram_mib: 81_920,
        price_per_hour: 1.40,
    },
    GpuPreset {
        name: "h200",
        vram_mib: 143_771,
        price_per_hour: 3.60,
    },
    GpuPreset {
        name: "mi300x",
        vram_mib: 196_592,
        price_per_hour: 2.50,
    },
];

fn unknown<'a>(
    kind: &'static str,
    name: &str,
    known: impl Iterator<Item = &'a &'a str>,
) -> PlanError {
    PlanError::Unknown {
        kind,
        name: name.to_string(),
        known: known.copied().collect::<Vec<_>>().join(", "),
    }
}

/// A model preset by name (case-insensitive).
pub fn model_by_name(name: &str) -> Result<&'static ModelPreset, PlanError> {
    MODELS
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| unknown("model", name, MODELS.iter().map(|m| &m.name)))
}

/// A GPU preset by name (case-insensitive; "h100" and "a100" mean the 80 GB cards).
pub fn gpu_by_name(name: &str) -> Result<&'static GpuPreset, PlanError> {
    let wanted = match name.to_ascii_lowercase().as_str() {
        "h100" => "h100-80gb".to_string(),
        "a100" => "a100-80gb".to_string(),
        "a6000" => "rtx-a6000".to_string(),
        other => other.to_string(),
    };
    GPUS.iter()
        .find(|g| g.name == wanted)
        .ok_or_else(|| unknown("GPU", name, GPUS.iter().map(|g| &g.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_consistent() {
        for m in MODELS {
            // Grouped-query attention: query heads are a multiple of KV heads.
            assert!(m.kv_heads <= m.attention_heads, "{}", m.name);
            assert_eq!(m.attention_heads % m.kv_heads, 0, "{}", m.name);
            // Heads × head dim is the hidden size, except where config.json sets head_dim on
            // its own: Gemma 2 (9B: 16 × 256 = 4,096 ≠ 3,584; 27B: 32 × 128 = 4,096 ≠
            // 4,608) and Mistral NeMo (32 × 128 = 4,096 ≠ 5,120). There the KV cache follows
            // head_dim, not hidden size / heads.
            if !(m.name.starts_with("gemma") || m.name == "mistral-nemo-12b") {
                assert_eq!(m.attention_heads * m.head_dim, m.hidden_size, "{}", m.name);
            }
        }
        for g in GPUS {
            assert!(g.price_per_hour > 0.0 && g.vram_mib > 16_000, "{}", g.name);
        }
    }

    #[test]
    fn architectures_match_the_published_configs() {
        // Written out by hand from each model's config.json (num_hidden_layers,
        // num_key_value_heads, head_dim) and its published parameter count, not derived from
        // the table above: a typo in either shows up here. KV bytes a token at FP16 =
        // layers × kv_heads × 2 (K,V) × head_dim × 2 bytes.
        let expected: [(&str, u32, u32, u32, u64, u64); 12] = [
            // name, layers, kv heads, head dim, KV bytes a token, parameters (10 M)
            ("llama-2-7b", 32, 32, 128, 524_288, 674), // 32·32·512
            ("mistral-7b", 32, 8, 128, 131_072, 725),  // 32·8·512
            ("qwen2.5-7b", 28, 4, 128, 57_344, 762),   // 28·4·512
            ("llama-3.1-8b", 32, 8, 128, 131_072, 803), // 32·8·512
            ("gemma-2-9b", 42, 8, 256, 344_064, 924),  // 42·8·1,024
            ("mistral-nemo-12b", 40, 8, 128, 163_840, 1225), // 40·8·512
            ("qwen2.5-14b", 48, 8, 128, 196_608, 1477), // 48·8·512
            ("gemma-2-27b", 46, 16, 128, 376_832, 2723), // 46·16·512
            ("qwen2.5-32b", 64, 8, 128, 262_144, 3276), // 64·8·512
            ("mixtral-8x7b", 32, 8, 128, 131_072, 4670), // 32·8·512
            ("llama-3.1-70b", 80, 8, 128, 327_680, 7055), // 80·8·512
            ("qwen2.5-72b", 80, 8, 128, 327_680, 7271), // 80·8·512
        ];
        assert_eq!(MODELS.len(), expected.len());
        for (m, (name, layers, kv_heads, head_dim, kv_bytes, params)) in MODELS.iter().zip(expected)
        {
            assert_eq!(m.name, name);
            assert_eq!(
                (m.layers, m.kv_heads, m.head_dim),
                (layers, kv_heads, head_dim),
                "{name}"
            );
            let per_token = crate::memory::kv_bytes_per_token(
                m.layers.into(),
                m.kv_heads.into(),
                m.head_dim.into(),
                2,
            );
            assert_eq!(per_token, kv_bytes, "{name}");
            assert_eq!(m.params, params * 10_000_000, "{name}");
        }
        // Hidden sizes, heads and vocabularies of the ones the source document's examples use.
        let l8 = model_by_name("llama-3.1-8b").unwrap();
        assert_eq!(
            (l8.hidden_size, l8.attention_heads, l8.vocab_size),
            (4096, 32, 128_256)
        );
        let l70 = model_by_name("llama-3.1-70b").unwrap();
        assert_eq!((l70.hidden_size, l70.attention_heads), (8192, 64));
        let q72 = model_by_name("qwen2.5-72b").unwrap();
        assert_eq!((q72.hidden_size, q72.attention_heads), (8192, 64));
    }

    #[test]
    fn bytes_per_weight() {
        assert_eq!(Quant::Int4.bytes_per_weight(), 0.5);
        assert_eq!(Quant::Int8.bytes_per_weight(), 1.0);
        assert_eq!(Quant::Fp8.bytes_per_weight(), 1.0);
        assert_eq!(Quant::Fp16.bytes_per_weight(), 2.0);
        assert_eq!(Quant::parse("BF16").unwrap(), Quant::Fp16);
        assert_eq!(KvDtype::Fp8.bytes(), 1);
    }

    #[test]
    fn lookups_name_the_known_presets() {
        assert_eq!(model_by_name("Llama-3.1-8B").unwrap().layers, 32);
        assert_eq!(gpu_by_name("h100").unwrap().name, "h100-80gb");
        let err = model_by_name("gpt-5").unwrap_err().to_string();
        assert!(
            err.starts_with("unknown model 'gpt-5'; known: llama-2-7b, "),
            "{err}"
        );
        let err = Quant::parse("fp4").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown quantization 'fp4'; known: int4, int8, fp8, fp16"
        );
        assert!(gpu_by_name("tpu").is_err());
    }
}
