//! `switchyard plan cost`: cost of goods per 1M tokens, and each tier's margin.

use super::capacity::{load_sources, mix, throughput, MixArgs, ThroughputArgs};
use super::*;
use crate::error::CliError;

#[derive(Args)]
pub(super) struct CostArgs {
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

pub(super) fn tiers(config: Option<&PathBuf>) -> Result<Vec<TierPrice>, CliError> {
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

pub(super) async fn cost(a: CostArgs) -> Result<(), CliError> {
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
