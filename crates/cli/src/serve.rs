//! `switchyard serve`.

use std::path::PathBuf;

use clap::Args;
use rand::Rng;
use switchyard_gateway::{Config, KeyRing};

#[derive(Args)]
pub struct ServeArgs {
    /// TOML config file. Without it: an embedded default with a local simulated fleet.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides server.listen; default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<String>,
}

const DEV_KEY_ENV: &str = "SWITCHYARD_DEV_KEY";
const MIN_KEY_LEN: usize = 20;

fn dev_key() -> Result<String, String> {
    match std::env::var(DEV_KEY_ENV) {
        Ok(key) if key.chars().count() >= MIN_KEY_LEN && !key.chars().any(char::is_whitespace) => {
            Ok(key)
        }
        Ok(_) => Err(format!(
            "{DEV_KEY_ENV} must be at least {MIN_KEY_LEN} characters without spaces"
        )),
        Err(_) => {
            let mut bytes = [0u8; 24];
            rand::rng().fill(&mut bytes);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            Ok(format!("sk-dev-{hex}"))
        }
    }
}

pub async fn run(args: ServeArgs) -> Result<(), String> {
    let mut config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::embedded_default(),
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let addr = config.listen_addr().map_err(|e| e.to_string())?;
    let key = dev_key()?;
    let mut keys = KeyRing::default();
    keys.add("dev", &key);

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let gateway = switchyard_gateway::start(config, keys, listener)
        .await
        .map_err(|e| e.to_string())?;
    let healthy = gateway
        .state
        .fleet
        .workers()
        .iter()
        .filter(|w| w.is_healthy())
        .count();
    let total = gateway.state.fleet.workers().len();
    println!("switchyard listening on {}", gateway.url());
    println!("dev API key: {key}");
    println!(
        "workers: {healthy}/{total} healthy{}",
        if gateway.sims.is_empty() {
            ""
        } else {
            " (simulated fleet)"
        }
    );
    crate::shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    gateway.shutdown().await;
    Ok(())
}
