//! `switchyard plan` and `switchyard providers` through the real binary: tables, `--json`,
//! and impossible inputs (non-zero exit, a message that says what is wrong).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;

use serde_json::Value;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

async fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SWITCHYARD_LOG", "warn")
        .output()
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn ok(args: &[&str]) -> String {
    let out = run(args).await;
    assert!(
        out.status.success(),
        "switchyard {args:?} failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

async fn json(args: &[&str]) -> Value {
    let out = ok(args).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"))
}

/// Fails, with `needle` in the error message.
async fn fails(args: &[&str], needle: &str) {
    let out = run(args).await;
    assert!(!out.status.success(), "switchyard {args:?} succeeded");
    let err = text(&out.stderr);
    assert!(err.contains(needle), "switchyard {args:?}: {err}");
}

#[tokio::test]
async fn kv_cache_of_the_source_documents_example_is_8_gib() {
    // 32 layers × 32 heads × 2 × 128 × 2 bytes × 2,048 tokens × 8 sequences.
    let args = [
        "plan",
        "kv",
        "--layers",
        "32",
        "--kv-heads",
        "32",
        "--head-dim",
        "128",
        "--tokens",
        "2048",
        "--sequences",
        "8",
    ];
    let table = ok(&args).await;
    let last = table.lines().last().unwrap();
    assert!(last.starts_with("8 sequences"), "{table}");
    assert!(
        last.contains("8,589,934,592") && last.ends_with("8.00 GiB"),
        "{table}"
    );
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let v = json(&with_json).await;
    assert_eq!(v["bytes"], 8_589_934_592u64);
    assert_eq!(v["bytes_per_token"], 524_288);
    // llama-2-7b has that shape.
    let v = json(&[
        "plan",
        "kv",
        "--model",
        "llama-2-7b",
        "--tokens",
        "2048",
        "--sequences",
        "8",
        "--json",
    ])
    .await;
    assert_eq!(v["bytes"], 8_589_934_592u64);
    fails(
        &["plan", "kv", "--layers", "32", "--tokens", "10"],
        "--kv-heads",
    )
    .await;
}

#[tokio::test]
async fn fit_tables_json_and_a_model_that_does_not_fit() {
    let table = ok(&[
        "plan",
        "fit",
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "a100-80gb",
    ])
    .await;
    let row = table.lines().find(|l| l.starts_with("a100-80gb")).unwrap();
    // (72 GiB usable − 16.06e9 B of weights) / 1 GiB per 8,192-token sequence = 57.
    assert!(row.contains(" 57 ") && row.ends_with("yes"), "{table}");
    let v = json(&["plan", "fit", "--model", "llama-3.1-8b", "--json"]).await;
    let fits = v["fits"].as_array().unwrap();
    assert_eq!(fits.len(), 11);
    assert!(fits.iter().all(|f| f["weights_bytes"] == 16_060_000_000u64));

    fails(
        &["plan", "fit", "--model", "llama-3.1-70b", "--gpu", "h100"],
        "does not fit on 1× h100-80gb",
    )
    .await;
    fails(
        &["plan", "fit", "--model", "llama-3.1-70b", "--gpu", "h100"],
        "short by 62.23 GiB",
    )
    .await;
    // On every preset: 70B at fp16 with a 128k context, 85% of memory usable, fits no single
    // GPU: it needs 141.1e9 + 42.9e9 B; the largest, mi300x, gives ⌊196,592 MiB × 0.85⌋ =
    // 175.2e9 B. The error names the closest miss.
    fails(
        &[
            "plan",
            "fit",
            "--model",
            "llama-3.1-70b",
            "--context",
            "131072",
            "--memory-utilization",
            "0.85",
        ],
        "does not fit on 1× mi300x",
    )
    .await;
    fails(
        &["plan", "fit", "--model", "gpt-9"],
        "unknown model 'gpt-9'; known: llama-2-7b",
    )
    .await;
    fails(
        &["plan", "fit", "--model", "llama-2-7b", "--context", "8192"],
        "longer than llama-2-7b's 4096",
    )
    .await;
    fails(
        &["plan", "fit", "--model", "llama-3.1-8b", "--quant", "fp4"],
        "unknown quantization 'fp4'",
    )
    .await;
}

#[tokio::test]
async fn cost_per_million_and_tier_margins() {
    // The source document: $2.80/h, 1,600 tok/s, 60% → $0.81 per 1M.
    let v = json(&[
        "plan",
        "cost",
        "--price-per-hour",
        "2.80",
        "--tokens-per-sec",
        "1600",
        "--utilization",
        "0.6",
        "--overhead",
        "0",
        "--json",
    ])
    .await;
    let cogs = v["cost"]["cogs_per_million"].as_f64().unwrap();
    assert!((cogs - 0.810_185_185).abs() < 1e-6, "{v}");
    let tiers = v["tiers"].as_array().unwrap();
    let pro = tiers.iter().find(|t| t["tier"] == "pro").unwrap();
    // $3.20 − $0.8102 = $2.3898.
    assert!((pro["margin_per_million"].as_f64().unwrap() - 2.389_814_8).abs() < 1e-6);

    let table = ok(&[
        "plan",
        "cost",
        "--gpu",
        "h100",
        "--tokens-per-sec",
        "1600",
        "--utilization",
        "0.6",
        "--overhead",
        "0.10",
    ])
    .await;
    assert!(
        table.contains("COGS per 1M       $0.8102 + $0.1000 overhead = $0.9102"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("hobby") && l.ends_with("54.3%")),
        "{table}"
    );

    fails(
        &[
            "plan",
            "cost",
            "--gpu",
            "h100",
            "--tokens-per-sec",
            "1600",
            "--utilization",
            "1.5",
        ],
        "utilization must be within (0, 1], got 1.5",
    )
    .await;
    fails(
        &["plan", "cost", "--tokens-per-sec", "1600"],
        "give --price-per-hour or --gpu",
    )
    .await;
    fails(
        &["plan", "cost", "--gpu", "h100"],
        "give --tokens-per-sec or --bench",
    )
    .await;
}

#[tokio::test]
async fn capacity_for_a_target_load() {
    // 10 QPS × 700 tokens = 7,000 tokens/s; 1,600 × 0.75 = 1,200 per GPU; 5.83 × 1.3 = 7.58 → 8.
    let v = json(&[
        "plan",
        "capacity",
        "--qps",
        "10",
        "--prompt-tokens",
        "500",
        "--completion-tokens",
        "200",
        "--tokens-per-sec",
        "1600",
        "--json",
    ])
    .await;
    assert_eq!(v["capacity"]["gpus"], 8);
    assert_eq!(v["gpus"], 8);
    let table = ok(&[
        "plan",
        "capacity",
        "--qps",
        "10",
        "--prompt-tokens",
        "500",
        "--completion-tokens",
        "200",
        "--tokens-per-sec",
        "1600",
        "--gpu",
        "h100",
        "--model",
        "llama-3.1-8b",
        "--request-seconds",
        "6",
    ])
    .await;
    assert!(
        table.contains("GPUs              5.83, × 1.30 headroom = 7.58 → 8"),
        "{table}"
    );
    assert!(table.contains("$22.40/h"), "{table}");
    fails(
        &[
            "plan",
            "capacity",
            "--qps",
            "10",
            "--tokens-per-sec",
            "1600",
        ],
        "no token mix",
    )
    .await;
    // Negative numbers reach the planner's check (not clap's "unexpected argument").
    fails(
        &[
            "plan",
            "capacity",
            "--qps",
            "-5",
            "--prompt-tokens",
            "1",
            "--completion-tokens",
            "1",
            "--tokens-per-sec",
            "1600",
        ],
        "QPS must be a number > 0, got -5",
    )
    .await;
    fails(
        &[
            "plan",
            "capacity",
            "--qps",
            "10",
            "--prompt-tokens",
            "1",
            "--completion-tokens",
            "1",
            "--tokens-per-sec",
            "1600",
            "--headroom",
            "0.5",
        ],
        "headroom must be a number >= 1",
    )
    .await;
}

#[tokio::test]
async fn capacity_of_a_model_that_needs_tensor_parallel_replicas() {
    let load = [
        "plan",
        "capacity",
        "--qps",
        "2",
        "--prompt-tokens",
        "500",
        "--completion-tokens",
        "200",
        "--tokens-per-sec",
        "1600",
        "--gpu",
        "h100",
        "--model",
        "llama-3.1-70b",
        "--request-seconds",
        "6",
    ];
    // 141.1e9 B of fp16 weights do not fit one H100's 76.97e9 usable bytes.
    fails(&load, "It fits on 2× h100-80gb (tensor parallel)").await;
    // On 2× h100: throughput 2 × 700 / 1,200 × 1.3 = 1.52 → 2 GPUs = 1 replica; KV cache
    // (153,937,457,971 − 141,100,000,000) / 2,684,354,560 = 4.78 → 4 sequences a replica,
    // and 2 QPS × 6 s = 12 in flight → 3 replicas = 6 GPUs, $16.80/h at $2.80.
    let mut two = load.to_vec();
    two.extend(["--gpus", "2", "--json"]);
    let v = json(&two).await;
    assert_eq!(v["capacity"]["gpus"], 2, "{v}");
    assert_eq!(v["memory"]["fit"]["max_sequences"], 4, "{v}");
    assert_eq!(v["memory"]["replicas_for_kv_cache"], 3, "{v}");
    assert_eq!(
        (v["replicas"].clone(), v["gpus"].clone()),
        (3.into(), 6.into()),
        "{v}"
    );
    assert!(
        (v["cost"]["per_hour"].as_f64().unwrap() - 16.80).abs() < 1e-9,
        "{v}"
    );
    two.pop();
    let table = ok(&two).await;
    assert!(
        table.contains("GPUs to rent      6 (3 replicas of 2 GPUs)"),
        "{table}"
    );
    let mut three = load.to_vec();
    three.extend(["--gpus", "3"]);
    fails(&three, "--gpus must be one of 1, 2, 4, 8").await;
}

#[tokio::test]
async fn presets_and_providers_from_the_operators_file() {
    let v = json(&["plan", "presets", "--json"]).await;
    assert!(v["models"].as_array().unwrap().len() >= 10);
    assert_eq!(v["quantizations"][0]["bytes_per_weight"], 0.5);
    assert!(ok(&["plan", "presets"]).await.contains("llama-3.1-70b"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("providers.toml");
    std::fs::write(
        &file,
        r#"
[weights]
uptime = 2.0

[[providers]]
name = "steady-cloud"
gpu = "a100-80gb"
price_per_hour = 1.40
uptime_pct = 99.95
rtt_ms = 40
price_history = [1.40, 1.40, 1.40]
support = 4

[[providers]]
name = "bargain-market"
gpu = "rtx4090"
price_per_hour = 0.35
uptime_pct = 99.0
rtt_ms = 120
price_history = [0.30, 0.45, 0.35]
support = 2
"#,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let table = ok(&["providers", "--file", f, "--model", "llama-3.1-8b"]).await;
    let first = table.lines().nth(1).unwrap().trim_start();
    assert!(first.starts_with("1  steady-cloud"), "{table}");
    assert!(
        table.contains("57 × 8192-token sequences of llama-3.1-8b"),
        "{table}"
    );
    let v = json(&[
        "providers",
        "--file",
        f,
        "--model",
        "llama-3.1-8b",
        "--json",
    ])
    .await;
    let p = &v["providers"];
    assert_eq!(p[0]["provider"], "steady-cloud");
    // steady: uptime 5 (×2), fit 5 (57 seqs), network 5 (40 ms), price 5 (flat), support 4:
    // (10 + 5 + 5 + 5 + 4) / 6 = 4.833.
    assert!(
        (p[0]["score"].as_f64().unwrap() - 29.0 / 6.0).abs() < 1e-9,
        "{v}"
    );
    assert_eq!(p[0]["uptime"]["source"], "computed");
    // bargain: uptime 99.0 → 2 (×2), fit 2 (6 seqs), RTT 120 → 3, prices 0.30/0.45/0.35
    // (CV 17.0%) → 2, support 2: (4 + 2 + 3 + 2 + 2) / 6 = 2.167.
    assert!(
        (p[1]["score"].as_f64().unwrap() - 13.0 / 6.0).abs() < 1e-9,
        "{v}"
    );

    std::fs::write(&file, "[[providers]]\nname = \"x\"\nsupport = 9\n").unwrap();
    fails(
        &["providers", "--file", f],
        "support must be a score from 1 to 5, got 9",
    )
    .await;
    std::fs::write(&file, "[[providers]]\nname = \"x\"\nsuport = 3\n").unwrap();
    fails(&["providers", "--file", f], "unknown field `suport`").await;
    fails(&["providers"], "nothing to score").await;
}
