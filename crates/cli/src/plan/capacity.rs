//! `switchyard plan capacity`: GPUs needed for a target QPS and token mix, from presets or
//! measured inputs (a bench result for tokens/s, the ledger for the mix and rate).

use super::*;
use crate::error::CliError;

/// Where tokens/s per GPU comes from.
#[derive(Args)]
pub(super) struct ThroughputArgs {
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
pub(super) struct MixArgs {
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
pub(super) struct CapacityArgs {
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

/// tokens/s per GPU and where it came from.
pub(super) fn throughput(
    a: &ThroughputArgs,
    bench: Option<&BenchReport>,
) -> Result<(f64, String), CliError> {
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

pub(super) struct Sources {
    pub(super) bench: Option<BenchReport>,
    pub(super) observed: Option<(Observed, String)>,
}

pub(super) async fn load_sources(t: &ThroughputArgs, m: &MixArgs) -> Result<Sources, CliError> {
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
pub(super) fn mix(m: &MixArgs, s: &Sources) -> Option<(TokenMix, String)> {
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

pub(super) async fn capacity(a: CapacityArgs) -> Result<(), CliError> {
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
        )
        .into());
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
