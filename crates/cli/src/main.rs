//! The one `switchyard` binary.

mod admin_client;
mod agent;
mod agent_tokens;
mod bench;
mod ca;
mod error;
mod fleet;
mod gateway_url;
mod incidents;
mod inputs;
mod keys;
mod maintenance;
mod plan;
mod probe;
mod providers;
mod serve;
mod sim;
mod sla;
mod tenants;
mod tls_client;
mod usage;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// glibc's allocator took a sixth of the gateway's CPU under load (many small, short-lived
/// allocations across threads: JSON values, headers, buffers); mimalloc handles that pattern
/// far better. (Built without the `mimalloc` feature for heap profiling: see Cargo.toml.)
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "OpenAI-compatible LLM inference gateway for fleets of unreliable GPUs"
)]
struct Cli {
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. Without --config: a local fleet of simulated workers.
    Serve(serve::ServeArgs),
    /// Run a simulated inference worker (OpenAI-compatible and TGI-native APIs).
    Sim(sim::SimArgs),
    /// Create, list, change and credit tenants (admin API of a running gateway).
    Tenants(tenants::TenantsArgs),
    /// Create, list, rotate and revoke API keys (admin API of a running gateway).
    Keys(keys::KeysArgs),
    /// Usage reports, ledger exports, invoices and margins (admin API of a running gateway).
    Usage(usage::UsageArgs),
    /// The monthly SLA report: uptime, latency, budget and credits owed (admin API).
    Sla(sla::SlaArgs),
    /// Declare, list and delete maintenance windows the SLA report excludes (admin API).
    Maintenance(maintenance::MaintenanceArgs),
    /// Incidents opened by alerts; `show ID` prints a post-mortem template (admin API).
    Incidents(incidents::IncidentsArgs),
    /// Keep a runtime beside this agent registered in a gateway's fleet; drain it on SIGTERM.
    Agent(Box<agent::AgentArgs>),
    /// Per-agent registration tokens: create (scoped), list, revoke (admin API).
    AgentTokens(agent_tokens::AgentTokensArgs),
    /// The gateway's workers with their state; drain a worker, provider or region.
    Fleet(fleet::FleetArgs),
    /// Load-test any OpenAI-compatible endpoint: TTFT, inter-token latency, TTLT, tokens/s.
    Bench(bench::BenchArgs),
    /// Capacity planning and unit economics: VRAM fit, KV cache, GPUs needed, cost per 1M.
    Plan(plan::PlanArgs),
    /// Rank GPU providers by the rubric, from the ledger's measurements and your scores.
    Providers(providers::ProvidersArgs),
    /// Black-box prober: probe the public URL from elsewhere; push its minutes to the SLA.
    Probe(probe::ProbeArgs),
    /// A private CA: certificates for the gateway's TLS listeners and for agents.
    Ca(ca::CaArgs),
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Tenants(args) => tenants::run(args).await,
        Command::Keys(args) => keys::run(args).await,
        Command::Usage(args) => usage::run(args).await,
        Command::Sla(args) => sla::run(args).await,
        Command::Maintenance(args) => maintenance::run(args).await,
        Command::Incidents(args) => incidents::run(args).await,
        Command::Agent(args) => agent::run(*args).await,
        Command::AgentTokens(args) => agent_tokens::run(args).await,
        Command::Fleet(args) => fleet::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Plan(args) => plan::run(args).await,
        Command::Providers(args) => providers::run(args).await,
        Command::Probe(args) => probe::run(args).await,
        Command::Ca(args) => ca::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard: {error}");
            error.exit_code()
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
