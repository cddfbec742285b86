//! `switchyard providers`: ranks GPU providers by the source document's rubric (uptime, GPU
//! class and VRAM fit, network, price stability, support), measured from the usage ledger
//! where it can be and taken from the operator's TOML file where not.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use switchyard_planner::providers::{
    score_providers, Criterion, ProviderEntry, ProvidersFile, Source, Target,
};

use crate::admin_client::{print_json, print_table};
use crate::error::CliError;
use crate::inputs::read_ledger;
use crate::plan::ModelArgs;

#[derive(Args)]
pub struct ProvidersArgs {
    /// The operator's file: weights, and per provider its GPU, price, reported uptime, RTT,
    /// price history, support score (TOML; see README "Capacity planning").
    #[arg(long)]
    file: Option<PathBuf>,
    /// The usage ledger (SQLite file, or `switchyard usage records --format json`).
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// A gateway config: each provider's GPU and price from its [[workers]].
    #[arg(long)]
    config: Option<PathBuf>,
    /// The model to judge GPU fit by (with --quant, --context, ...).
    #[command(flatten)]
    model: ModelArgs,
    /// Print the result as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

fn read_file(path: &Path) -> Result<ProvidersFile, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| format!("invalid providers file {}: {e}", path.display()))
        .map_err(CliError::from)
}

/// Fills each provider's GPU and price from the gateway config where the file gives none.
fn merge_config(file: &mut ProvidersFile, path: &Path) -> Result<(), CliError> {
    let config = switchyard_gateway::Config::load(path).map_err(|e| e.to_string())?;
    // Simulated workers too (their GPU is "simulated", which is no preset).
    let sims = config
        .sim_workers
        .iter()
        .map(|s| s.to_worker_spec(String::new()));
    for w in config.workers.iter().cloned().chain(sims) {
        let i = match file.providers.iter().position(|p| p.name == w.provider) {
            Some(i) => i,
            None => {
                file.providers.push(ProviderEntry {
                    name: w.provider.clone(),
                    ..ProviderEntry::default()
                });
                file.providers.len() - 1
            }
        };
        let entry = &mut file.providers[i];
        if entry.gpu.is_none() && !w.gpu.is_empty() {
            entry.gpu = Some(w.gpu.clone());
        }
        if entry.price_per_hour.is_none() && w.price_per_hour > 0.0 {
            entry.price_per_hour = Some(w.price_per_hour);
        }
    }
    Ok(())
}

fn cell(c: &Criterion) -> String {
    match (c.score, c.source) {
        (Some(s), Source::Measured) => format!("{s}m"),
        (Some(s), Source::Computed) => format!("{s}c"),
        (Some(s), _) => format!("{s}o"),
        (None, _) => "-".into(),
    }
}

pub async fn run(args: ProvidersArgs) -> Result<(), CliError> {
    if args.file.is_none() && args.ledger.is_none() && args.config.is_none() {
        return Err(
            "nothing to score: give --file (operator's entries), --ledger or --config".into(),
        );
    }
    let mut file = match &args.file {
        Some(p) => read_file(p)?,
        None => ProvidersFile::default(),
    };
    if let Some(p) = &args.config {
        merge_config(&mut file, p)?;
    }
    let rows = match &args.ledger {
        Some(p) => read_ledger(p, None).await?,
        None => Vec::new(),
    };
    let choice = args.model.resolve()?;
    let target = choice.as_ref().map(|c| Target {
        model: c.model,
        quant: c.quant,
        kv_dtype: c.kv_dtype,
        context: c.context,
        memory_utilization: c.memory_utilization,
    });
    let scored = score_providers(&file, &rows, target.as_ref()).map_err(|e| e.to_string())?;
    if scored.is_empty() {
        return Err("no providers: the file lists none and the ledger has no requests".into());
    }
    if args.json {
        return print_json(&json!({
            "weights": file.weights,
            "target": choice.as_ref().map(|c| json!({
                "model": c.model.name, "quant": c.quant.name(), "context": c.context,
            })),
            "providers": scored,
        }));
    }
    let rows: Vec<Vec<String>> = scored
        .iter()
        .map(|p| {
            vec![
                p.rank.to_string(),
                p.provider.clone(),
                p.score.map_or("-".into(), |s| format!("{s:.2}")),
                format!("{}/5", p.coverage),
                cell(&p.uptime),
                cell(&p.gpu_fit),
                cell(&p.network),
                cell(&p.price_stability),
                cell(&p.support),
                p.requests.to_string(),
                p.ttft_p95_ms.map_or("-".into(), |v| v.to_string()),
                p.gpu.clone().unwrap_or_else(|| "-".into()),
                p.price_per_hour.map_or("-".into(), |v| format!("${v:.2}")),
            ]
        })
        .collect();
    print_table(
        &[
            "RANK",
            "PROVIDER",
            "SCORE",
            "SCORED",
            "UPTIME",
            "GPU_FIT",
            "NETWORK",
            "PRICE_STAB",
            "SUPPORT",
            "REQUESTS",
            "P95_TTFT_MS",
            "GPU",
            "$/H",
        ],
        &rows,
    );
    println!();
    println!("scores 1-5; m = measured from the ledger, c = computed from the file's figures, o = operator's score, - = unknown");
    for p in &scored {
        println!();
        println!("{}:", p.provider);
        for (name, c) in [
            ("uptime", &p.uptime),
            ("gpu_fit", &p.gpu_fit),
            ("network", &p.network),
            ("price_stability", &p.price_stability),
            ("support", &p.support),
        ] {
            println!("  {name:<16} {:<2} {}", cell(c), c.basis);
        }
    }
    Ok(())
}
