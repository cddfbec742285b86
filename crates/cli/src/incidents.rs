//! `switchyard incidents [--month YYYY-MM] [--json]` and `switchyard incidents show ID`:
//! the incidents the gateway's alerts opened (admin API), and one as a Markdown post-mortem
//! template filled in from the ledger.

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::admin_client::{cell, data, print_json, print_table, AdminArgs, AdminClient};
use crate::error::CliError;

#[derive(Args)]
pub struct IncidentsArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Incidents overlapping this month (YYYY-MM; default: all).
    #[arg(long)]
    month: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Option<IncidentsCommand>,
}

#[derive(Subcommand)]
enum IncidentsCommand {
    /// One incident as a post-mortem template (Markdown), or its JSON with --json.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

fn print_incidents(list: &[Value]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            let scopes: Vec<String> = i["scopes"]
                .as_array()
                .map(|a| a.iter().map(cell).collect())
                .unwrap_or_default();
            vec![
                cell(&i["id"]),
                cell(&i["status"]),
                cell(&i["severity"]),
                cell(&i["started_at"]),
                cell(&i["ended_at"]),
                scopes.join(","),
                cell(&i["requests_failed"]),
                cell(&i["bad_minutes"]),
                cell(&i["budget_spent"]),
                cell(&i["tenants_affected"]),
                cell(&i["title"]),
            ]
        })
        .collect();
    print_table(
        &[
            "ID", "STATUS", "SEV", "START", "END", "SCOPE", "FAILED", "BAD MIN", "BUDGET",
            "TENANTS", "TITLE",
        ],
        &rows,
    );
}

pub async fn run(args: IncidentsArgs) -> Result<(), CliError> {
    let client = AdminClient::new(&args.admin)?;
    match args.command {
        None => {
            let list = client
                .get("/incidents", &[("month", args.month.unwrap_or_default())])
                .await?;
            if args.json {
                return print_json(&list);
            }
            print_incidents(data(&list));
            Ok(())
        }
        Some(IncidentsCommand::Show { id, json }) => {
            if json || args.json {
                return print_json(&client.get(&format!("/incidents/{id}"), &[]).await?);
            }
            let md = client
                .get_text(&format!("/incidents/{id}/postmortem"), &[])
                .await?;
            print!("{md}");
            Ok(())
        }
    }
}
