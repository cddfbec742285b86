//! `switchyard keys`: create, list, rotate and revoke API keys through the admin API.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::admin_client::{
    cell, comma_list, data_rows, print_fields, print_json, print_table, AdminArgs, AdminClient,
};
use crate::error::CliError;

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; its secret is printed once and cannot be shown again.
    Create {
        /// The tenant the key belongs to.
        #[arg(long)]
        tenant: String,
        /// What the key is for (e.g. "ci", "web-backend").
        #[arg(long)]
        name: String,
        /// Models the key may use, comma-separated (default: all of the tenant's tier).
        #[arg(long)]
        models: Option<String>,
        /// Endpoints the key may use: chat, completions, models (default: all).
        #[arg(long)]
        endpoints: Option<String>,
        /// Expiry as RFC 3339 (2026-12-31T23:59:59Z) or unix seconds.
        #[arg(long)]
        expires: Option<String>,
        /// Per-key limits as JSON, e.g. '{"requests_per_minute": 60}'.
        #[arg(long)]
        limits: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Replace a key: a new secret with the same tenant, name, scopes and limits; the old
    /// key stops working at once.
    Rotate {
        id: String,
        /// Expiry of the new key (the old key's is not carried over).
        #[arg(long)]
        expires: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key; its next request is refused.
    Revoke {
        id: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn expiry(s: &str) -> Value {
    match s.parse::<i64>() {
        Ok(secs) => json!(secs),
        Err(_) => json!(s),
    }
}

fn list_or_all(v: &Value) -> String {
    match v.as_array() {
        Some(a) if !a.is_empty() => a.iter().map(cell).collect::<Vec<_>>().join(","),
        _ => "all".into(),
    }
}

/// Prints a key with its one-time secret, and the warning on stderr.
fn print_new_key(k: &Value, what: &str) {
    println!("{what} key {}", cell(&k["id"]));
    print_fields(&[
        ("id", cell(&k["id"])),
        ("tenant", cell(&k["tenant"])),
        ("name", cell(&k["name"])),
        ("models", list_or_all(&k["scopes"]["models"])),
        ("endpoints", list_or_all(&k["scopes"]["endpoints"])),
        ("expires", cell(&k["expires_at"])),
        ("secret", cell(&k["secret"])),
    ]);
    eprintln!(
        "warning: this is the only time the secret is shown; the gateway keeps only its hash. \
         Store it now."
    );
}

pub async fn run(args: KeysArgs) -> Result<(), CliError> {
    let client = AdminClient::new(&args.admin)?;
    match args.command {
        KeysCommand::Create {
            tenant,
            name,
            models,
            endpoints,
            expires,
            limits,
            json,
        } => {
            let mut body = json!({
                "tenant": tenant,
                "name": name,
                "scopes": {
                    "models": models.as_deref().map(comma_list).unwrap_or_default(),
                    "endpoints": endpoints.as_deref().map(comma_list).unwrap_or_default(),
                },
            });
            if let Some(e) = expires {
                body["expires_at"] = expiry(&e);
            }
            if let Some(l) = limits {
                body["limits"] = serde_json::from_str(&l)
                    .map_err(|e| format!("--limits is not valid JSON: {e}"))?;
            }
            let k = client.post("/keys", &body).await?;
            if json {
                return print_json(&k);
            }
            print_new_key(&k, "created");
        }
        KeysCommand::List { tenant, json } => {
            let query = [("tenant", tenant.unwrap_or_default())];
            let list = client.get("/keys", &query).await?;
            if json {
                return print_json(&list);
            }
            let rows = data_rows(&list, |k| {
                vec![
                    cell(&k["id"]),
                    cell(&k["tenant"]),
                    cell(&k["name"]),
                    format!("{}…", cell(&k["prefix"])),
                    cell(&k["status"]),
                    list_or_all(&k["scopes"]["models"]),
                    list_or_all(&k["scopes"]["endpoints"]),
                    cell(&k["expires_at"]),
                    cell(&k["created_at"]),
                ]
            });
            print_table(
                &[
                    "ID",
                    "TENANT",
                    "NAME",
                    "PREFIX",
                    "STATUS",
                    "MODELS",
                    "ENDPOINTS",
                    "EXPIRES",
                    "CREATED",
                ],
                &rows,
            );
        }
        KeysCommand::Rotate { id, expires, json } => {
            let mut body = json!({});
            if let Some(e) = expires {
                body["expires_at"] = expiry(&e);
            }
            let k = client.post(&format!("/keys/{id}/rotate"), &body).await?;
            if json {
                return print_json(&k);
            }
            println!("revoked key {id}");
            print_new_key(&k, "new");
        }
        KeysCommand::Revoke { id, json } => {
            let k = client
                .post(&format!("/keys/{id}/revoke"), &json!({}))
                .await?;
            if json {
                return print_json(&k);
            }
            println!(
                "revoked key {} ({} of tenant {}) at {}",
                cell(&k["id"]),
                cell(&k["name"]),
                cell(&k["tenant"]),
                cell(&k["revoked_at"])
            );
        }
    }
    Ok(())
}
