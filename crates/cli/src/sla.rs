//! `switchyard sla report`: the monthly SLA report per tenant from the admin API —
//! availability per the addendum's 1-minute definition, p95 TTFT/TTLT, 5xx and 429 rates, the
//! error budget left and the credit owed at the tenant's fee.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::admin_client::{
    cell, data_rows, money, print_json, print_table, AdminArgs, AdminClient,
};
use crate::error::CliError;

#[derive(Args)]
pub struct SlaArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: SlaCommand,
}

#[derive(Clone, Copy, ValueEnum)]
enum PartialStep {
    /// Only full 0.1% steps below the SLO earn 5% (99.85% against 99.9%: nothing).
    Floor,
    /// Any part of a step counts as a whole one (99.85% against 99.9%: 5%).
    Ceil,
}

#[derive(Subcommand)]
enum SlaCommand {
    /// Availability, latency, error rates, budget and credits per tenant for a month.
    Report {
        /// YYYY-MM (default: the current month, UTC, up to now).
        #[arg(long)]
        month: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// How a partial 0.1% step below the SLO counts.
        #[arg(long, value_enum, default_value_t = PartialStep::Floor)]
        partial_step: PartialStep,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// "0.30%" from parts per million.
fn ppm_pct(v: &Value) -> String {
    match v.as_u64() {
        Some(ppm) => format!("{}.{:02}%", ppm / 10_000, (ppm % 10_000) / 100),
        None => "-".into(),
    }
}

/// A rate and whether its objective was met: "0.10%" or "0.35% MISSED".
fn objective(rate: &Value, met: &Value) -> String {
    match met.as_bool() {
        Some(false) => format!("{} MISSED", ppm_pct(rate)),
        _ => ppm_pct(rate),
    }
}

/// "5%" from basis points of the fee.
fn bp_pct(v: &Value) -> String {
    match v.as_u64() {
        Some(bp) if bp % 100 == 0 => format!("{}%", bp / 100),
        Some(bp) => format!("{}.{:02}%", bp / 100, bp % 100),
        None => "-".into(),
    }
}

/// "≤1500" for a p95 bucket bound, ">120000" for the overflow bucket, "-" without samples.
fn p95(v: &Value) -> String {
    if v["overflow"].as_bool() == Some(true) {
        return ">120000".into();
    }
    match v["le_ms"].as_i64() {
        Some(ms) => format!("≤{ms}"),
        None => "-".into(),
    }
}

pub async fn run(args: SlaArgs) -> Result<(), CliError> {
    let client = AdminClient::new(&args.admin)?;
    let SlaCommand::Report {
        month,
        tenant,
        partial_step,
        json,
    } = args.command;
    let step = match partial_step {
        PartialStep::Floor => "floor",
        PartialStep::Ceil => "ceil",
    };
    let query = [
        ("month", month.unwrap_or_default()),
        ("tenant", tenant.unwrap_or_default()),
        ("partial_step", step.to_string()),
    ];
    let report = client.get("/sla", &query).await?;
    if json {
        return print_json(&report);
    }
    println!(
        "SLA report {} ({} to {}, partial steps: {})",
        cell(&report["month"]),
        cell(&report["from"]),
        cell(&report["to"]),
        cell(&report["partial_step"]),
    );
    let rows = data_rows(&report, |r| {
        vec![
            cell(&r["tenant"]),
            cell(&r["tier"]),
            format!("{}%", cell(&r["slo_availability_pct"])),
            format!("{}%", cell(&r["availability_pct"])),
            format!(
                "{}/{}",
                cell(&r["minutes_bad"]),
                cell(&r["minutes_eligible"])
            ),
            cell(&r["minutes_unobserved"]),
            cell(&r["minutes_excluded"]),
            format!(
                "{}/{}",
                cell(&r["error_budget_left_minutes"]),
                cell(&r["error_budget_minutes"])
            ),
            p95(&r["p95_ttft"]),
            p95(&r["p95_ttlt"]),
            p95(&r["p95_ttlt_256"]),
            cell(&r["requests"]),
            objective(&r["rate_5xx_ppm"], &r["errors_5xx_slo_met"]),
            objective(&r["rate_throttled_ppm"], &r["throttled_slo_met"]),
            ppm_pct(&r["rate_429_ppm"]),
            money(&r["fee_usd"]),
            bp_pct(&r["credit_bp"]),
            money(&r["credit_usd"]),
        ]
    });
    print_table(
        &[
            "TENANT",
            "TIER",
            "SLO",
            "UPTIME",
            "BAD MIN",
            "UNOBS",
            "MAINT",
            "BUDGET LEFT",
            "P95 TTFT",
            "P95 TTLT",
            "TTLT@256",
            "REQUESTS",
            "5XX ≤0.2%",
            "SHED ≤1%",
            "429",
            "FEE",
            "CREDIT",
            "OWED",
        ],
        &rows,
    );
    println!(
        "Total credit owed: {} of {} billed.",
        money(&report["totals"]["credit_usd"]),
        money(&report["totals"]["fee_usd"]),
    );
    Ok(())
}
