//! `switchyard plan`: what to rent and what to charge, from the source document's formulas
//! (in `switchyard-planner`) over presets and measured inputs: a `switchyard bench` result
//! for tokens/s, the usage ledger for the token mix and request rate.

mod capacity;
mod cost;
mod fit;
mod kv;
mod presets;

use crate::error::CliError;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use switchyard_loadgen::BenchReport;
use switchyard_planner::capacity::{gpus_needed, replicas_for_concurrency, CapacityInput};
use switchyard_planner::cost::{cost_per_million, tier_margins, CostInput, TierPrice, TokenMix};
use switchyard_planner::memory::{
    fit_each_gpu, kv_bytes_per_token, kv_cache_bytes, require_fit, Fit, FitRequest, TENSOR_PARALLEL,
};
use switchyard_planner::mix::{observe, Observed};
use switchyard_planner::presets::{
    gpu_by_name, model_by_name, GpuPreset, KvDtype, ModelPreset, Quant, GPUS, MODELS,
};
use switchyard_planner::units::{format_bytes, gib};

use crate::admin_client::{print_json, print_table};
use crate::inputs::{read_bench, read_ledger, thousands};

use capacity::CapacityArgs;
use cost::CostArgs;
use fit::FitArgs;
use kv::KvArgs;

#[derive(Args)]
pub struct PlanArgs {
    #[command(subcommand)]
    command: PlanCommand,
}

#[derive(Subcommand)]
enum PlanCommand {
    /// The presets: model architectures, quantization formats, GPUs.
    Presets {
        /// Print the result as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// KV-cache size: layers × kv_heads × 2 × head_dim × dtype bytes × tokens × sequences.
    Kv(KvArgs),
    /// Whether a model fits on a GPU, and how many sequences of a context length run at once.
    Fit(FitArgs),
    /// GPUs needed for a target QPS and token mix, with headroom.
    Capacity(CapacityArgs),
    /// Cost of goods per 1M tokens, and the margin of each tier.
    Cost(CostArgs),
}

/// The model being planned for (also used by `switchyard providers`).
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// A model preset (`switchyard plan presets`).
    #[arg(long)]
    pub model: Option<String>,
    /// Weight format: int4, int8, fp8, fp16.
    #[arg(long, default_value = "fp16")]
    pub quant: String,
    /// KV-cache element type: fp16 or fp8.
    #[arg(long, default_value = "fp16")]
    pub kv_dtype: String,
    /// Tokens per sequence (prompt + completion) to plan for.
    #[arg(long, default_value_t = 8192)]
    pub context: u32,
    /// Share of each GPU's memory the runtime may use (vLLM's --gpu-memory-utilization).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    pub memory_utilization: f64,
}

pub struct ModelChoice {
    pub model: &'static ModelPreset,
    pub quant: Quant,
    pub kv_dtype: KvDtype,
    pub context: u32,
    pub memory_utilization: f64,
}

impl ModelArgs {
    /// `None` without --model.
    pub fn resolve(&self) -> Result<Option<ModelChoice>, CliError> {
        let Some(name) = &self.model else {
            return Ok(None);
        };
        Ok(Some(ModelChoice {
            model: model_by_name(name).map_err(|e| e.to_string())?,
            quant: Quant::parse(&self.quant).map_err(|e| e.to_string())?,
            kv_dtype: KvDtype::parse(&self.kv_dtype).map_err(|e| e.to_string())?,
            context: self.context,
            memory_utilization: self.memory_utilization,
        }))
    }
}

impl ModelChoice {
    fn request<'a>(&'a self, gpu: &'a GpuPreset, gpus: u32) -> FitRequest<'a> {
        FitRequest {
            model: self.model,
            quant: self.quant,
            kv_dtype: self.kv_dtype,
            context: self.context,
            gpu,
            gpus,
            memory_utilization: self.memory_utilization,
        }
    }
}

pub async fn run(args: PlanArgs) -> Result<(), CliError> {
    match args.command {
        PlanCommand::Presets { json } => presets::presets(json),
        PlanCommand::Kv(a) => kv::kv(a),
        PlanCommand::Fit(a) => fit::fit_cmd(a),
        PlanCommand::Capacity(a) => capacity::capacity(a).await,
        PlanCommand::Cost(a) => cost::cost(a).await,
    }
}

fn err(e: impl ToString) -> String {
    e.to_string()
}

/// Whole numbers with thousands separators ("1,600"), others to the cent ("0.75").
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let sign = if v < 0.0 { "-" } else { "" };
        format!("{sign}{}", thousands(v.abs() as u64))
    } else {
        format!("{v:.2}")
    }
}

fn usd4(v: f64) -> String {
    if v < 0.0 {
        format!("-${:.4}", -v)
    } else {
        format!("${v:.4}")
    }
}
