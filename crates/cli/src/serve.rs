//! `switchyard serve`.

use std::path::PathBuf;

use clap::Args;
use rand::Rng;
use switchyard_server::{Config, Secrets};

use crate::error::CliError;

#[derive(Args)]
pub struct ServeArgs {
    /// TOML config file. Without it: an embedded default with a local simulated fleet.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides server.listen; default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<String>,
    /// Where the admin and fleet registration APIs listen (overrides admin.listen; default
    /// 127.0.0.1:8081; "public" serves them on the public port).
    #[arg(long)]
    admin_listen: Option<String>,
}

const DEV_KEY_ENV: &str = "SWITCHYARD_DEV_KEY";
pub const ADMIN_TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";
/// Enables the registration API for `switchyard agent`; never generated, since agents on
/// other machines must be given it.
const FLEET_TOKEN_ENV: &str = "SWITCHYARD_FLEET_TOKEN";
/// The state store's URL (`postgres://...` or `sqlite://...`), over `[state] url`: it usually
/// carries a password, which belongs in the environment rather than a config file.
const DATABASE_URL_ENV: &str = "SWITCHYARD_DATABASE_URL";
/// The shared limits' Redis (`redis://...`), over `[limits] redis_url`: like the database URL,
/// it may carry a password.
const REDIS_URL_ENV: &str = "SWITCHYARD_REDIS_URL";
const MIN_SECRET_LEN: usize = 20;

/// A secret from the environment (checked), or a random one with `prefix`.
fn secret_from_env(var: &str, prefix: &str) -> Result<(String, bool), CliError> {
    match std::env::var(var) {
        Ok(s) if s.chars().count() >= MIN_SECRET_LEN && !s.chars().any(char::is_whitespace) => {
            Ok((s, true))
        }
        Ok(_) => {
            Err(format!("{var} must be at least {MIN_SECRET_LEN} characters without spaces").into())
        }
        Err(_) => {
            let mut bytes = [0u8; 24];
            rand::rng().fill(&mut bytes);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            Ok((format!("{prefix}{hex}"), false))
        }
    }
}

pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    // The environment's URLs go in before the file is validated: the file may depend on them.
    let database_url = std::env::var(DATABASE_URL_ENV).ok();
    let redis_url = std::env::var(REDIS_URL_ENV).ok();
    // The flags go in before validation as well, so that the file and the flags are checked
    // together (an admin port equal to the public one).
    let apply_env = |config: &mut Config| {
        if let Some(listen) = &args.listen {
            config.server.listen = listen.clone();
        }
        if let Some(listen) = &args.admin_listen {
            config.admin.listen = listen.clone();
        }
        if let Some(url) = &database_url {
            config.state.url = Some(url.clone());
        }
        if let Some(url) = &redis_url {
            config.limits.redis_url = Some(url.clone());
        }
    };
    let mut config = match &args.config {
        Some(path) => Config::load_with(path, apply_env).map_err(|e| {
            let names = [
                (DATABASE_URL_ENV, &database_url),
                (REDIS_URL_ENV, &redis_url),
            ];
            let from_env: Vec<&str> = names
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(n, _)| *n)
                .collect();
            if from_env.is_empty() {
                CliError::from(e.to_string())
            } else {
                CliError::Usage(format!(
                    "{e} (with {} from the environment)",
                    from_env.join(", ")
                ))
            }
        })?,
        None => {
            let mut config = Config::embedded_default();
            apply_env(&mut config);
            config
                .validate()
                .map_err(|e| CliError::Usage(e.to_string()))?;
            config
        }
    };
    let addr = config.listen_addr().map_err(|e| e.to_string())?;
    let (key, key_from_env) = secret_from_env(DEV_KEY_ENV, "sk-dev-")?;
    let (admin_token, admin_from_env) = secret_from_env(ADMIN_TOKEN_ENV, "sy-admin-")?;
    let fleet_token = match std::env::var(FLEET_TOKEN_ENV) {
        Ok(_) => Some(secret_from_env(FLEET_TOKEN_ENV, "")?.0),
        Err(_) => None,
    };
    // Without static workers, workers must register: with the shared fleet token, or with
    // per-agent tokens made through the admin API (which a [fleet] section announces).
    if fleet_token.is_none()
        && config.fleet.is_none()
        && config.workers.is_empty()
        && config.sim_workers.is_empty()
    {
        return Err(format!(
            "no workers: the config declares none, and without {FLEET_TOKEN_ENV} or a [fleet] section none can register"
        )
        .into());
    }
    let state_at = config.state.backend().map_err(CliError::Usage)?.describe();
    let limits_at = config.limits.describe();
    let fleet_on = fleet_token.is_some();
    let secrets = Secrets {
        dev_key: Some(key.clone()),
        admin_token: Some(admin_token.clone()),
        fleet_token,
    };

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let sims = switchyard_sim::start_sim_workers(&mut config)
        .await
        .map_err(|e| e.to_string())?;
    let gateway = switchyard_server::start(config, secrets, listener)
        .await
        .map_err(|e| e.to_string())?;
    let workers = gateway.state.fleet.workers();
    let healthy = workers.iter().filter(|w| w.is_healthy()).count();
    println!("switchyard listening on {}", gateway.url());
    match gateway.admin_addr {
        Some(_) => println!(
            "admin and fleet APIs on {} (SWITCHYARD_ADMIN_URL)",
            gateway.admin_url()
        ),
        None => println!("admin and fleet APIs on the public port ([admin] listen = \"public\")"),
    }
    // A secret the operator supplied is never echoed (it would land in the logs); one made
    // up here is printed, as it is known nowhere else.
    if key_from_env {
        println!("dev API key: from {DEV_KEY_ENV}");
    } else {
        println!("dev API key: {key}");
    }
    if admin_from_env {
        println!("admin token: from {ADMIN_TOKEN_ENV}");
    } else {
        println!("admin token: {admin_token}");
    }
    println!("state: {state_at}");
    println!("limits: {limits_at}");
    if fleet_on {
        println!("fleet registration: on (shared token from {FLEET_TOKEN_ENV}, and agent tokens)");
    } else {
        println!("fleet registration: agent tokens only (switchyard agent-tokens create)");
    }
    println!(
        "workers: {healthy}/{} healthy{}",
        workers.len(),
        if sims.is_empty() {
            ""
        } else {
            " (simulated fleet)"
        }
    );
    crate::shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    gateway.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
    Ok(())
}
