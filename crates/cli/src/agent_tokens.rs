//! `switchyard agent-tokens`: per-agent credentials for the registration API, through the admin
//! API. Each is scoped (providers, models, regions, a maximum price per GPU-hour); revoking one
//! takes the workers it registered out of the fleet.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::admin_client::{
    cell, comma_list, data_rows, print_fields, print_json, print_table, AdminArgs, AdminClient,
};
use crate::error::CliError;

#[derive(Args)]
pub struct AgentTokensArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: AgentTokensCommand,
}

#[derive(Subcommand)]
enum AgentTokensCommand {
    /// Create a token; its secret is printed once (give it to the agent as
    /// SWITCHYARD_FLEET_TOKEN).
    Create {
        /// What it is for (e.g. "market-b eu").
        #[arg(long)]
        name: String,
        /// Providers it may register workers for, comma-separated (default: any).
        #[arg(long)]
        providers: Option<String>,
        /// Models it may register workers for, comma-separated (default: any).
        #[arg(long)]
        models: Option<String>,
        /// Regions, comma-separated (default: any).
        #[arg(long)]
        regions: Option<String>,
        /// The highest price per GPU-hour its workers may declare (default: any).
        #[arg(long)]
        max_price_per_hour: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: refused on its next request; its workers leave the fleet now.
    Revoke {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

fn any(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => a.iter().map(cell).collect::<Vec<_>>().join(","),
        _ => "any".into(),
    }
}

pub async fn run(args: AgentTokensArgs) -> Result<(), CliError> {
    let client = AdminClient::new(&args.admin)?;
    match args.command {
        AgentTokensCommand::Create {
            name,
            providers,
            models,
            regions,
            max_price_per_hour,
            json,
        } => {
            let list = |s: Option<String>| s.as_deref().map(comma_list).unwrap_or_default();
            let body = json!({
                "name": name,
                "providers": list(providers),
                "models": list(models),
                "regions": list(regions),
                "max_price_per_hour": max_price_per_hour,
            });
            let t = client.post("/agent-tokens", &body).await?;
            if json {
                return print_json(&t);
            }
            println!("created agent token {}", cell(&t["id"]));
            print_fields(&[
                ("id", cell(&t["id"])),
                ("name", cell(&t["name"])),
                ("providers", any(&t["scope"]["providers"])),
                ("models", any(&t["scope"]["models"])),
                ("regions", any(&t["scope"]["regions"])),
                ("max price/h", cell(&t["scope"]["max_price_per_hour"])),
                ("secret", cell(&t["secret"])),
            ]);
            eprintln!(
                "warning: this is the only time the secret is shown; the gateway keeps only its \
                 hash. Give it to the agent as SWITCHYARD_FLEET_TOKEN."
            );
        }
        AgentTokensCommand::List { json } => {
            let list = client.get("/agent-tokens", &[]).await?;
            if json {
                return print_json(&list);
            }
            let rows = data_rows(&list, |t| {
                vec![
                    cell(&t["id"]),
                    cell(&t["name"]),
                    format!("{}…", cell(&t["prefix"])),
                    cell(&t["status"]),
                    any(&t["scope"]["providers"]),
                    any(&t["scope"]["models"]),
                    any(&t["scope"]["regions"]),
                    cell(&t["scope"]["max_price_per_hour"]),
                    cell(&t["created_at"]),
                ]
            });
            print_table(
                &[
                    "ID",
                    "NAME",
                    "PREFIX",
                    "STATUS",
                    "PROVIDERS",
                    "MODELS",
                    "REGIONS",
                    "MAX $/H",
                    "CREATED",
                ],
                &rows,
            );
        }
        AgentTokensCommand::Revoke { id, json } => {
            let t = client
                .post(&format!("/agent-tokens/{id}/revoke"), &json!({}))
                .await?;
            if json {
                return print_json(&t);
            }
            let removed = any(&t["workers_removed"]);
            println!(
                "revoked agent token {} ({}) at {}; workers removed: {}",
                cell(&t["id"]),
                cell(&t["name"]),
                cell(&t["revoked_at"]),
                if removed == "any" {
                    "none".into()
                } else {
                    removed
                }
            );
        }
    }
    Ok(())
}
