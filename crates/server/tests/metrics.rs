//! `/metrics` end to end: known traffic through in-process simulated workers (some failing,
//! one slow), then the exact series scraped from the gateway; the worker scraper against the
//! simulator's vLLM-named gauges; `promtool` on the output and the alert rules when it is
//! installed; and the dashboard and alert rules referencing only metric names that exist.
//!
//! Event metrics are process-wide (one recorder per process), so every assertion here is on
//! series labelled with a model only this test uses: tests running in one process (plain
//! `cargo test`) cannot disturb each other's figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard_gateway::metrics as m;
use switchyard_server::RunningGateway;
use switchyard_sim::FaultConfig;
use switchyard_testkit::*;

/// One sample line of the text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A deliberately simple parser: the gateway's own output has no `}` or `,` inside label
/// values in these tests.
fn samples(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').unwrap();
                    let labels = inner
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').unwrap();
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name, labels)
                }
                None => (series, BTreeMap::new()),
            };
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().unwrap(),
            }
        })
        .collect()
}

/// The sum of the samples of `name` whose labels include `labels`.
fn sum(body: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(body)
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(gw: &RunningGateway) -> String {
    let resp = client()
        .get(format!("{}/metrics", gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    resp.text().await.unwrap()
}

async fn stream_to_end(gw: &RunningGateway, model: &str) -> u16 {
    let resp = post(
        gw,
        "/v1/chat/completions",
        &chat(model, json!({"stream": true})),
    )
    .await;
    let status = resp.status().as_u16();
    let (events, err) = read_events(resp, Duration::from_secs(20)).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(events.last().map(|e| e.data.as_str()), Some("[DONE]"));
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_the_traffic_that_went_through() {
    let mut config = config(vec![
        sim("mx-ok", |s| s.model = "mx-ok".into()),
        sim("mx-bad", |s| {
            s.model = "mx-bad".into();
            s.faults = FaultConfig {
                error_500: 1.0,
                ..FaultConfig::default()
            };
        }),
        sim("mx-retry-bad", |s| {
            s.model = "mx-retry".into();
            s.faults = FaultConfig {
                error_500: 1.0,
                ..FaultConfig::default()
            };
        }),
        sim("mx-retry-ok", |s| s.model = "mx-retry".into()),
        sim("mx-hedge-slow", |s| {
            s.model = "mx-hedge".into();
            s.prefill_base_ms = 4_000.0;
        }),
        sim("mx-hedge-fast", |s| s.model = "mx-hedge".into()),
    ]);
    // Failing workers stay in rotation, so every failure below is deterministic.
    config.upstream.eject_after_failures = 1_000;
    config.metrics.worker_scrape_interval_ms = 100;
    let gw = start(config).await;

    // 10 successes: 5 unstreamed, 5 streamed.
    for _ in 0..5 {
        let resp = post(&gw, "/v1/chat/completions", &chat("mx-ok", json!({}))).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        assert_eq!(stream_to_end(&gw, "mx-ok").await, 200);
    }
    // 3 failures: the only worker for the model answers 500, there is nobody to retry on.
    for _ in 0..3 {
        let resp = post(&gw, "/v1/chat/completions", &chat("mx-bad", json!({}))).await;
        assert_eq!(resp.status(), 502);
    }
    // Refused before admission: 2 bad keys (401), 1 unknown model (404).
    for _ in 0..2 {
        let resp = client()
            .post(format!("{}/v1/chat/completions", gw.url()))
            .bearer_auth("sk-wrong-0123456789abcdefghij")
            .json(&chat("mx-ok", json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let resp = post(
        &gw,
        "/v1/completions",
        &json!({"model": "nope", "prompt": "x"}),
    )
    .await;
    assert_eq!(resp.status(), 404);
    // Retries: every request that meets the failing worker first is retried on the other.
    for _ in 0..4 {
        let resp = post(&gw, "/v1/chat/completions", &chat("mx-retry", json!({}))).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    // Hedges (Pro: after 1 s): a stream sent to the slow worker first is hedged to the other.
    for _ in 0..3 {
        assert_eq!(stream_to_end(&gw, "mx-hedge").await, 200);
    }

    // Streams settle as they end: wait until nothing is in flight any more.
    let mut body = String::new();
    let settled = async {
        loop {
            body = scrape(&gw).await;
            if sum(&body, m::IN_FLIGHT, &[]) == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .expect("requests still in flight");

    let chat_route = ("route", "/v1/chat/completions");
    let ok = [
        chat_route,
        ("status", "200"),
        ("model", "mx-ok"),
        ("region", "local"),
        ("provider", "provider-mx-ok"),
    ];
    assert_eq!(sum(&body, m::REQUESTS, &ok), 10.0, "{body}");
    let bad = [
        chat_route,
        ("status", "502"),
        ("model", "mx-bad"),
        ("region", "local"),
        ("provider", "provider-mx-bad"),
    ];
    assert_eq!(sum(&body, m::REQUESTS, &bad), 3.0);
    assert_eq!(sum(&body, m::REQUESTS, &[("model", "mx-bad")]), 3.0);
    // Refused requests name no model, so a made-up model name cannot create a series.
    let refused = [
        chat_route,
        ("status", "401"),
        ("model", "none"),
        ("provider", "none"),
    ];
    assert!(sum(&body, m::REQUESTS, &refused) >= 2.0);
    assert!(!body.contains("\"nope\""));
    let upstream_5xx = [("class", "upstream"), ("kind", "5xx")];
    assert!(sum(&body, m::ERRORS, &upstream_5xx) >= 3.0);
    assert!(sum(&body, m::ERRORS, &[("class", "client"), ("kind", "4xx")]) >= 3.0);

    // Histograms: one sample per request of the right kind.
    let pro_ok = [("model", "mx-ok"), ("tier", "pro")];
    let count = |name: &str| format!("{name}_count");
    assert_eq!(sum(&body, &count(m::TTLT), &pro_ok), 10.0);
    // Streamed to the client or not, every request reached its worker as a stream: each has
    // a real first token and token gaps.
    assert_eq!(sum(&body, &count(m::TTFT), &pro_ok), 10.0);
    assert_eq!(
        sum(&body, &count(m::INTER_TOKEN), &[("model", "mx-ok")]),
        10.0
    );
    assert_eq!(sum(&body, &count(m::QUEUE), &pro_ok), 10.0);
    let inf = [("model", "mx-ok"), ("tier", "pro"), ("le", "+Inf")];
    assert_eq!(sum(&body, &format!("{}_bucket", m::TTLT), &inf), 10.0);
    assert!(sum(&body, &format!("{}_sum", m::TTLT), &pro_ok) > 0.0);

    // Tokens: what the worker generated and read, billed to the tier.
    let sims = |name: &str| {
        gw.sims[[
            "mx-ok",
            "mx-bad",
            "mx-retry-bad",
            "mx-retry-ok",
            "mx-hedge-slow",
            "mx-hedge-fast",
        ]
        .iter()
        .position(|n| *n == name)
        .unwrap()]
        .stats()
    };
    let ok_stats = sims("mx-ok");
    let out = [("direction", "output"), ("tier", "pro"), ("model", "mx-ok")];
    assert_eq!(
        sum(&body, m::TOKENS, &out),
        ok_stats.completion_tokens_generated as f64
    );
    assert!(ok_stats.completion_tokens_generated >= 10);
    let input = [("direction", "input"), ("tier", "pro"), ("model", "mx-ok")];
    assert_eq!(sum(&body, m::TOKENS, &input), ok_stats.prompt_tokens as f64);

    // Retries and hedges: one per request that met the failing / slow worker first.
    let retry_bad = sims("mx-retry-bad").requests;
    assert!(retry_bad >= 1, "routing never tried the failing worker");
    assert_eq!(
        sum(&body, m::RETRIES, &[("model", "mx-retry")]),
        retry_bad as f64
    );
    let slow = sims("mx-hedge-slow").requests;
    assert!(slow >= 1, "routing never tried the slow worker");
    assert_eq!(sum(&body, m::HEDGES, &[("model", "mx-hedge")]), slow as f64);
    assert_eq!(
        sum(
            &body,
            m::REQUESTS,
            &[("model", "mx-hedge"), ("status", "200")]
        ),
        3.0
    );

    // Fleet state, read at scrape time.
    let ready = [("worker", "mx-ok"), ("model", "mx-ok"), ("state", "ready")];
    assert_eq!(sum(&body, m::WORKER_STATE, &ready), 1.0);
    assert_eq!(sum(&body, m::WORKER_STATE, &[("worker", "mx-ok")]), 1.0);
    assert_eq!(
        sum(&body, m::WORKER_OUTSTANDING, &[("worker", "mx-ok")]),
        0.0
    );
    assert!(body.contains(&format!("\n{} ", m::RETRY_BUDGET)));

    // Never a key, a key id or a tenant id.
    assert!(!body.contains("sk-"), "{body}");
    assert!(!body.contains("key_"));
    assert!(!body.contains("\"dev\""));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_gauges_come_from_the_runtime_metrics() {
    let mut config = config(vec![sim("wm-1", |s| {
        s.model = "wm".into();
        s.decode_ms_per_token = 100.0;
    })]);
    config.metrics.worker_scrape_interval_ms = 50;
    let gw = start(config).await;
    let labels = [("worker", "wm-1"), ("model", "wm")];

    // The simulator's own /metrics speaks vLLM.
    let sim_metrics = client()
        .get(format!("{}/metrics", gw.sims[0].url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sim_metrics.contains("vllm:gpu_cache_usage_perc{model_name=\"wm\"} 0"),
        "{sim_metrics}"
    );
    assert!(sim_metrics.contains("vllm:num_requests_running{model_name=\"wm\"} 0"));
    assert!(sim_metrics.contains("vllm:num_requests_waiting{model_name=\"wm\"} 0"));

    // A stream in progress (8 tokens at 100 ms) holds KV space and counts as running.
    let gw_url = gw.url();
    let streaming = tokio::spawn(async move {
        let resp = client()
            .post(format!("{gw_url}/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&chat("wm", json!({"stream": true})))
            .send()
            .await
            .unwrap();
        read_events(resp, Duration::from_secs(20)).await
    });
    let mut seen = false;
    for _ in 0..100 {
        let body = scrape(&gw).await;
        if sum(&body, m::WORKER_RUNNING, &labels) == 1.0 {
            assert_eq!(sum(&body, m::WORKER_SCRAPE_UP, &labels), 1.0);
            assert!(sum(&body, m::WORKER_KV_CACHE, &labels) > 0.0, "{body}");
            assert_eq!(sum(&body, m::WORKER_WAITING, &labels), 0.0);
            assert_eq!(
                sum(&body, m::WORKER_OUTSTANDING, &[("worker", "wm-1")]),
                1.0
            );
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "the running stream never showed in the worker gauges");
    streaming.await.unwrap();
    let idle = async {
        loop {
            let body = scrape(&gw).await;
            if sum(&body, m::WORKER_RUNNING, &labels) == 0.0 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let body = tokio::time::timeout(Duration::from_secs(5), idle)
        .await
        .unwrap();
    assert_eq!(sum(&body, m::WORKER_KV_CACHE, &labels), 0.0);

    // A dead worker is reported down, not left at its last figures.
    gw.sims[0].kill();
    let down = async {
        loop {
            let body = scrape(&gw).await;
            if sum(&body, m::WORKER_SCRAPE_UP, &labels) == 0.0 {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let body = tokio::time::timeout(Duration::from_secs(5), down)
        .await
        .unwrap();
    assert_eq!(sum(&body, m::WORKER_KV_CACHE, &labels), 0.0);
    assert!(!body.contains("switchyard_worker_kv_cache_usage_ratio{"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_metrics_token_is_required_when_configured() {
    let mut config = config(vec![sim("tok-1", |_| {})]);
    config.metrics.token = Some("metrics-token-0123456789".into());
    config.validate().unwrap();
    let gw = start(config).await;
    let url = format!("{}/metrics", gw.url());
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .get(&url)
        .bearer_auth("wrong-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .get(&url)
        .bearer_auth("metrics-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains(m::WORKER_STATE));
    gw.shutdown().await;
}

/// `promtool` ships in Debian's `prometheus` package; `scripts/test` installs it. Without it
/// (a developer's machine) this test says so and checks nothing, except in CI.
fn promtool() -> Option<std::path::PathBuf> {
    let found = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        // CI runs scripts/test, which installs it: there, its absence is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool missing in CI (scripts/setup-promtool.sh installs it)"
        );
        eprintln!("promtool not installed: skipping (scripts/setup-promtool.sh installs it)");
    }
    found.then(|| "promtool".into())
}

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_output_and_the_alert_rules() {
    let Some(promtool) = promtool() else { return };
    let mut config = config(vec![sim("pt-1", |s| s.model = "pt".into())]);
    config.metrics.worker_scrape_interval_ms = 50;
    // The shared limits' families exist only with Redis.
    use_redis(&mut config);
    let gw = start(config).await;
    // Every family present: traffic of each kind, and one worker scrape done.
    let resp = post(&gw, "/v1/chat/completions", &chat("pt", json!({}))).await;
    resp.bytes().await.unwrap();
    stream_to_end(&gw, "pt").await;
    let resp = post(&gw, "/v1/chat/completions", &chat("missing", json!({}))).await;
    assert_eq!(resp.status(), 404);
    switchyard_gateway::metrics::shed("pro", "queue_full");
    switchyard_gateway::metrics::retry("pt", switchyard_gateway::metrics::Retry::BeforeFirstToken);
    switchyard_gateway::metrics::hedge("pt");
    switchyard_gateway::metrics::content_log_dropped("queue_full");
    switchyard_gateway::metrics::connection_refused("public", "per_client");
    // TLS families exist only on a TLS listener (tests/tls.rs serves one).
    switchyard_gateway::metrics::content_filtered("input", "pro", "configured");
    switchyard_gateway::metrics::moderation_failed("let_through");
    switchyard_gateway::metrics::tls_handshake_failed("public");
    switchyard_gateway::metrics::tls_reload("public", true);
    switchyard_gateway::metrics::tls_certificate_expiry("public", 2_000_000_000);
    let mut body = String::new();
    for _ in 0..100 {
        body = scrape(&gw).await;
        if body.contains(&format!("{}{{", m::WORKER_KV_CACHE)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for name in m::ALL {
        assert!(
            body.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{body}"
        );
    }

    use std::io::Write;
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let rules = repo_file("deploy/prometheus/alerts.yml");
    let out = std::process::Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    gw.shutdown().await;
}

/// Every `switchyard_*` name the dashboard and the alert rules use is one the gateway
/// exports (histogram series by their family name), so a rename in `metrics.rs` breaks here.
#[test]
fn the_dashboard_and_alerts_use_only_exported_metrics() {
    let dashboard = std::fs::read_to_string(repo_file("deploy/grafana/switchyard.json")).unwrap();
    let alerts = std::fs::read_to_string(repo_file("deploy/prometheus/alerts.yml")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).unwrap();

    // The dashboard's queries, wherever panels nest them.
    fn exprs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(e)) = o.get("expr") {
                    out.push(e.clone());
                }
                o.values().for_each(|v| exprs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }
    let mut queries = Vec::new();
    exprs(&parsed, &mut queries);
    assert!(
        queries.len() >= 10,
        "dashboard has {} queries",
        queries.len()
    );
    let alert_exprs: Vec<&str> = alerts
        .lines()
        .filter(|l| l.trim_start().starts_with("expr:"))
        .collect();
    assert!(
        alert_exprs.len() >= 7,
        "{} alert expressions",
        alert_exprs.len()
    );

    let names = |text: &str| -> Vec<String> {
        let mut found = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find("switchyard_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            found.push(tail[..end].to_string());
            rest = &tail[end..];
        }
        found
    };
    let family = |name: &str| -> String {
        for suffix in ["_bucket", "_count", "_sum"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if m::ALL.contains(&base) || m::PROBER.contains(&base) {
                    return base.to_string();
                }
            }
        }
        name.to_string()
    };
    let mut used = std::collections::BTreeSet::new();
    for text in queries.iter().map(String::as_str).chain([alerts.as_str()]) {
        for name in names(text) {
            let family = family(&name);
            assert!(
                m::ALL.contains(&family.as_str()) || m::PROBER.contains(&family.as_str()),
                "'{name}' is not exported (see metrics.rs)"
            );
            used.insert(family);
        }
    }
    // The dashboard shows every family but the per-worker TTFT average, which routing uses,
    // and dropped content logs (an opt-in feature's health, alerted on by log, not charted).
    let mut shown = std::collections::BTreeSet::new();
    for q in &queries {
        shown.extend(names(q).iter().map(|n| family(n)));
    }
    for name in m::ALL
        .iter()
        .filter(|n| **n != m::WORKER_TTFT_EWMA && **n != m::CONTENT_LOG_DROPPED)
    {
        assert!(shown.contains(*name), "the dashboard does not show {name}");
    }
}

/// Counters exist at zero from the start for their known label sets (a dashboard shows 0, not
/// "no data"), latency buckets resolve a fast model, a queued request's queue time is
/// observed once, and the build and process metrics are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_start_at_zero_and_a_queued_request_is_timed_once() {
    let model = "m-zero";
    let mut one_slot = sim("zero", |s| {
        s.model = model.into();
        // 8 tokens take 0.8 s: the second request, sent at once, waits for most of that
        // however late it arrives (at 20 ms a token it sometimes waited under 0.1 s).
        s.decode_ms_per_token = 100.0;
    });
    one_slot.max_concurrency = 1;
    let gw = start(config(vec![one_slot])).await;
    let body = scrape(&gw).await;
    for (name, labels) in [
        (m::RETRIES, vec![("model", model)]),
        (m::HEDGES, vec![("model", model)]),
        (
            m::TOKENS,
            vec![("model", model), ("tier", "pro"), ("direction", "input")],
        ),
        (m::SHEDS, vec![("tier", "hobby"), ("reason", "queue_full")]),
        (m::ERRORS, vec![("class", "upstream"), ("kind", "stream")]),
        (m::CONTENT_LOG_DROPPED, vec![("reason", "queue_full")]),
        (
            m::REQUESTS,
            vec![
                ("model", model),
                ("status", "200"),
                ("route", "/v1/completions"),
            ],
        ),
    ] {
        let found = samples(&body).into_iter().any(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        });
        assert!(
            found,
            "{name}{labels:?} is not exported before its first event"
        );
    }
    let build = samples(&body)
        .into_iter()
        .find(|s| s.name == m::BUILD_INFO)
        .expect("build info");
    assert_eq!(build.value, 1.0);
    assert_eq!(build.labels["version"], env!("CARGO_PKG_VERSION"));
    assert!(sum(&body, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(sum(&body, "process_open_fds", &[]) >= 1.0);

    // Two at once on a one-slot worker: the second waits in the gateway's queue.
    let (a, b) = tokio::join!(stream_to_end(&gw, model), stream_to_end(&gw, model));
    assert_eq!((a, b), (200, 200));
    let body = scrape(&gw).await;
    assert_eq!(
        sum(&body, "switchyard_queue_seconds_count", &[("model", model)]),
        2.0,
        "each request's queue time is observed once"
    );
    assert!(
        sum(&body, "switchyard_queue_seconds_sum", &[("model", model)]) > 0.1,
        "the second request waited for the first"
    );
    // The histograms resolve a fast model: buckets from 5 ms (the first was 50 ms once).
    for le in ["0.005", "0.01", "0.025"] {
        let buckets = samples(&body).into_iter().filter(|s| {
            s.name == "switchyard_ttft_seconds_bucket"
                && s.labels.get("model").map(String::as_str) == Some(model)
                && s.labels.get("le").map(String::as_str) == Some(le)
        });
        assert_eq!(buckets.count(), 1, "no le={le} bucket");
    }
    gw.shutdown().await;
}

/// A scenario: its name, its traffic, and the alerts (objective, severity) it must raise.
type Scenario = (&'static str, Vec<Phase>, Vec<(&'static str, &'static str)>);
/// An objective: its name, the bad requests of a minute, its target in basis points.
type ObjectiveOf = (&'static str, fn(&Phase) -> u64, u32);

/// One stretch of steady traffic, per minute, by the SLI's verdict causes.
#[derive(Clone, Copy, Default)]
struct Phase {
    minutes: u64,
    good: u64,
    failed: u64,
    slow: u64,
    shed: u64,
    over_limit: u64,
}

/// The Prometheus rules in deploy/prometheus/alerts.yml and the gateway's own evaluator judge
/// the same traffic the same way: for each scenario, the gateway's decision (`slo::burn::decide`
/// over its windows, for each objective) becomes promtool's expected alerts, fed the same
/// per-minute counts as `switchyard_sli_requests_total` series.
#[test]
fn prometheus_rules_and_the_gateway_judge_the_same_traffic_alike() {
    use switchyard_config::AlertsConfig;
    use switchyard_slo::burn::{decide, Severity, WindowCounts, Windows};
    use switchyard_slo::objectives::{FIVE_XX_TARGET_BP, THROTTLED_TARGET_BP};

    let Some(promtool) = promtool() else { return };
    // The rules file spells the gateway's default thresholds and windows out.
    let config = AlertsConfig::default();
    assert_eq!(
        (
            config.page_burn_rate,
            config.ticket_burn_rate,
            config.min_requests
        ),
        (14.4, 6.0, 10)
    );
    assert_eq!(
        (
            config.page_long_window_ms,
            config.page_short_window_ms,
            config.ticket_long_window_ms,
            config.ticket_short_window_ms
        ),
        (3_600_000, 300_000, 21_600_000, 1_800_000)
    );
    let policy = switchyard_control::alerting::policy::burn_policy(&config);
    let steady = |minutes, good, failed, slow, shed, over_limit| Phase {
        minutes,
        good,
        failed,
        slow,
        shed,
        over_limit,
    };
    let scenarios: Vec<Scenario> = vec![
        (
            "5% failing for 2 h",
            vec![steady(120, 95, 5, 0, 0, 0)],
            vec![("availability", "page"), ("errors_5xx", "page")],
        ),
        (
            "0.8% failing for 7 h",
            vec![steady(420, 992, 8, 0, 0, 0)],
            vec![("availability", "ticket")],
        ),
        (
            "0.8% failing, then 40 clean minutes",
            vec![steady(380, 992, 8, 0, 0, 0), steady(40, 1_000, 0, 0, 0, 0)],
            vec![],
        ),
        (
            "5% slow first tokens: bad for availability only",
            vec![steady(120, 95, 0, 5, 0, 0)],
            vec![("availability", "page")],
        ),
        (
            "half over the tenant's limits, 0.05% failing",
            vec![steady(120, 1_999, 1, 0, 0, 2_000)],
            vec![],
        ),
        // Counted among all requests, 15 failures in 2,000 would be 0.75%: a ticket at most.
        // Among the 1,000 the SLI counts they are 1.5%: a page.
        (
            "half over the tenant's limits, 1.5% of the rest failing",
            vec![steady(120, 985, 15, 0, 0, 1_000)],
            vec![("availability", "page"), ("errors_5xx", "ticket")],
        ),
        (
            "3% shed",
            vec![steady(120, 97, 0, 0, 3, 0)],
            vec![("availability", "page"), ("errors_5xx", "page")],
        ),
        (
            "20% shed",
            vec![steady(120, 80, 0, 0, 20, 0)],
            vec![
                ("availability", "page"),
                ("errors_5xx", "page"),
                ("throttled", "page"),
            ],
        ),
        (
            "too little traffic to judge",
            vec![steady(120, 0, 0, 0, 0, 0), steady(5, 0, 1, 0, 0, 0)],
            vec![],
        ),
    ];

    let mut tests = String::new();
    for (name, phases, expected) in &scenarios {
        // Per-minute counts, oldest first.
        let per_minute: Vec<Phase> = phases
            .iter()
            .flat_map(|p| std::iter::repeat_n(*p, usize::try_from(p.minutes).unwrap()))
            .collect();
        let minutes = per_minute.len();
        // The gateway's windows over the last `len` minutes.
        let window = |len: usize, bad: fn(&Phase) -> u64| {
            let mut w = WindowCounts::default();
            for p in &per_minute[minutes - len.min(minutes)..] {
                w.add(&WindowCounts {
                    eligible: p.good + p.failed + p.slow + p.shed,
                    bad: bad(p),
                });
            }
            w
        };
        let windows = |bad: fn(&Phase) -> u64| Windows {
            short_page: window(5, bad),
            long_page: window(60, bad),
            short_ticket: window(30, bad),
            long_ticket: window(360, bad),
        };
        let objectives: [ObjectiveOf; 3] = [
            ("availability", |p| p.failed + p.slow + p.shed, 9_990),
            ("errors_5xx", |p| p.failed + p.shed, FIVE_XX_TARGET_BP),
            ("throttled", |p| p.shed, THROTTLED_TARGET_BP),
        ];
        let mut decided = Vec::new();
        for (objective, bad, slo_bp) in objectives {
            match decide(&windows(bad), slo_bp, &policy) {
                Some(Severity::Page) => decided.push((objective, "page")),
                Some(Severity::Ticket) => decided.push((objective, "ticket")),
                None => {}
            }
        }
        assert_eq!(&decided, expected, "the gateway's decision for {name:?}");

        // The same counts as counters, one sample a minute (the first is 0).
        let series = |label: &str, count: fn(&Phase) -> u64| {
            let mut total = 0;
            let mut values = vec!["0".to_string()];
            for p in &per_minute {
                total += count(p);
                values.push(total.to_string());
            }
            format!(
                "      - series: 'switchyard_sli_requests_total{{tier=\"pro\",model=\"m\",{label}}}'\n        values: '{}'\n",
                values.join(" ")
            )
        };
        tests.push_str(&format!(
            "  - name: {name:?}\n    interval: 1m\n    input_series:\n"
        ));
        tests.push_str(&series("verdict=\"good\",cause=\"none\"", |p| p.good));
        tests.push_str(&series("verdict=\"bad\",cause=\"5xx\"", |p| p.failed));
        tests.push_str(&series("verdict=\"bad\",cause=\"slow_first_token\"", |p| {
            p.slow
        }));
        tests.push_str(&series("verdict=\"bad\",cause=\"shed\"", |p| p.shed));
        tests.push_str(&series(
            "verdict=\"excluded\",cause=\"tenant_limit\"",
            |p| p.over_limit,
        ));
        for (objective, value) in [
            ("availability", 0.999),
            ("errors_5xx", 0.002),
            ("throttled", 0.01),
        ] {
            tests.push_str(&format!(
                "      - series: 'switchyard_slo_objective_ratio{{tier=\"pro\",objective=\"{objective}\"}}'\n        values: '{value}x{minutes}'\n"
            ));
        }
        tests.push_str(&format!(
            "    promql_expr_test:\n      - expr: 'ALERTS{{alertstate=\"firing\",alertname=~\"SwitchyardSLOBudgetBurn.*\"}}'\n        eval_time: {minutes}m\n        exp_samples:\n"
        ));
        for (objective, severity) in expected {
            let alert = if *severity == "page" {
                "SwitchyardSLOBudgetBurnPage"
            } else {
                "SwitchyardSLOBudgetBurnTicket"
            };
            tests.push_str(&format!(
                "          - labels: 'ALERTS{{alertname=\"{alert}\",alertstate=\"firing\",objective=\"{objective}\",severity=\"{severity}\",tier=\"pro\"}}'\n            value: 1\n"
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_file("deploy/prometheus/alerts.yml"),
        dir.path().join("alerts.yml"),
    )
    .unwrap();
    let file = dir.path().join("agreement_test.yml");
    std::fs::write(
        &file,
        format!("rule_files: [alerts.yml]\nevaluation_interval: 1m\ntests:\n{tests}"),
    )
    .unwrap();
    let out = std::process::Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Prometheus rules disagree with the gateway:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
