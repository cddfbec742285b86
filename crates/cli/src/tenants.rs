//! `switchyard tenants`: create, list, show, change and credit tenants through the admin API.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use switchyard_metering::content::ContentLogging;

use crate::admin_client::{
    cell, data_rows, money, print_fields, print_json, print_table, AdminArgs, AdminClient,
};
use crate::error::CliError;

#[derive(Args)]
pub struct TenantsArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: TenantsCommand,
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Create a tenant on a tier.
    Create {
        /// Lowercase letters, digits and dashes (e.g. acme-prod).
        id: String,
        /// One of the gateway's configured tiers (hobby, pro, business by default).
        #[arg(long)]
        tier: String,
        /// Refuse requests once prepaid credit runs out (top up with `tenants credit`).
        #[arg(long)]
        prepaid: bool,
        /// Limit overrides as JSON, e.g. '{"requests_per_minute": 100}'.
        #[arg(long)]
        overrides: Option<String>,
        /// Keep prompts and completions (redacted) for 7 or 30 days; off by default.
        #[arg(long, value_name = "off|7|30", value_parser = content_logging)]
        content_logging: Option<ContentLogging>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List tenants with their balance and usage this month.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One tenant's settings, effective limits and live figures.
    Show {
        id: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a tenant's tier, prepaid flag, limit overrides or content logging.
    Set {
        id: String,
        #[arg(long)]
        tier: Option<String>,
        #[arg(long, value_parser = clap::value_parser!(bool))]
        prepaid: Option<bool>,
        /// Replaces all overrides; '{}' clears them.
        #[arg(long)]
        overrides: Option<String>,
        /// Keep prompts and completions (redacted) for 7 or 30 days, or turn it off.
        #[arg(long, value_name = "off|7|30", value_parser = content_logging)]
        content_logging: Option<ContentLogging>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Add prepaid credit (a negative amount corrects a mistaken top-up).
    Credit {
        id: String,
        /// Amount in USD, e.g. 25.00.
        #[arg(long, allow_hyphen_values = true)]
        usd: String,
        #[arg(long)]
        note: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn content_logging(s: &str) -> Result<ContentLogging, CliError> {
    ContentLogging::parse(s)
        .ok_or_else(|| format!("'{s}' is not one of: off, 7, 30"))
        .map_err(CliError::from)
}

fn content_logging_summary(v: &Value) -> String {
    match v.as_i64() {
        Some(days) => format!("on, kept {days} days (redacted)"),
        None => "off".into(),
    }
}

fn overrides_json(s: &str) -> Result<Value, CliError> {
    let v: Value =
        serde_json::from_str(s).map_err(|e| format!("--overrides is not valid JSON: {e}"))?;
    if !v.is_object() {
        return Err("--overrides must be a JSON object".into());
    }
    Ok(v)
}

fn limits_summary(l: &Value) -> String {
    if l.is_null() {
        return "- (tier not configured: the tenant's keys are refused)".into();
    }
    format!(
        "{} req/min, {} tokens/min, {} concurrent, max_tokens {}, max_prompt_tokens {}",
        cell(&l["requests_per_minute"]),
        cell(&l["tokens_per_minute"]),
        cell(&l["max_concurrent"]),
        cell(&l["max_tokens"]),
        cell(&l["max_prompt_tokens"]),
    )
}

fn quota(l: &Value) -> String {
    match l["monthly_tokens"].as_u64() {
        Some(0) => "unlimited".into(),
        Some(n) => n.to_string(),
        None => "-".into(),
    }
}

fn price(v: &Value) -> String {
    match v.as_f64() {
        Some(p) => format!("${p:.6}"),
        None => "-".into(),
    }
}

fn print_tenant(t: &Value) {
    let l = &t["limits"];
    let models = match l["models"].as_array() {
        Some(m) if !m.is_empty() => m.iter().map(cell).collect::<Vec<_>>().join(", "),
        Some(_) => "all".into(),
        None => "-".into(),
    };
    print_fields(&[
        ("tenant", cell(&t["id"])),
        ("tier", cell(&t["tier"])),
        ("active", cell(&t["active"])),
        ("prepaid", cell(&t["prepaid"])),
        ("balance", money(&t["balance_usd"])),
        (
            "month tokens",
            format!(
                "{} used (quota: {})",
                cell(&t["month_tokens_used"]),
                quota(l)
            ),
        ),
        ("limits", limits_summary(l)),
        ("models", models),
        (
            "prices",
            format!(
                "{} input / {} output per 1M tokens",
                price(&l["price_input_per_million"]),
                price(&l["price_output_per_million"])
            ),
        ),
        ("overrides", t["overrides"].to_string()),
        (
            "content logging",
            content_logging_summary(&t["content_logging"]),
        ),
        ("created", cell(&t["created_at"])),
    ]);
}

pub async fn run(args: TenantsArgs) -> Result<(), CliError> {
    let client = AdminClient::new(&args.admin)?;
    match args.command {
        TenantsCommand::Create {
            id,
            tier,
            prepaid,
            overrides,
            content_logging,
            json,
        } => {
            let mut body = json!({"id": id, "tier": tier, "prepaid": prepaid});
            if let Some(o) = overrides {
                body["overrides"] = overrides_json(&o)?;
            }
            if let Some(c) = content_logging {
                body["content_logging"] = json!(c);
            }
            let t = client.post("/tenants", &body).await?;
            if json {
                return print_json(&t);
            }
            println!("created tenant {}", cell(&t["id"]));
            print_tenant(&t);
        }
        TenantsCommand::List { json } => {
            let list = client.get("/tenants", &[]).await?;
            if json {
                return print_json(&list);
            }
            let rows = data_rows(&list, |t| {
                let l = &t["limits"];
                vec![
                    cell(&t["id"]),
                    cell(&t["tier"]),
                    cell(&t["prepaid"]),
                    cell(&t["active"]),
                    money(&t["balance_usd"]),
                    cell(&t["month_tokens_used"]),
                    quota(l),
                    cell(&l["requests_per_minute"]),
                    cell(&l["tokens_per_minute"]),
                    cell(&t["created_at"]),
                ]
            });
            print_table(
                &[
                    "ID",
                    "TIER",
                    "PREPAID",
                    "ACTIVE",
                    "BALANCE",
                    "MONTH_TOKENS",
                    "QUOTA",
                    "RPM",
                    "TPM",
                    "CREATED",
                ],
                &rows,
            );
        }
        TenantsCommand::Show { id, json } => {
            let t = client.get(&format!("/tenants/{id}"), &[]).await?;
            if json {
                return print_json(&t);
            }
            print_tenant(&t);
        }
        TenantsCommand::Set {
            id,
            tier,
            prepaid,
            overrides,
            content_logging,
            json,
        } => {
            let mut body = json!({});
            if let Some(tier) = tier {
                body["tier"] = json!(tier);
            }
            if let Some(p) = prepaid {
                body["prepaid"] = json!(p);
            }
            if let Some(o) = overrides {
                body["overrides"] = overrides_json(&o)?;
            }
            if let Some(c) = content_logging {
                body["content_logging"] = json!(c);
            }
            if body.as_object().is_some_and(|o| o.is_empty()) {
                return Err(
                    "nothing to change: give --tier, --prepaid, --overrides or --content-logging"
                        .into(),
                );
            }
            let t = client.patch(&format!("/tenants/{id}"), &body).await?;
            if json {
                return print_json(&t);
            }
            println!("updated tenant {}", cell(&t["id"]));
            print_tenant(&t);
        }
        TenantsCommand::Credit {
            id,
            usd,
            note,
            json,
        } => {
            let mut body = json!({"amount_usd": usd});
            if let Some(note) = note {
                body["note"] = json!(note);
            }
            let r = client.post(&format!("/tenants/{id}/credit"), &body).await?;
            if json {
                return print_json(&r);
            }
            println!(
                "credited {} to {}; balance now {}",
                money(&r["amount_usd"]),
                cell(&r["tenant"]),
                money(&r["balance_usd"])
            );
        }
    }
    Ok(())
}
