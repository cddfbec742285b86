//! The admin CLI against the real binary: `switchyard serve` with a state file in a temp dir,
//! then `tenants create`, `keys create`, a chat request with the new key, `keys revoke` (the
//! key is refused at once), and `usage --format csv` showing the request's tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const ADMIN_TOKEN: &str = "sy-admin-cli-test-0123456789abcdef";
const DEV_KEY: &str = "sk-dev-cli-test-0123456789abcdef";
const DEADLINE: Duration = Duration::from_secs(20);

struct Server {
    child: Child,
    url: String,
    /// The admin port (`--admin-listen`), where the admin commands go.
    admin: String,
}

async fn serve(dir: &std::path::Path) -> Server {
    let config = dir.join("switchyard.toml");
    let state = dir.join("state.db");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
shutdown_grace_ms = 1000

[state]
path = {state:?}

[[sim_workers]]
name = "sim-1"
provider = "sim-provider"
price_per_hour = 1.0

[sim_workers.sim]
model = "sim-small"
prefill_base_ms = 2.0
prefill_per_token_ms = 0.0
decode_ms_per_token = 1.0
"#
        ),
    )
    .unwrap();
    // A free port: bind, note it, let it go. The server binds it again right away.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--admin-listen", "127.0.0.1:0"])
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SWITCHYARD_DEV_KEY", DEV_KEY)
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Ready when it says where it listens (it prints that after binding), then where its
    // admin port is.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (url, admin) = tokio::time::timeout(DEADLINE, async {
        let mut url = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("switchyard listening on ") {
                url = Some(rest.trim().to_string());
            }
            if let Some(rest) = line.strip_prefix("admin and fleet APIs on ") {
                let admin = rest.split_whitespace().next().unwrap().to_string();
                return (url.expect("the public address comes first"), admin);
            }
        }
        panic!("switchyard serve exited before listening");
    })
    .await
    .expect("switchyard serve did not start in time");
    // Keep draining its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server { child, url, admin }
}

/// Runs `switchyard <args>` against the server; the admin token comes from the environment.
async fn cli(server: &Server, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--url")
        .arg(&server.admin)
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SWITCHYARD_LOG", "warn")
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn ok(server: &Server, args: &[&str]) -> String {
    let out = cli(server, args).await;
    assert!(
        out.status.success(),
        "switchyard {args:?} failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

async fn chat(url: &str, key: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({
            "model": "sim-small",
            "messages": [{"role": "user", "content": "Tell me about rail yards."}],
            "max_tokens": 6,
        }))
        .send()
        .await
        .unwrap()
}

/// "name  value" → value, from the CLI's field listing.
fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with(' ')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no '{name}' in:\n{text}"))
}

#[tokio::test]
async fn tenants_keys_and_usage_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path()).await;

    let out = ok(&server, &["tenants", "create", "acme", "--tier", "pro"]).await;
    assert!(out.contains("created tenant acme"), "{out}");
    let list = ok(&server, &["tenants", "list"]).await;
    let header = list.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("BALANCE"),
        "{list}"
    );
    assert!(list.lines().any(|l| l.starts_with("acme ")), "{list}");

    // Content logging: off by default, on for 30 days, and only off/7/30 accepted.
    let out = ok(&server, &["tenants", "show", "acme"]).await;
    assert_eq!(field(&out, "content logging"), "off", "{out}");
    let out = ok(
        &server,
        &["tenants", "set", "acme", "--content-logging", "30"],
    )
    .await;
    assert!(
        field(&out, "content logging").starts_with("on, kept 30 days"),
        "{out}"
    );
    let bad = cli(
        &server,
        &["tenants", "set", "acme", "--content-logging", "14"],
    )
    .await;
    assert!(!bad.status.success());

    let created = cli(
        &server,
        &["keys", "create", "--tenant", "acme", "--name", "cli-test"],
    )
    .await;
    assert!(created.status.success(), "{}", stderr(&created));
    let text = stdout(&created);
    let secret = field(&text, "secret").to_string();
    let key_id = field(&text, "id").to_string();
    assert!(secret.starts_with("sk-sy-"), "{text}");
    assert!(stderr(&created).contains("only time the secret is shown"));

    let resp = chat(&server.url, &secret).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let (prompt, completion) = (
        body["usage"]["prompt_tokens"].as_u64().unwrap(),
        body["usage"]["completion_tokens"].as_u64().unwrap(),
    );

    let keys = ok(&server, &["keys", "list", "--tenant", "acme"]).await;
    assert!(keys.contains(&key_id) && keys.contains("active"), "{keys}");
    assert!(!keys.contains(&secret), "a listing showed the secret");

    let revoked = ok(&server, &["keys", "revoke", &key_id]).await;
    assert!(revoked.contains("revoked key"), "{revoked}");
    let resp = chat(&server.url, &secret).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "api_key_revoked");

    // The ledger is written in the background: poll until the request is in it.
    let end = tokio::time::Instant::now() + DEADLINE;
    let row = loop {
        let csv = ok(&server, &["usage", "--tenant", "acme", "--format", "csv"]).await;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(
            &header[..4],
            ["tenant", "period", "model", "requests"],
            "{csv}"
        );
        if let Some(line) = lines.next() {
            let cols: Vec<&str> = line.split(',').collect();
            break header
                .into_iter()
                .zip(cols)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::HashMap<_, _>>();
        }
        assert!(tokio::time::Instant::now() < end, "no usage row: {csv}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(row["tenant"], "acme");
    assert_eq!(row["model"], "sim-small");
    assert_eq!(row["requests"], "1");
    assert_eq!(row["prompt_tokens"], prompt.to_string());
    assert_eq!(row["completion_tokens"], completion.to_string());

    // Tables too, and the invoice in JSON.
    let table = ok(&server, &["usage", "--tenant", "acme"]).await;
    assert!(table.lines().any(|l| l.starts_with("TOTAL")), "{table}");
    let invoice = ok(&server, &["usage", "invoice", "acme", "--json"]).await;
    let invoice: Value = serde_json::from_str(&invoice).unwrap();
    assert_eq!(invoice["total"]["prompt_tokens"], prompt);
    assert_eq!(invoice["total"]["completion_tokens"], completion);
    let margin = ok(&server, &["usage", "margin"]).await;
    assert!(margin.contains("sim-provider"), "{margin}");

    // Agent tokens: created with a scope and a secret shown once, listed without it, revoked.
    let created = ok(
        &server,
        &[
            "agent-tokens",
            "create",
            "--name",
            "market-b",
            "--providers",
            "market-b",
            "--max-price-per-hour",
            "1.5",
            "--json",
        ],
    )
    .await;
    let token: Value = serde_json::from_str(&created).unwrap();
    let (id, secret) = (
        token["id"].as_str().unwrap(),
        token["secret"].as_str().unwrap(),
    );
    assert_eq!(token["scope"]["providers"], json!(["market-b"]));
    let listed = ok(&server, &["agent-tokens", "list"]).await;
    assert!(listed.contains(id) && listed.contains("active"), "{listed}");
    assert!(!listed.contains(secret));
    let revoked = ok(&server, &["agent-tokens", "revoke", id]).await;
    assert!(
        revoked.contains("revoked agent token") && revoked.contains("none"),
        "{revoked}"
    );
    let listed = ok(&server, &["agent-tokens", "list"]).await;
    assert!(listed.contains("revoked"), "{listed}");

    // Errors: the API's message, and an exit status that says whose mistake it was: 4 for a
    // gateway that said no, 3 for one that cannot be reached, 2 for our own arguments.
    let missing = cli(&server, &["tenants", "show", "nobody"]).await;
    assert_eq!(missing.status.code(), Some(4));
    assert!(
        stderr(&missing).contains("Tenant 'nobody' does not exist"),
        "{}",
        stderr(&missing)
    );
    let bad_date = cli(&server, &["usage", "--from", "2026-02-30"]).await;
    assert_eq!(bad_date.status.code(), Some(4));
    assert!(
        stderr(&bad_date).contains("'from'"),
        "{}",
        stderr(&bad_date)
    );
    let wrong = Command::new(BIN)
        .args([
            "tenants",
            "list",
            "--url",
            &server.admin,
            "--admin-token",
            "sy-admin-wrong-0123456789",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(wrong.status.code(), Some(4));
    assert!(stderr(&wrong).contains("401"), "{}", stderr(&wrong));
    // Pointed at the public port, the CLI is told where the admin API went.
    let public = Command::new(BIN)
        .args(["tenants", "list", "--url", &server.url])
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    assert_eq!(public.status.code(), Some(4));
    assert!(
        stderr(&public).contains("admin port"),
        "{}",
        stderr(&public)
    );

    server.child.kill().await.unwrap();
    let _ = server.child.wait().await;
    let down = cli(&server, &["tenants", "list"]).await;
    assert_eq!(down.status.code(), Some(3), "{}", stderr(&down));
    assert!(stderr(&down).contains("cannot reach the gateway"));
    let no_token = Command::new(BIN)
        .args(["tenants", "list", "--url", &server.admin])
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(no_token.status.code(), Some(2), "{}", stderr(&no_token));
}
