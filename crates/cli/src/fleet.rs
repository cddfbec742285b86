//! `switchyard fleet`: the gateway's workers (static and registered) with their state and
//! why, and draining a worker, a provider or a region (admin API).

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::admin_client::{cell, print_json, print_table, AdminArgs, AdminClient};
use crate::error::CliError;

#[derive(Args)]
pub struct FleetArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(Subcommand)]
enum FleetCommand {
    /// Every worker: model, provider, region, state and why, requests in flight, TTFT.
    List {
        /// The admin API's JSON instead of a table (includes labels, leases, ejections).
        #[arg(long)]
        json: bool,
    },
    /// Send matching workers nothing new; what they serve finishes.
    Drain(Target),
    /// Put drained workers back in rotation.
    Undrain(Target),
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct Target {
    #[arg(long)]
    worker: Option<String>,
    #[arg(long)]
    provider: Option<String>,
    #[arg(long)]
    region: Option<String>,
    /// Shown as the workers' reason.
    #[arg(long)]
    reason: Option<String>,
}

impl Target {
    fn body(&self) -> Value {
        let mut body = json!({});
        for (key, value) in [
            ("worker", &self.worker),
            ("provider", &self.provider),
            ("region", &self.region),
            ("reason", &self.reason),
        ] {
            if let Some(v) = value {
                body[key] = json!(v);
            }
        }
        body
    }
}

pub async fn run(args: FleetArgs) -> Result<(), CliError> {
    let client = AdminClient::new(&args.admin)?;
    match args.command {
        FleetCommand::List { json } => {
            let list = client.get("/fleet", &[]).await?;
            if json {
                return print_json(&list);
            }
            print_list(&list);
            Ok(())
        }
        FleetCommand::Drain(target) => change(&client, "/fleet/drain", &target, "draining").await,
        FleetCommand::Undrain(target) => {
            change(&client, "/fleet/undrain", &target, "back in rotation").await
        }
    }
}

async fn change(
    client: &AdminClient,
    path: &str,
    target: &Target,
    what: &str,
) -> Result<(), CliError> {
    let v = client.post(path, &target.body()).await?;
    let names: Vec<String> = v["workers"]
        .as_array()
        .map(|ws| ws.iter().map(cell).collect())
        .unwrap_or_default();
    let matched = v["matched"].as_u64().unwrap_or(0);
    let changed = v["changed"].as_u64().unwrap_or(0).min(matched);
    println!(
        "{matched} worker{} matched, {changed} now {what} ({} already were): {}",
        if matched == 1 { "" } else { "s" },
        matched - changed,
        names.join(", ")
    );
    Ok(())
}

fn print_list(list: &Value) {
    let empty = Vec::new();
    let workers = list["data"].as_array().unwrap_or(&empty);
    if workers.is_empty() {
        println!("no workers");
        return;
    }
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            vec![
                cell(&w["name"]),
                cell(&w["model"]),
                cell(&w["provider"]),
                cell(&w["region"]),
                cell(&w["source"]),
                cell(&w["state"]),
                cell(&w["outstanding"]),
                w["ttft_ewma_ms"]
                    .as_f64()
                    .map(|ms| format!("{ms:.0}"))
                    .unwrap_or_else(|| "-".into()),
                cell(&w["reason"]),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "MODEL",
            "PROVIDER",
            "REGION",
            "SOURCE",
            "STATE",
            "OUTSTANDING",
            "TTFT_MS",
            "REASON",
        ],
        &rows,
    );
}
