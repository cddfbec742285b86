//! `switchyard plan`: what to rent and what to charge, from the source document's formulas
//! (in `switchyard-planner`) over presets and measured inputs: a `switchyard bench` result
//! for tokens/s, the usage ledger for the token mix and request rate.

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
    pub fn resolve(&self) -> Result<Option<ModelChoice>, String> {
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

#[derive(Args)]
struct KvArgs {
    /// Take layers, KV heads and head dim from a model preset.
    #[arg(long, conflicts_with_all = ["layers", "kv_heads", "head_dim"])]
    model: Option<String>,
    #[arg(long)]
    layers: Option<u64>,
    /// KV heads (= attention heads without grouped-query attention).
    #[arg(long)]
    kv_heads: Option<u64>,
    #[arg(long)]
    head_dim: Option<u64>,
    /// Bytes per element (2 for FP16/BF16, 1 for FP8).
    #[arg(long, default_value_t = 2)]
    dtype_bytes: u64,
    /// Tokens per sequence (prompt + generated).
    #[arg(long)]
    tokens: u64,
    /// Sequences held at once.
    #[arg(long, default_value_t = 1)]
    sequences: u64,
    /// Print the result as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FitArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// One GPU preset (default: every preset).
    #[arg(long)]
    gpu: Option<String>,
    /// GPUs per replica (tensor parallel): 1, 2, 4 or 8.
    #[arg(long, default_value_t = 1)]
    gpus: u32,
    /// Print the result as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// Where tokens/s per GPU comes from.
#[derive(Args)]
struct ThroughputArgs {
    /// Measured tokens/s (prompt + completion) of one GPU.
    #[arg(long, allow_negative_numbers = true, conflicts_with = "bench")]
    tokens_per_sec: Option<f64>,
    /// A `switchyard bench --json` result: its total tokens/s, divided by --bench-gpus.
    #[arg(long)]
    bench: Option<PathBuf>,
    /// GPUs behind the benchmarked endpoint.
    #[arg(long, default_value_t = 1, requires = "bench")]
    bench_gpus: u32,
}

/// Where the token mix (and request rate) comes from.
#[derive(Args)]
struct MixArgs {
    /// Average prompt tokens per request.
    #[arg(long, allow_negative_numbers = true, requires = "completion_tokens")]
    prompt_tokens: Option<f64>,
    /// Average completion tokens per request.
    #[arg(long, allow_negative_numbers = true, requires = "prompt_tokens")]
    completion_tokens: Option<f64>,
    /// The usage ledger: the gateway's SQLite file, or `switchyard usage records --format json`.
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// Only this model's rows of the ledger.
    #[arg(long, requires = "ledger")]
    ledger_model: Option<String>,
}

#[derive(Args)]
struct CapacityArgs {
    /// Requests per second to serve (default: the rate the ledger observed).
    #[arg(long, allow_negative_numbers = true)]
    qps: Option<f64>,
    #[command(flatten)]
    mix: MixArgs,
    #[command(flatten)]
    throughput: ThroughputArgs,
    /// Batch efficiency, 0–1 (the source document: 0.6–0.9).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.75)]
    efficiency: f64,
    /// Multiplier for spikes and tail latency (the source document: 1.3–1.5).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.3)]
    headroom: f64,
    /// GPU preset: its price, and with --model the KV-cache check.
    #[arg(long)]
    gpu: Option<String>,
    /// GPUs per replica (tensor parallel: 1, 2, 4 or 8), for a model too big for one GPU.
    /// GPUs are then rented in whole replicas.
    #[arg(long, default_value_t = 1, requires = "gpu")]
    gpus: u32,
    /// USD per GPU-hour (default: the GPU preset's typical price).
    #[arg(long, allow_negative_numbers = true)]
    price_per_hour: Option<f64>,
    /// Seconds a request takes, for the KV-cache check (default: the bench's or ledger's mean).
    #[arg(long, allow_negative_numbers = true)]
    request_seconds: Option<f64>,
    #[command(flatten)]
    model: ModelArgs,
    /// Print the result as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CostArgs {
    /// USD per GPU-hour (default: the --gpu preset's typical price).
    #[arg(long, allow_negative_numbers = true)]
    price_per_hour: Option<f64>,
    /// GPU preset, for its typical price.
    #[arg(long)]
    gpu: Option<String>,
    #[command(flatten)]
    throughput: ThroughputArgs,
    /// Share of the hour the GPU serves at that rate, 0–1.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.6)]
    utilization: f64,
    /// Other costs per 1M tokens, USD: bandwidth, gateway, monitoring, fees (doc: 0.10–0.30).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.10)]
    overhead: f64,
    /// Tiers from this gateway config (default: the built-in hobby/pro/business).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    mix: MixArgs,
    /// Print the result as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: PlanArgs) -> Result<(), String> {
    match args.command {
        PlanCommand::Presets { json } => presets(json),
        PlanCommand::Kv(a) => kv(a),
        PlanCommand::Fit(a) => fit_cmd(a),
        PlanCommand::Capacity(a) => capacity(a).await,
        PlanCommand::Cost(a) => cost(a).await,
    }
}

fn err(e: impl ToString) -> String {
    e.to_string()
}

fn presets(json: bool) -> Result<(), String> {
    if json {
        let quants: Vec<Value> = Quant::ALL
            .iter()
            .map(|q| json!({"name": q.name(), "bytes_per_weight": q.bytes_per_weight()}))
            .collect();
        return print_json(&json!({"models": MODELS, "quantizations": quants, "gpus": GPUS}));
    }
    let models: Vec<Vec<String>> = MODELS
        .iter()
        .map(|m| {
            vec![
                m.name.to_string(),
                format!("{:.2}B", m.params as f64 / 1e9),
                m.layers.to_string(),
                m.hidden_size.to_string(),
                m.attention_heads.to_string(),
                m.kv_heads.to_string(),
                m.head_dim.to_string(),
                thousands(m.vocab_size.into()),
                thousands(m.max_context.into()),
                format_bytes(kv_bytes_per_token(
                    m.layers.into(),
                    m.kv_heads.into(),
                    m.head_dim.into(),
                    2,
                )),
            ]
        })
        .collect();
    print_table(
        &[
            "MODEL",
            "PARAMS",
            "LAYERS",
            "HIDDEN",
            "HEADS",
            "KV_HEADS",
            "HEAD_DIM",
            "VOCAB",
            "CONTEXT",
            "KV/TOKEN(FP16)",
        ],
        &models,
    );
    println!();
    let quants: Vec<Vec<String>> = Quant::ALL
        .iter()
        .map(|q| vec![q.name().into(), format!("{}", q.bytes_per_weight())])
        .collect();
    print_table(&["QUANT", "BYTES/WEIGHT"], &quants);
    println!();
    let gpus: Vec<Vec<String>> = GPUS
        .iter()
        .map(|g| {
            vec![
                g.name.into(),
                format!("{:.2} GiB", gib(g.vram_bytes())),
                format!("${:.2}", g.price_per_hour),
            ]
        })
        .collect();
    print_table(&["GPU", "VRAM", "TYPICAL $/H"], &gpus);
    Ok(())
}

fn kv(a: KvArgs) -> Result<(), String> {
    let (layers, kv_heads, head_dim, what) = match &a.model {
        Some(name) => {
            let m = model_by_name(name).map_err(err)?;
            (
                m.layers.into(),
                m.kv_heads.into(),
                m.head_dim.into(),
                m.name.to_string(),
            )
        }
        None => match (a.layers, a.kv_heads, a.head_dim) {
            (Some(l), Some(k), Some(h)) => (l, k, h, "custom".to_string()),
            _ => {
                return Err(
                    "give --model, or all of --layers, --kv-heads and --head-dim".to_string(),
                )
            }
        },
    };
    if [
        layers,
        kv_heads,
        head_dim,
        a.dtype_bytes,
        a.tokens,
        a.sequences,
    ]
    .contains(&0)
    {
        return Err(
            "layers, KV heads, head dim, dtype bytes, tokens and sequences must all be > 0".into(),
        );
    }
    let per_token = kv_bytes_per_token(layers, kv_heads, head_dim, a.dtype_bytes);
    let per_seq = kv_cache_bytes(per_token, a.tokens, 1).map_err(err)?;
    let total = kv_cache_bytes(per_token, a.tokens, a.sequences).map_err(err)?;
    if a.json {
        return print_json(&json!({
            "model": what, "layers": layers, "kv_heads": kv_heads, "head_dim": head_dim,
            "dtype_bytes": a.dtype_bytes, "tokens": a.tokens, "sequences": a.sequences,
            "bytes_per_token": per_token, "bytes_per_sequence": per_seq, "bytes": total,
            "gib": gib(total),
        }));
    }
    println!(
        "{what}: {layers} layers × {kv_heads} KV heads × 2 (K,V) × {head_dim} head dim × {} bytes",
        a.dtype_bytes
    );
    print_table(
        &["", "BYTES", "SIZE"],
        &[
            vec![
                "per token".into(),
                thousands(per_token),
                format_bytes(per_token),
            ],
            vec![
                format!("per sequence ({} tokens)", thousands(a.tokens)),
                thousands(per_seq),
                format_bytes(per_seq),
            ],
            vec![
                format!("{} sequences", a.sequences),
                thousands(total),
                format_bytes(total),
            ],
        ],
    );
    Ok(())
}

fn fit_row(f: &Fit) -> Vec<String> {
    vec![
        f.gpu.into(),
        f.gpus.to_string(),
        format!("{:.2} GiB", gib(f.vram_bytes)),
        format!("{:.2} GiB", gib(f.usable_bytes)),
        format!("{:.2} GiB", gib(f.kv_budget_bytes)),
        f.max_sequences.to_string(),
        if f.fits {
            "yes".into()
        } else {
            format!("no, short by {}", format_bytes(f.shortfall_bytes))
        },
    ]
}

fn fit_cmd(a: FitArgs) -> Result<(), String> {
    let choice = a
        .model
        .resolve()?
        .ok_or("--model is required (see `switchyard plan presets`)")?;
    let fits = match &a.gpu {
        Some(name) => {
            let gpu = gpu_by_name(name).map_err(err)?;
            vec![require_fit(&choice.request(gpu, a.gpus)).map_err(err)?]
        }
        None => {
            // `fit_each_gpu` replaces the request's GPU with each preset in turn.
            let any = GPUS.first().ok_or("no GPU presets")?;
            fit_each_gpu(&choice.request(any, a.gpus), GPUS).map_err(err)?
        }
    };
    if a.json {
        return print_json(&json!({ "fits": fits }));
    }
    if let Some(f) = fits.first() {
        println!(
            "{} at {}: {} of weights; KV cache ({}) {} a token, {} per {}-token sequence; {:.0}% of GPU memory usable",
            f.model,
            f.quant,
            format_bytes(f.weights_bytes),
            f.kv_dtype,
            format_bytes(f.kv_bytes_per_token),
            format_bytes(f.kv_bytes_per_sequence),
            thousands(f.context_tokens.into()),
            choice.memory_utilization * 100.0,
        );
        println!();
    }
    let rows: Vec<Vec<String>> = fits.iter().map(fit_row).collect();
    print_table(
        &[
            "GPU",
            "GPUS",
            "VRAM",
            "USABLE",
            "KV_BUDGET",
            "MAX_SEQS",
            "FITS",
        ],
        &rows,
    );
    Ok(())
}

/// tokens/s per GPU and where it came from.
fn throughput(a: &ThroughputArgs, bench: Option<&BenchReport>) -> Result<(f64, String), String> {
    if let Some(t) = a.tokens_per_sec {
        return Ok((t, "--tokens-per-sec".into()));
    }
    match (bench, &a.bench) {
        (Some(b), Some(path)) => {
            if a.bench_gpus == 0 {
                return Err("--bench-gpus must be at least 1".into());
            }
            Ok((
                b.throughput.total_tokens_per_s / a.bench_gpus as f64,
                format!(
                    "measured{}: {} ({} ok requests at {}, {} GPU{})",
                    if b.target.simulated {
                        " on a SIMULATED worker"
                    } else {
                        ""
                    },
                    path.display(),
                    b.requests.ok,
                    match (b.load.concurrency, b.load.rate) {
                        (Some(c), _) => format!("concurrency {c}"),
                        (_, Some(r)) => format!("{r} requests/s"),
                        _ => b.load.mode.clone(),
                    },
                    a.bench_gpus,
                    if a.bench_gpus == 1 { "" } else { "s" }
                ),
            ))
        }
        _ => Err("give --tokens-per-sec or --bench (a `switchyard bench --json` result)".into()),
    }
}

struct Sources {
    bench: Option<BenchReport>,
    observed: Option<(Observed, String)>,
}

async fn load_sources(t: &ThroughputArgs, m: &MixArgs) -> Result<Sources, String> {
    let bench = t.bench.as_deref().map(read_bench).transpose()?;
    let observed = match &m.ledger {
        Some(path) => {
            let rows = read_ledger(path, m.ledger_model.as_deref()).await?;
            let o = observe(&rows).ok_or_else(|| {
                format!(
                    "the ledger {} has no completed request{}",
                    path.display(),
                    m.ledger_model
                        .as_deref()
                        .map(|x| format!(" of model {x}"))
                        .unwrap_or_default()
                )
            })?;
            let from = format!(
                "ledger {} ({} completed requests)",
                path.display(),
                thousands(o.completed)
            );
            Some((o, from))
        }
        None => None,
    };
    Ok(Sources { bench, observed })
}

/// The token mix and where it came from: flags, else the ledger, else the bench.
fn mix(m: &MixArgs, s: &Sources) -> Option<(TokenMix, String)> {
    if let (Some(p), Some(c)) = (m.prompt_tokens, m.completion_tokens) {
        return Some((
            TokenMix {
                prompt_tokens: p,
                completion_tokens: c,
            },
            "--prompt-tokens/--completion-tokens".into(),
        ));
    }
    if let Some((o, from)) = &s.observed {
        return Some((
            TokenMix {
                prompt_tokens: o.avg_prompt_tokens,
                completion_tokens: o.avg_completion_tokens,
            },
            from.clone(),
        ));
    }
    s.bench.as_ref().map(|b| {
        let ok = b.requests.ok.max(1) as f64;
        (
            TokenMix {
                prompt_tokens: b.tokens.ok_prompt as f64 / ok,
                completion_tokens: b.tokens.ok_completion as f64 / ok,
            },
            "the bench result".into(),
        )
    })
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

async fn capacity(a: CapacityArgs) -> Result<(), String> {
    let sources = load_sources(&a.throughput, &a.mix).await?;
    let (rt, rt_from) = throughput(&a.throughput, sources.bench.as_ref())?;
    let (mix, mix_from) = mix(&a.mix, &sources).ok_or(
        "no token mix: give --prompt-tokens and --completion-tokens, --ledger, or --bench",
    )?;
    let (qps, qps_from) = match (a.qps, &sources.observed) {
        (Some(q), _) => (q, "--qps".to_string()),
        (None, Some((o, from))) if o.qps > 0.0 => (o.qps, format!("observed: {from}")),
        _ => return Err("give --qps (or a --ledger whose requests span some time)".into()),
    };
    let c = gpus_needed(&CapacityInput {
        qps,
        prompt_tokens: mix.prompt_tokens,
        completion_tokens: mix.completion_tokens,
        tokens_per_sec_per_gpu: rt,
        batch_efficiency: a.efficiency,
        headroom: a.headroom,
    })
    .map_err(err)?;

    let gpu = a.gpu.as_deref().map(gpu_by_name).transpose().map_err(err)?;
    if !TENSOR_PARALLEL.contains(&a.gpus) {
        return Err(format!(
            "--gpus must be one of 1, 2, 4, 8 (tensor parallel), got {}",
            a.gpus
        ));
    }
    let price = a.price_per_hour.or(gpu.map(|g| g.price_per_hour));
    if let Some(p) = price {
        switchyard_planner::error::non_negative("--price-per-hour", p).map_err(err)?;
    }
    // The KV-cache check (Little's law): needs a model, a GPU and a request duration.
    let memory = match (a.model.resolve()?, gpu) {
        (Some(choice), Some(gpu)) => {
            let f = require_fit(&choice.request(gpu, a.gpus)).map_err(err)?;
            let secs = a
                .request_seconds
                .or(sources
                    .bench
                    .as_ref()
                    .map(|b| b.latency_ms.ttlt.mean / 1000.0))
                .or(sources
                    .observed
                    .as_ref()
                    .map(|(o, _)| o.avg_request_seconds))
                .ok_or("the KV-cache check needs --request-seconds (or --bench / --ledger)")?;
            let (in_flight, replicas) =
                replicas_for_concurrency(qps, secs, f.max_sequences).map_err(err)?;
            Some((f, secs, in_flight, replicas))
        }
        (Some(_), None) => return Err("--model needs --gpu for the KV-cache check".into()),
        _ => None,
    };
    // Throughput and KV cache each need some replicas of `--gpus` GPUs; rent the larger.
    let tp = u64::from(a.gpus);
    let replicas_for_throughput = c.gpus.div_ceil(tp);
    let replicas_total = memory
        .as_ref()
        .map_or(replicas_for_throughput, |(_, _, _, r)| {
            replicas_for_throughput.max(*r)
        });
    let gpus_total = replicas_total * tp;

    if a.json {
        let mut out = json!({
            "inputs": {
                "qps": qps, "qps_from": qps_from,
                "prompt_tokens": mix.prompt_tokens, "completion_tokens": mix.completion_tokens,
                "mix_from": mix_from,
                "tokens_per_sec_per_gpu": rt, "tokens_per_sec_from": rt_from,
                "batch_efficiency": a.efficiency, "headroom": a.headroom,
            },
            "capacity": c,
            "gpus_per_replica": tp,
            "replicas": replicas_total,
            "gpus": gpus_total,
        });
        if let Some((f, secs, in_flight, replicas)) = &memory {
            out["memory"] = json!({
                "fit": f, "request_seconds": secs, "in_flight": in_flight,
                "replicas_for_kv_cache": replicas,
            });
        }
        if let Some(p) = price {
            out["cost"] = json!({
                "gpu": gpu.map(|g| g.name), "price_per_hour": p,
                "per_hour": p * gpus_total as f64, "per_month_730h": p * gpus_total as f64 * 730.0,
            });
        }
        return print_json(&out);
    }
    print_table(
        &["INPUT", "VALUE", "FROM"],
        &[
            vec!["QPS".into(), num(qps), qps_from],
            vec![
                "prompt tokens".into(),
                num(mix.prompt_tokens),
                mix_from.clone(),
            ],
            vec![
                "completion tokens".into(),
                num(mix.completion_tokens),
                mix_from,
            ],
            vec!["tokens/s per GPU".into(), num(rt), rt_from],
            vec!["batch efficiency".into(), num(a.efficiency), String::new()],
            vec!["headroom".into(), num(a.headroom), String::new()],
        ],
    );
    println!();
    println!(
        "tokens/s needed   {} × ({} + {}) = {}",
        num(qps),
        num(mix.prompt_tokens),
        num(mix.completion_tokens),
        num(c.tokens_per_sec_needed)
    );
    println!(
        "per GPU           {} × {} = {} tokens/s",
        num(rt),
        num(a.efficiency),
        num(c.effective_tokens_per_sec_per_gpu)
    );
    println!(
        "GPUs              {:.2}, × {} headroom = {:.2} → {}",
        c.gpus_exact,
        num(a.headroom),
        c.gpus_with_headroom,
        c.gpus
    );
    let replicas_of = |r: u64| {
        let s = if r == 1 { "" } else { "s" };
        if tp == 1 {
            format!("{r} GPU{s}")
        } else {
            format!("{r} replica{s} of {tp} GPUs")
        }
    };
    if let Some((f, secs, in_flight, replicas)) = &memory {
        println!(
            "KV cache          {:.1} requests in flight ({} QPS × {:.2} s); {}× {} holds {} × {}-token sequences of {} ({}) → {}",
            in_flight,
            num(qps),
            secs,
            f.gpus,
            f.gpu,
            f.max_sequences,
            f.context_tokens,
            f.model,
            f.quant,
            replicas_of(*replicas),
        );
    }
    if tp > 1 {
        println!(
            "GPUs to rent      {gpus_total} ({})",
            replicas_of(replicas_total)
        );
    } else if memory.is_some() {
        println!("GPUs to rent      {gpus_total}");
    }
    if let Some(p) = price {
        println!(
            "cost              {} × {} at ${p:.2}/h = ${:.2}/h, ${}/month (730 h)",
            gpus_total,
            gpu.map_or("GPU", |g| g.name),
            p * gpus_total as f64,
            thousands((p * gpus_total as f64 * 730.0).round() as u64)
        );
    }
    Ok(())
}

fn tiers(config: Option<&PathBuf>) -> Result<Vec<TierPrice>, String> {
    let tiers = match config {
        Some(path) => switchyard_gateway::Config::load(path).map_err(err)?.tiers,
        None => switchyard_config::default_tiers(),
    };
    Ok(tiers
        .into_iter()
        .map(|(name, l)| TierPrice {
            name,
            input_per_million: l.price_input_per_million,
            output_per_million: l.price_output_per_million,
        })
        .collect())
}

fn usd4(v: f64) -> String {
    if v < 0.0 {
        format!("-${:.4}", -v)
    } else {
        format!("${v:.4}")
    }
}

async fn cost(a: CostArgs) -> Result<(), String> {
    let sources = load_sources(&a.throughput, &a.mix).await?;
    let gpu = a.gpu.as_deref().map(gpu_by_name).transpose().map_err(err)?;
    let (price, price_from) = match (a.price_per_hour, gpu) {
        (Some(p), _) => (p, "--price-per-hour".to_string()),
        (None, Some(g)) => (g.price_per_hour, format!("typical {} price", g.name)),
        (None, None) => return Err("give --price-per-hour or --gpu".into()),
    };
    let (rt, rt_from) = throughput(&a.throughput, sources.bench.as_ref())?;
    let c = cost_per_million(&CostInput {
        gpu_price_per_hour: price,
        tokens_per_sec: rt,
        utilization: a.utilization,
        overhead_per_million: a.overhead,
    })
    .map_err(err)?;
    let (mix, mix_from) = mix(&a.mix, &sources).unwrap_or((
        TokenMix {
            prompt_tokens: 1.0,
            completion_tokens: 1.0,
        },
        "default: as many prompt as completion tokens".into(),
    ));
    let tiers = tiers(a.config.as_ref())?;
    let margins = tier_margins(c.cogs_per_million, &tiers, mix).map_err(err)?;
    if a.json {
        return print_json(&json!({
            "inputs": {
                "price_per_hour": price, "price_from": price_from,
                "tokens_per_sec": rt, "tokens_per_sec_from": rt_from,
                "utilization": a.utilization, "overhead_per_million": a.overhead,
                "prompt_tokens": mix.prompt_tokens, "completion_tokens": mix.completion_tokens,
                "mix_from": mix_from,
            },
            "cost": c,
            "tiers": margins,
        }));
    }
    print_table(
        &["INPUT", "VALUE", "FROM"],
        &[
            vec!["GPU $/hour".into(), format!("${price:.2}"), price_from],
            vec!["tokens/s per GPU".into(), num(rt), rt_from],
            vec!["utilisation".into(), num(a.utilization), String::new()],
            vec![
                "overhead per 1M".into(),
                format!("${:.2}", a.overhead),
                String::new(),
            ],
            vec![
                "token mix".into(),
                format!(
                    "{} : {}",
                    num(mix.prompt_tokens),
                    num(mix.completion_tokens)
                ),
                mix_from,
            ],
        ],
    );
    println!();
    println!(
        "tokens per hour   {} × {} × 3600 = {}",
        num(rt),
        num(a.utilization),
        num(c.tokens_per_hour.round())
    );
    println!(
        "GPU cost per 1M   ${price:.2} / {} × 1,000,000 = {}",
        num(c.tokens_per_hour.round()),
        usd4(c.gpu_cost_per_million)
    );
    println!(
        "COGS per 1M       {} + {} overhead = {}",
        usd4(c.gpu_cost_per_million),
        usd4(c.overhead_per_million),
        usd4(c.cogs_per_million)
    );
    println!();
    let rows: Vec<Vec<String>> = margins
        .iter()
        .map(|m| {
            vec![
                m.tier.clone(),
                usd4(m.price_per_million),
                usd4(m.cogs_per_million),
                usd4(m.margin_per_million),
                m.margin_pct.map_or("-".into(), |p| format!("{p:.1}%")),
            ]
        })
        .collect();
    print_table(
        &["TIER", "PRICE/1M", "COGS/1M", "MARGIN/1M", "MARGIN%"],
        &rows,
    );
    if margins.iter().any(|m| m.margin_per_million < 0.0) {
        println!();
        println!("warning: a tier sells below cost");
    }
    Ok(())
}
