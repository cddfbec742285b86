//! Workers that join and leave, with the real binary: `switchyard serve` with no static
//! workers, `switchyard sim` as the runtime, and `switchyard agent` beside it. The agent
//! registers, requests reach the sim through the gateway, `switchyard fleet` shows and drains
//! it, and a SIGTERM to the agent while a long stream is in flight lets the stream finish,
//! deregisters the worker and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{free_port, spawn_until, BIN, DEADLINE};

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::Command;

/// sha256 of the bytes `weights`.
const WEIGHTS_SHA256: &str = "9a129038d9a00aed0cf6a7ea059ca50a813449061ab87848cf1a13eafdf33b2c";
const ADMIN_TOKEN: &str = "sy-admin-agent-test-0123456789abcdef";
const FLEET_TOKEN: &str = "sy-fleet-agent-test-0123456789abcdef";
const DEV_KEY: &str = "sk-dev-agent-test-0123456789abcdef";

async fn fleet_cli(gateway: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("fleet")
        .args(args)
        .arg("--url")
        .arg(gateway)
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SWITCHYARD_LOG", "warn")
        .output()
        .await
        .unwrap()
}

async fn fleet_json(gateway: &str) -> Vec<Value> {
    let out = fleet_cli(gateway, &["list", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["data"].as_array().unwrap().clone()
}

async fn worker_state(gateway: &str, name: &str) -> Option<String> {
    fleet_json(gateway)
        .await
        .iter()
        .find(|w| w["name"] == name)
        .map(|w| w["state"].as_str().unwrap().to_string())
}

/// Polls `switchyard fleet list --json` until `name`'s state is `want` (None: absent).
async fn until_state(gateway: &str, name: &str, want: Option<&str>) {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let state = worker_state(gateway, name).await;
        if state.as_deref() == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "worker {name} is {state:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn chat(gateway: &str, extra: Value) -> reqwest::Response {
    let mut body = json!({
        "model": "sim-small",
        "messages": [{"role": "user", "content": "Tell me about rail yards."}],
        "max_tokens": 6,
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    http()
        .post(format!("{gateway}/v1/chat/completions"))
        .bearer_auth(DEV_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn sim_stats(sim: &str) -> Value {
    http()
        .get(format!("{sim}/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_agent_joins_serves_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nshutdown_grace_ms = 1000\n\n[health]\ninterval_ms = 200\n\n\
             [state]\npath = {:?}\n\n[fleet]\nlease_ms = 3000\nheartbeat_ms = 300\n",
            dir.path().join("state.db")
        ),
    )
    .unwrap();
    let (gw_port, admin_port) = (free_port(), free_port());
    let admin_url = format!("http://127.0.0.1:{admin_port}");
    let (mut gateway, gw_url) = spawn_until(
        &[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{gw_port}"),
            "--admin-listen".into(),
            format!("127.0.0.1:{admin_port}"),
        ],
        &[
            ("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN),
            ("SWITCHYARD_FLEET_TOKEN", FLEET_TOKEN),
            ("SWITCHYARD_DEV_KEY", DEV_KEY),
        ],
        "switchyard listening on ",
    )
    .await;
    let sim_port = free_port();
    let sim_url = format!("http://127.0.0.1:{sim_port}");
    let (_sim, _) = spawn_until(
        &[
            "sim".into(),
            "--listen".into(),
            format!("127.0.0.1:{sim_port}"),
            "--decode-ms".into(),
            "40".into(),
        ],
        &[],
        "listening on ",
    )
    .await;

    // A stand-in model file: the agent reports its sha256.
    let weights = dir.path().join("model.gguf");
    std::fs::write(&weights, b"weights").unwrap();
    let mut agent = Command::new(BIN)
        .args(["agent", "--gateway", &admin_url, "--runtime-url", &sim_url])
        .args([
            "--runtime",
            "vllm",
            "--model",
            "sim-small",
            "--name",
            "gpu-7",
        ])
        .args([
            "--provider",
            "market-b",
            "--region",
            "eu",
            "--gpu",
            "rtx4090",
        ])
        .args([
            "--vram-gb",
            "24",
            "--quantization",
            "fp16",
            "--label",
            "rack=r1",
        ])
        .args(["--price-per-hour", "0.45", "--drain-timeout", "30s"])
        .args(["--weights-file", weights.to_str().unwrap()])
        .env("SWITCHYARD_FLEET_TOKEN", FLEET_TOKEN)
        .env("SWITCHYARD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    until_state(&admin_url, "gpu-7", Some("ready")).await;
    let listed = fleet_json(&admin_url).await;
    let w = listed.iter().find(|w| w["name"] == "gpu-7").unwrap();
    assert_eq!(w["source"], "registered");
    assert_eq!(w["provider"], "market-b");
    assert_eq!(w["labels"]["vram_gb"], "24");
    assert_eq!(w["labels"]["rack"], "r1");
    // sha256("weights")
    assert_eq!(w["labels"]["weights_sha256"], WEIGHTS_SHA256);
    let table = fleet_cli(&admin_url, &["list"]).await;
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("gpu-7") && l.contains("ready")),
        "{table}"
    );

    let resp = chat(&gw_url, json!({})).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        sim_stats(&sim_url).await["completed"],
        1,
        "the sim served it"
    );

    // Drain and undrain by provider with the CLI.
    let out = fleet_cli(&admin_url, &["drain", "--provider", "market-b"]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 worker matched, 1 now draining"));
    let resp = chat(&gw_url, json!({})).await;
    assert_eq!(resp.status(), 503, "the only worker is draining");
    let out = fleet_cli(&admin_url, &["undrain", "--provider", "market-b"]).await;
    assert!(out.status.success());
    until_state(&admin_url, "gpu-7", Some("ready")).await;

    // A long stream (60 tokens × 40 ms), then SIGTERM to the agent while it runs.
    let stream = chat(
        &gw_url,
        json!({"stream": true, "max_tokens": 60, "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(stream.status(), 200);
    let reader = tokio::spawn(async move { stream.text().await });
    let pid = agent.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    until_state(&admin_url, "gpu-7", Some("draining")).await;
    let resp = chat(&gw_url, json!({})).await;
    assert_eq!(resp.status(), 503, "nothing new for a draining worker");

    let body = tokio::time::timeout(DEADLINE, reader)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    assert!(body.contains("\"completion_tokens\":60"), "{body}");
    assert!(!body.contains("\"error\""), "{body}");

    let status = tokio::time::timeout(DEADLINE, agent.wait())
        .await
        .expect("the agent did not exit after draining")
        .unwrap();
    assert!(status.success(), "agent exited with {status}");
    assert_eq!(
        worker_state(&admin_url, "gpu-7").await,
        None,
        "deregistered"
    );
    let stats = sim_stats(&sim_url).await;
    assert_eq!(stats["completed"], 2);
    assert_eq!(stats["failed"], 0);

    gateway.start_kill().unwrap();
}
