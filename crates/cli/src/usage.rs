//! `switchyard usage`: usage reports, raw ledger exports, invoices and margins from the admin
//! API. Money is printed as the API renders it from the ledger's integer nano-dollars.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::admin_client::{cell, money, print_json, print_table, AdminArgs, AdminClient};
use crate::error::CliError;

#[derive(Args)]
pub struct UsageArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: Option<UsageCommand>,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// First day, YYYY-MM-DD (UTC, inclusive).
    #[arg(long)]
    from: Option<String>,
    /// Last day, YYYY-MM-DD (UTC, inclusive).
    #[arg(long)]
    to: Option<String>,
    /// A whole month, YYYY-MM (instead of --from/--to).
    #[arg(long)]
    month: Option<String>,
    /// Sum per UTC day or month.
    #[arg(long, value_enum, default_value_t = Period::Day)]
    period: Period,
    /// An aligned table, the API's JSON, or CSV with a header line.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Period {
    Day,
    Month,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Subcommand)]
enum UsageCommand {
    /// A tenant's invoice for a month: per model, at the tenant's prices.
    Invoice {
        tenant: String,
        /// YYYY-MM (default: the current month, UTC).
        #[arg(long)]
        month: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revenue against cost of goods per model and provider for a month.
    Margin {
        /// YYYY-MM (default: the current month, UTC).
        #[arg(long)]
        month: Option<String>,
        /// Only this tenant's requests.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The ledger's rows, one per request (for export: --format csv).
    Records {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        month: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

fn opt(s: Option<String>) -> String {
    s.unwrap_or_default()
}

fn rows(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

pub async fn run(args: UsageArgs) -> Result<(), CliError> {
    let client = AdminClient::new(&args.admin)?;
    match args.command {
        None => {
            let period = match args.period {
                Period::Day => "day",
                Period::Month => "month",
            };
            let mut query = vec![
                ("tenant", opt(args.tenant)),
                ("from", opt(args.from)),
                ("to", opt(args.to)),
                ("month", opt(args.month)),
                ("period", period.to_string()),
            ];
            summary(&client, &mut query, args.format).await
        }
        Some(UsageCommand::Invoice {
            tenant,
            month,
            json,
        }) => invoice(&client, &tenant, month, json).await,
        Some(UsageCommand::Margin {
            month,
            tenant,
            json,
        }) => margin(&client, month, tenant, json).await,
        Some(UsageCommand::Records {
            tenant,
            from,
            to,
            month,
            format,
        }) => {
            let mut query = vec![
                ("tenant", opt(tenant)),
                ("from", opt(from)),
                ("to", opt(to)),
                ("month", opt(month)),
            ];
            records(&client, &mut query, format).await
        }
    }
}

async fn summary(
    client: &AdminClient,
    query: &mut Vec<(&str, String)>,
    format: Format,
) -> Result<(), CliError> {
    if format == Format::Csv {
        query.push(("format", "csv".into()));
        print!("{}", client.get_text("/usage", query).await?);
        return Ok(());
    }
    let usage = client.get("/usage", query).await?;
    if format == Format::Json {
        return print_json(&usage);
    }
    let mut table: Vec<Vec<String>> = rows(&usage, "data")
        .iter()
        .map(|r| {
            vec![
                cell(&r["tenant"]),
                cell(&r["period"]),
                cell(&r["model"]),
                cell(&r["requests"]),
                cell(&r["prompt_tokens"]),
                cell(&r["completion_tokens"]),
                money(&r["cost_usd"]),
                money(&r["cogs_usd"]),
            ]
        })
        .collect();
    if table.is_empty() {
        println!("no usage in this range");
        return Ok(());
    }
    let t = &usage["totals"];
    table.push(vec![
        "TOTAL".into(),
        String::new(),
        String::new(),
        cell(&t["requests"]),
        cell(&t["prompt_tokens"]),
        cell(&t["completion_tokens"]),
        money(&t["cost_usd"]),
        money(&t["cogs_usd"]),
    ]);
    print_table(
        &[
            "TENANT",
            "PERIOD",
            "MODEL",
            "REQUESTS",
            "PROMPT_TOKENS",
            "COMPLETION_TOKENS",
            "COST",
            "COGS",
        ],
        &table,
    );
    Ok(())
}

async fn records(
    client: &AdminClient,
    query: &mut Vec<(&str, String)>,
    format: Format,
) -> Result<(), CliError> {
    if format == Format::Csv {
        query.push(("format", "csv".into()));
        print!("{}", client.get_text("/usage/records", query).await?);
        return Ok(());
    }
    let records = client.get("/usage/records", query).await?;
    if format == Format::Json {
        return print_json(&records);
    }
    let table: Vec<Vec<String>> = rows(&records, "data")
        .iter()
        .map(|r| {
            vec![
                cell(&r["started_at"]),
                cell(&r["request_id"]),
                cell(&r["tenant"]),
                cell(&r["model"]),
                cell(&r["endpoint"]),
                cell(&r["provider"]),
                cell(&r["status"]),
                cell(&r["prompt_tokens"]),
                cell(&r["completion_tokens"]),
                money(&r["cost_usd"]),
            ]
        })
        .collect();
    print_table(
        &[
            "STARTED",
            "REQUEST_ID",
            "TENANT",
            "MODEL",
            "ENDPOINT",
            "PROVIDER",
            "STATUS",
            "PROMPT",
            "COMPLETION",
            "COST",
        ],
        &table,
    );
    Ok(())
}

async fn invoice(
    client: &AdminClient,
    tenant: &str,
    month: Option<String>,
    json: bool,
) -> Result<(), CliError> {
    let inv = client
        .get(&format!("/invoices/{tenant}"), &[("month", opt(month))])
        .await?;
    if json {
        return print_json(&inv);
    }
    println!(
        "Invoice: tenant {} ({} tier), {} (UTC), {}",
        cell(&inv["tenant"]),
        cell(&inv["tier"]),
        cell(&inv["month"]),
        cell(&inv["currency"]),
    );
    println!();
    let mut table: Vec<Vec<String>> = rows(&inv, "lines")
        .iter()
        .map(|l| {
            vec![
                cell(&l["model"]),
                cell(&l["requests"]),
                cell(&l["prompt_tokens"]),
                cell(&l["completion_tokens"]),
                money(&l["price_input_per_million_usd"]),
                money(&l["price_output_per_million_usd"]),
                money(&l["amount_usd"]),
            ]
        })
        .collect();
    let t = &inv["total"];
    table.push(vec![
        "TOTAL".into(),
        cell(&t["requests"]),
        cell(&t["prompt_tokens"]),
        cell(&t["completion_tokens"]),
        String::new(),
        String::new(),
        money(&t["amount_usd"]),
    ]);
    print_table(
        &[
            "MODEL",
            "REQUESTS",
            "PROMPT_TOKENS",
            "COMPLETION_TOKENS",
            "PRICE_IN/1M",
            "PRICE_OUT/1M",
            "AMOUNT",
        ],
        &table,
    );
    println!();
    println!("Total due: {}", money(&t["amount_usd"]));
    if inv["prepaid"].as_bool() == Some(true) {
        println!("Prepaid credit left: {}", money(&inv["balance_usd"]));
    }
    Ok(())
}

async fn margin(
    client: &AdminClient,
    month: Option<String>,
    tenant: Option<String>,
    json: bool,
) -> Result<(), CliError> {
    let m = client
        .get("/margin", &[("month", opt(month)), ("tenant", opt(tenant))])
        .await?;
    if json {
        return print_json(&m);
    }
    let pct = |v: &Value| match v.as_f64() {
        Some(p) => format!("{p:.2}%"),
        None => "-".into(),
    };
    let line = |r: &Value, model: String, provider: String| {
        vec![
            model,
            provider,
            cell(&r["requests"]),
            money(&r["revenue_usd"]),
            money(&r["cogs_usd"]),
            money(&r["margin_usd"]),
            pct(&r["margin_pct"]),
        ]
    };
    let mut table: Vec<Vec<String>> = rows(&m, "data")
        .iter()
        .map(|r| line(r, cell(&r["model"]), cell(&r["provider"])))
        .collect();
    table.push(line(&m["total"], "TOTAL".into(), String::new()));
    println!("Margin, {} (UTC)", cell(&m["month"]));
    println!();
    print_table(
        &[
            "MODEL", "PROVIDER", "REQUESTS", "REVENUE", "COGS", "MARGIN", "MARGIN%",
        ],
        &table,
    );
    Ok(())
}
