//! `switchyard bench` against real servers started as subprocesses: a `switchyard sim`
//! (the JSON result's counts must equal what the sim reports in `GET /sim/stats`), and a
//! `switchyard serve` gateway whose ledger then feeds `switchyard plan` and
//! `switchyard providers`; `--records` with seeded Poisson arrivals against the sim and
//! against a server that is not there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const DEV_KEY: &str = "sk-dev-bench-test-0123456789abcdef";
const ADMIN_TOKEN: &str = "sy-admin-bench-test-0123456789abcdef";
const DEADLINE: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `switchyard <args>` and waits for the stdout line starting with `ready`; returns the
/// child and the rest of that line.
async fn start(args: &[String], ready: &str) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("SWITCHYARD_DEV_KEY", DEV_KEY)
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let rest = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(i) = line.find(ready) {
                return line[i + ready.len()..].trim().to_string();
            }
        }
        panic!("switchyard {args:?} exited before '{ready}'");
    })
    .await
    .expect("server did not start in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, rest)
}

async fn switchyard(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SWITCHYARD_LOG", "warn")
        .env_remove("SWITCHYARD_API_KEY")
        .output()
        .await
        .unwrap()
}

async fn ok(args: &[&str]) -> String {
    let out = switchyard(args).await;
    assert!(
        out.status.success(),
        "switchyard {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn json(args: &[&str]) -> Value {
    let out = ok(args).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"))
}

async fn sim_stats(url: &str) -> Value {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{url}/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[tokio::test]
async fn bench_counts_match_what_the_sim_served() {
    let port = free_port();
    let (mut sim, url) = start(
        &[
            "sim".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--decode-ms".into(),
            "1".into(),
        ],
        "listening on ",
    )
    .await;

    // Closed loop, streamed: 40 requests of 8 tokens (the sim's replies end at max_tokens).
    let r = json(&[
        "bench",
        "--url",
        &url,
        "-n",
        "40",
        "--concurrency",
        "4",
        "--max-tokens",
        "8",
        "--json",
        "--quiet",
    ])
    .await;
    let stats = sim_stats(&url).await;
    assert_eq!(r["schema"], "switchyard-bench/1");
    assert_eq!(r["target"]["simulated"], true);
    assert_eq!(n(&r["requests"]["sent"]), 40);
    assert_eq!(n(&r["requests"]["ok"]), 40);
    assert_eq!(n(&r["requests"]["failed"]), 0);
    assert_eq!(n(&stats["requests"]), 40, "{stats}");
    assert_eq!(n(&stats["completed"]), 40, "{stats}");
    assert_eq!(n(&r["tokens"]["with_usage"]), 40);
    assert_eq!(
        r["tokens"]["prompt"], stats["prompt_tokens"],
        "{r}\n{stats}"
    );
    assert_eq!(
        r["tokens"]["completion"],
        stats["completion_tokens_generated"]
    );
    assert_eq!(n(&r["tokens"]["completion"]), 40 * 8);
    // One TTFT and TTLT per request; one gap between each of a stream's 8 token events.
    assert_eq!(n(&r["latency_ms"]["ttft"]["count"]), 40);
    assert_eq!(n(&r["latency_ms"]["ttlt"]["count"]), 40);
    assert_eq!(n(&r["latency_ms"]["itl"]["count"]), 40 * 7);
    let ttft = &r["latency_ms"]["ttft"];
    assert!(ttft["p50"].as_f64().unwrap() <= ttft["p99"].as_f64().unwrap());
    assert!(r["throughput"]["output_tokens_per_s"].as_f64().unwrap() > 0.0);

    // Open loop, not streamed, the completions API: 20 more requests of 5 tokens.
    let r = json(&[
        "bench",
        "--url",
        &url,
        "-n",
        "20",
        "--rate",
        "100",
        "--max-tokens",
        "5",
        "--no-stream",
        "--endpoint",
        "completions",
        "--json",
    ])
    .await;
    let after = sim_stats(&url).await;
    assert_eq!(r["load"]["mode"], "open");
    assert_eq!(n(&r["requests"]["ok"]), 20);
    assert_eq!(n(&after["requests"]) - n(&stats["requests"]), 20);
    assert_eq!(
        n(&r["tokens"]["prompt"]),
        n(&after["prompt_tokens"]) - n(&stats["prompt_tokens"])
    );
    assert_eq!(
        n(&r["tokens"]["completion"]),
        n(&after["completion_tokens_generated"]) - n(&stats["completion_tokens_generated"])
    );
    assert_eq!(n(&r["tokens"]["completion"]), 20 * 5);

    // The table.
    let table = ok(&["bench", "--url", &url, "-n", "5", "--max-tokens", "3"]).await;
    assert!(table.contains("requests    5 ok, 0 failed"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("TTFT")), "{table}");
    assert!(table.contains("SIMULATED"), "{table}");

    // Errors are counted by kind, and a run where nothing succeeded exits non-zero.
    let out = switchyard(&[
        "bench",
        "--url",
        &url,
        "-n",
        "3",
        "--model",
        "no-such-model",
        "--json",
    ])
    .await;
    assert!(!out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(n(&r["requests"]["errors"]["http_404"]), 3, "{r}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no request succeeded"));
    sim.kill().await.unwrap();
}

#[tokio::test]
async fn warm_up_drawn_prompts_datasets_and_goodput() {
    let port = free_port();
    let (mut sim, url) = start(
        &[
            "sim".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--decode-ms".into(),
            "2".into(),
        ],
        "listening on ",
    )
    .await;
    // 5 warm-up requests, then 30 with prompts of 10 to 200 words, 6 tokens each.
    let r = json(&[
        "bench",
        "--url",
        &url,
        "-n",
        "30",
        "--concurrency",
        "3",
        "--max-tokens",
        "6",
        "--input-tokens",
        "10-200",
        "--warmup",
        "5",
        "--slo",
        "ttft=5s,tpot=1ms",
        "--json",
        "--quiet",
    ])
    .await;
    let stats = sim_stats(&url).await;
    assert_eq!(
        n(&stats["requests"]),
        35,
        "the warm-up reached the server: {stats}"
    );
    assert_eq!(
        n(&r["requests"]["sent"]),
        30,
        "and counts nowhere in the report"
    );
    assert_eq!(r["load"]["warmup"], 5);
    assert_eq!(r["load"]["input"], "10-200-word prompts");
    let prompt = n(&r["tokens"]["prompt"]);
    assert!(
        (30 * 10..=30 * 260).contains(&prompt),
        "{prompt} prompt tokens for 30 requests"
    );
    // 6 tokens 2 ms apart: TPOT about 2 ms, so a 1 ms objective is met by none.
    assert_eq!(n(&r["latency_ms"]["tpot"]["count"]), 30);
    assert!(
        r["latency_ms"]["tpot"]["p50"].as_f64().unwrap() >= 1.0,
        "{r}"
    );
    assert_eq!(r["goodput"]["slo"], "ttft=5000ms,tpot=1ms");
    assert_eq!(n(&r["goodput"]["requests"]), 0, "{r}");

    // A dataset: each conversation in turn, with goodput against objectives all meet.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chats.jsonl");
    std::fs::write(
        &data,
        concat!(
            r#"{"conversations":[{"from":"human","value":"Name a rail yard."},{"from":"gpt","value":"Bailey."}]}"#,
            "
",
            r#"{"messages":[{"role":"user","content":"What is a hump yard?"}]}"#,
            "
"
        ),
    )
    .unwrap();
    let table = ok(&[
        "bench",
        "--url",
        &url,
        "-n",
        "4",
        "--max-tokens",
        "3",
        "--dataset",
        data.to_str().unwrap(),
        "--slo",
        "ttft=10s",
    ])
    .await;
    assert!(
        table.contains("input       dataset of 2 conversations"),
        "{table}"
    );
    assert!(
        table.contains("goodput     4 requests (100.0%) met ttft=10000ms"),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("TPOT")), "{table}");
    let bad = switchyard(&["bench", "--url", &url, "--slo", "itl=5ms"]).await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ttft, tpot and ttlt"));
    sim.kill().await.unwrap();
}

#[tokio::test]
async fn impossible_bench_settings_are_refused_before_any_request() {
    // Nothing listens on port 9: each case must fail on its own settings, not on a connect.
    for (args, message) in [
        (
            &["--rate", "0"][..],
            "rate must be a number of requests/s > 0, got 0",
        ),
        (
            &["--rate", "-2"],
            "rate must be a number of requests/s > 0, got -2",
        ),
        (&["--concurrency", "0"], "concurrency must be at least 1"),
        (&["-n", "0"], "the number of requests must be at least 1"),
        (&["--max-tokens", "0"], "max_tokens must be at least 1"),
        (
            &["--timeout", "-1"],
            "--timeout must be a number of seconds > 0, got -1",
        ),
        (
            &["--duration", "0"],
            "--duration must be a number of seconds > 0, got 0",
        ),
        (
            &["--arrivals", "poisson"],
            "Poisson arrivals need an open-loop rate",
        ),
        (
            &["--max-tokens", "9-3"],
            "the max_tokens range 9-3 is empty",
        ),
        (&["--max-tokens", "1-0"], "max_tokens must be at least 1"),
        (&["--max-tokens", "lots"], "is not a number of tokens"),
        (
            &["--start-at", "99999999999999"],
            "--start-at is more than a day away",
        ),
    ] {
        let mut all = vec!["bench", "--quiet"];
        all.extend_from_slice(args);
        if !args.contains(&"--url") {
            all.extend(["--url", "http://127.0.0.1:9"]);
        }
        let out = switchyard(&all).await;
        assert!(!out.status.success(), "{all:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{all:?}: {err}");
        assert!(out.stdout.is_empty(), "{all:?}");
    }
}

/// The records file's lines, by request id.
fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut v: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    v.sort_by_key(|r| r["id"].as_u64().unwrap());
    v
}

#[tokio::test]
async fn bench_records_every_request_of_a_seeded_poisson_run() {
    let port = free_port();
    let (mut sim, url) = start(
        &[
            "sim".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--decode-ms".into(),
            "1".into(),
        ],
        "listening on ",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let path = dir.path().join(name);
        let url = url.clone();
        let seed = seed.to_string();
        async move {
            let r = json(&[
                "bench",
                "--url",
                &url,
                "--rate",
                "40",
                "--arrivals",
                "poisson",
                "--seed",
                &seed,
                "-n",
                "30",
                "--max-tokens",
                "2-9",
                "--records",
                path.to_str().unwrap(),
                "--json",
                "--quiet",
            ])
            .await;
            (r, records(&path))
        }
    };
    let (r, a) = run("a.jsonl", "5").await;
    assert_eq!(r["load"]["arrivals"], "poisson", "{r}");
    assert_eq!(r["load"]["seed"], 5);
    assert_eq!(r["load"]["max_tokens_min"], 2);
    assert_eq!(r["load"]["max_tokens"], 9);
    assert_eq!(n(&r["requests"]["ok"]), 30, "{r}");

    // One line per request, every field there.
    assert_eq!(a.len(), 30);
    let mut completion = 0;
    for (i, rec) in a.iter().enumerate() {
        assert_eq!(n(&rec["id"]), i as u64, "{rec}");
        assert_eq!(rec["ok"], true, "{rec}");
        assert_eq!(rec["error"], Value::Null, "{rec}");
        assert_eq!(rec["lost"], false, "{rec}");
        assert_eq!(rec["status"], 200, "{rec}");
        let max_tokens = n(&rec["max_tokens"]);
        assert!((2..=9).contains(&max_tokens), "{rec}");
        // The sim's replies are exactly max_tokens long: each request asked for its own.
        assert_eq!(n(&rec["completion_tokens"]), max_tokens, "{rec}");
        assert_eq!(n(&rec["text_events"]), max_tokens, "{rec}");
        completion += max_tokens;
        let f = |k: &str| {
            rec[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k} missing: {rec}"))
        };
        assert!(f("sent_ms") >= f("scheduled_ms"), "{rec}");
        assert!(f("ttft_ms") > 0.0 && f("ttft_ms") <= f("ttlt_ms"), "{rec}");
        assert!(n(&rec["prompt_tokens"]) > 0, "{rec}");
    }
    assert_eq!(n(&r["tokens"]["completion"]), completion);
    assert!(a
        .windows(2)
        .all(|w| w[0]["scheduled_ms"].as_f64() <= w[1]["scheduled_ms"].as_f64()));
    assert!(a.iter().any(|x| x["max_tokens"] != a[0]["max_tokens"]));

    // The same seed: the same schedule and max_tokens; another seed: others.
    let plan = |v: &[Value]| -> Vec<(String, u64)> {
        v.iter()
            .map(|x| (x["scheduled_ms"].to_string(), n(&x["max_tokens"])))
            .collect()
    };
    let (_, b) = run("b.jsonl", "5").await;
    assert_eq!(plan(&a), plan(&b));
    let (_, c) = run("c.jsonl", "6").await;
    assert_ne!(plan(&a), plan(&c));

    // The table says how the load was shaped.
    let table = ok(&[
        "bench",
        "--url",
        &url,
        "--rate",
        "50",
        "--arrivals",
        "poisson",
        "-n",
        "3",
        "--max-tokens",
        "2-4",
        "--quiet",
    ])
    .await;
    assert!(
        table.contains("open loop, 50 requests/s, Poisson arrivals (seed 1)"),
        "{table}"
    );
    assert!(table.contains("max_tokens 2-4"), "{table}");

    // --start-at: nothing is sent before it.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 1_500;
    let before = std::time::Instant::now();
    let path = dir.path().join("later.jsonl");
    let r = json(&[
        "bench",
        "--url",
        &url,
        "-n",
        "2",
        "--concurrency",
        "1",
        "--max-tokens",
        "2",
        "--start-at",
        &at.to_string(),
        "--records",
        path.to_str().unwrap(),
        "--json",
    ])
    .await;
    assert!(before.elapsed() >= Duration::from_millis(1_400));
    assert_eq!(n(&r["requests"]["ok"]), 2, "{r}");
    let later = records(&path);
    assert_eq!(later.len(), 2);
    assert!(
        later[0]["scheduled_ms"].as_f64().unwrap() < 100.0,
        "{later:?}"
    );
    sim.kill().await.unwrap();
}

#[tokio::test]
async fn bench_records_failures_against_a_dead_server() {
    // Nobody listens: every request is lost (no HTTP response), as a `connect` error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.jsonl");
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = switchyard(&[
        "bench",
        "--url",
        &url,
        "-n",
        "3",
        "--rate",
        "100",
        "--records",
        path.to_str().unwrap(),
        "--json",
    ])
    .await;
    assert!(!out.status.success());
    let recs = records(&path);
    assert_eq!(recs.len(), 3);
    for r in &recs {
        assert_eq!(r["error"], "connect", "{r}");
        assert_eq!(r["lost"], true, "{r}");
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["status"], Value::Null, "{r}");
        assert_eq!(r["ttft_ms"], Value::Null, "{r}");
        assert_eq!(r["ttlt_ms"], Value::Null, "{r}");
    }

    // A records file that cannot be written is refused before any request.
    let out = switchyard(&[
        "bench",
        "--url",
        &url,
        "-n",
        "1",
        "--records",
        dir.path().join("no/such/dir.jsonl").to_str().unwrap(),
    ])
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("request records: cannot write"), "{err}");
}

fn gateway_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("switchyard.toml");
    let state = dir.join("state.db");
    let worker = |name: &str, provider: &str, price: f64| {
        format!(
            r#"
[[sim_workers]]
name = "{name}"
provider = "{provider}"
price_per_hour = {price}
[sim_workers.sim]
model = "sim-small"
prefill_base_ms = 2.0
prefill_per_token_ms = 0.0
decode_ms_per_token = 1.0
"#
        )
    };
    std::fs::write(
        &config,
        format!(
            "[server]\nshutdown_grace_ms = 1000\n\n[state]\npath = {state:?}\n{}{}",
            worker("sim-a", "prov-a", 2.0),
            worker("sim-b", "prov-b", 1.0)
        ),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn bench_through_the_gateway_then_plan_and_providers_from_its_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let config = gateway_config(dir.path());
    let port = free_port();
    let (mut gw, url) = start(
        &[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--admin-listen".into(),
            "127.0.0.1:0".into(),
        ],
        "switchyard listening on ",
    )
    .await;
    let bench_file = dir.path().join("bench.json");
    let bench_path = bench_file.to_str().unwrap();
    let r = json(&[
        "bench",
        "--url",
        &url,
        "--api-key",
        DEV_KEY,
        "-n",
        "60",
        "--concurrency",
        "6",
        "--max-tokens",
        "10",
        "--json",
        "--output",
        bench_path,
    ])
    .await;
    assert_eq!(n(&r["requests"]["ok"]), 60, "{r}");
    let (prompt, completion) = (n(&r["tokens"]["prompt"]), n(&r["tokens"]["completion"]));
    assert_eq!(completion, 600);

    // The ledger is written in the background: wait until it holds all 60 requests.
    let ledger = dir.path().join("state.db");
    let ledger_path = ledger.to_str().unwrap();
    let end = tokio::time::Instant::now() + DEADLINE;
    let providers = loop {
        let v = json(&["providers", "--ledger", ledger_path, "--json"]).await;
        let total: u64 = v["providers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| n(&p["requests"]))
            .sum();
        if total == 60 {
            break v;
        }
        assert!(tokio::time::Instant::now() < end, "ledger incomplete: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = providers["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"prov-a") && names.contains(&"prov-b"),
        "{providers}"
    );
    for p in providers["providers"].as_array().unwrap() {
        if n(&p["requests"]) >= 20 {
            // Every request was served: measured uptime 100% → 5.
            assert_eq!(p["uptime"]["source"], "measured", "{p}");
            assert_eq!(p["uptime"]["score"], 5, "{p}");
        }
    }

    // The ledger's token mix is the bench's: 60 completed requests of the same prompt.
    let v = json(&[
        "plan",
        "capacity",
        "--qps",
        "5",
        "--ledger",
        ledger_path,
        "--bench",
        bench_path,
        "--json",
    ])
    .await;
    let i = &v["inputs"];
    assert!(
        (i["prompt_tokens"].as_f64().unwrap() - prompt as f64 / 60.0).abs() < 1e-9,
        "{v}"
    );
    assert!(
        (i["completion_tokens"].as_f64().unwrap() - 10.0).abs() < 1e-9,
        "{v}"
    );
    assert!(i["mix_from"].as_str().unwrap().starts_with("ledger"), "{v}");
    let rt = r["throughput"]["total_tokens_per_s"].as_f64().unwrap();
    assert!((i["tokens_per_sec_per_gpu"].as_f64().unwrap() - rt).abs() < 1e-9);
    assert!(i["tokens_per_sec_from"]
        .as_str()
        .unwrap()
        .contains("SIMULATED"));

    // The table, with the GPU and price per provider from the gateway config.
    let table = ok(&[
        "providers",
        "--ledger",
        ledger_path,
        "--config",
        config.to_str().unwrap(),
        "--model",
        "llama-3.1-8b",
    ])
    .await;
    assert!(table.lines().next().unwrap().starts_with("RANK"), "{table}");
    assert!(
        table.contains("$2.00") && table.contains("$1.00"),
        "{table}"
    );
    assert!(table.contains("gpu 'simulated' is no preset"), "{table}");

    gw.kill().await.unwrap();
}

/// `SWITCHYARD_URL` names the server; the old `SWITCHYARD_BENCH_URL` still does when it is the
/// only one given, with a warning; the flag wins over both.
#[tokio::test]
async fn the_gateway_url_comes_from_switchyard_url_or_the_deprecated_name() {
    let port = free_port();
    let (mut sim, url) = start(
        &[
            "sim".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--decode-ms".into(),
            "1".into(),
        ],
        "listening on ",
    )
    .await;
    let bench = |envs: Vec<(&'static str, String)>, flag: Option<String>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["bench", "-n", "2", "--max-tokens", "2", "--json", "--quiet"])
            .env("SWITCHYARD_LOG", "warn")
            .env_remove("SWITCHYARD_API_KEY")
            .env_remove("SWITCHYARD_URL")
            .env_remove("SWITCHYARD_BENCH_URL")
            .envs(envs);
        if let Some(flag) = flag {
            cmd.args(["--url", &flag]);
        }
        async move { cmd.output().await.unwrap() }
    };
    let sent = |out: &Output| -> u64 {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        n(&r["requests"]["ok"])
    };
    let nowhere = format!("http://127.0.0.1:{}", free_port());

    let out = bench(vec![("SWITCHYARD_URL", url.clone())], None).await;
    assert_eq!(sent(&out), 2);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("deprecated"));

    let out = bench(vec![("SWITCHYARD_BENCH_URL", url.clone())], None).await;
    assert_eq!(sent(&out), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SWITCHYARD_BENCH_URL is deprecated; set SWITCHYARD_URL"),
        "{stderr}"
    );

    // The new name wins over the old one, and the flag over both.
    let out = bench(
        vec![
            ("SWITCHYARD_URL", url.clone()),
            ("SWITCHYARD_BENCH_URL", nowhere.clone()),
        ],
        None,
    )
    .await;
    assert_eq!(sent(&out), 2);
    let out = bench(vec![("SWITCHYARD_URL", nowhere)], Some(url.clone())).await;
    assert_eq!(sent(&out), 2);
    assert_eq!(n(&sim_stats(&url).await["requests"]), 8);
    sim.kill().await.unwrap();
}
