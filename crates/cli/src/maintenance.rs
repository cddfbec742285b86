//! `switchyard maintenance add|list|rm`: declared maintenance windows (admin API), which the
//! SLA report excludes when announced 48 h ahead, up to 60 minutes a month.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::admin_client::{cell, data, print_json, print_table, AdminArgs, AdminClient};
use crate::error::CliError;

#[derive(Args)]
pub struct MaintenanceArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: MaintenanceCommand,
}

#[derive(Subcommand)]
enum MaintenanceCommand {
    /// Declare a window.
    Add {
        /// Start, RFC 3339 (e.g. 2026-12-03T02:00:00Z).
        #[arg(long)]
        start: String,
        /// End, RFC 3339 (exclusive).
        #[arg(long)]
        end: String,
        /// `all` or `tenant:<id>`.
        #[arg(long, default_value = "all")]
        scope: String,
        /// The notice is now (the gateway's clock): the addendum wants 48 h before the start.
        #[arg(long, default_value = "")]
        note: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Windows overlapping a month (default: all).
    List {
        /// YYYY-MM.
        #[arg(long)]
        month: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a window by id.
    Rm { id: i64 },
}

fn print_windows(windows: &[Value]) {
    let rows: Vec<Vec<String>> = windows
        .iter()
        .map(|w| {
            vec![
                cell(&w["id"]),
                cell(&w["start"]),
                cell(&w["end"]),
                cell(&w["minutes"]),
                cell(&w["scope"]),
                cell(&w["notice_ok"]),
                cell(&w["note"]),
            ]
        })
        .collect();
    print_table(
        &["ID", "START", "END", "MIN", "SCOPE", "48H NOTICE", "NOTE"],
        &rows,
    );
}

pub async fn run(args: MaintenanceArgs) -> Result<(), CliError> {
    let client = AdminClient::new(&args.admin)?;
    match args.command {
        MaintenanceCommand::Add {
            start,
            end,
            scope,
            note,
            json,
        } => {
            let body = json!({"start": start, "end": end, "scope": scope, "note": note});
            let w = client.post("/maintenance", &body).await?;
            if json {
                return print_json(&w);
            }
            print_windows(&[w]);
            Ok(())
        }
        MaintenanceCommand::List { month, json } => {
            let list = client
                .get("/maintenance", &[("month", month.unwrap_or_default())])
                .await?;
            if json {
                return print_json(&list);
            }
            print_windows(data(&list));
            Ok(())
        }
        MaintenanceCommand::Rm { id } => {
            client.delete(&format!("/maintenance/{id}")).await?;
            println!("deleted maintenance window {id}");
            Ok(())
        }
    }
}
