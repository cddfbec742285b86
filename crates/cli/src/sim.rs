//! `switchyard sim`: one simulated worker in its own process, for chaos runs and benchmarks.

use std::path::PathBuf;

use clap::Args;
use switchyard_sim::SimConfig;

use crate::error::CliError;

#[derive(Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: String,
    /// TOML file with the sim's settings (timing model, KV capacity, faults).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Model id to serve (overrides the file).
    #[arg(long)]
    model: Option<String>,
    /// Inter-token latency in ms with one running sequence (overrides the file).
    #[arg(long)]
    decode_ms: Option<f64>,
}

pub async fn run(args: SimArgs) -> Result<(), CliError> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            toml::from_str::<SimConfig>(&text)
                .map_err(|e| format!("invalid sim config {}: {e}", path.display()))?
        }
        None => SimConfig::default(),
    };
    if let Some(model) = args.model {
        config.model = model;
    }
    if let Some(ms) = args.decode_ms {
        config.decode_ms_per_token = ms;
    }
    let handle = switchyard_sim::spawn_on(&args.listen, config)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    println!(
        "switchyard sim (SIMULATED worker, not a real model) listening on {}",
        handle.url()
    );
    crate::shutdown_signal().await;
    handle.shutdown().await;
    Ok(())
}
