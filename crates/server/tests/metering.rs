//! Billing-grade metering under load: every request that reached a worker is in the ledger
//! exactly once, the ledger's tokens equal what the workers generated, and a token limit holds
//! under a parallel burst.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use switchyard_metering::store::UsageQuery;
use switchyard_metering::UsageStatus;
use switchyard_sim::FaultConfig;
use switchyard_testkit::*;

fn roomy(c: &mut switchyard_gateway::Config) {
    let pro = c.tiers.get_mut("pro").unwrap();
    pro.requests_per_minute = 1_000_000;
    pro.tokens_per_minute = 1_000_000_000;
    pro.max_concurrent = 100_000;
    // A hedge's loser generates tokens nobody is billed for (by design); these tests compare
    // the ledger with what the workers generated, so no hedging here.
    pro.hedge_after_ms = 0;
}

/// `switchyard_retries_total{model="sim-small",kind="restart"}` in a scrape.
fn restarts(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("switchyard_retries_total{")
                && l.contains(r#"model="sim-small""#)
                && l.contains(r#"kind="restart""#)
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

async fn ledger(config: &switchyard_server::Config) -> Vec<switchyard_metering::UsageRecord> {
    let store = open_store(config).await;
    store.usage_records(&UsageQuery::default()).await.unwrap()
}

/// Thousands of requests, streamed and not, through workers that fail before the first byte,
/// cut streams mid-way and return 500s. No client disconnects here, so the ledger must match
/// the workers token for token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_matches_what_workers_generated_under_faults() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let faults = |cut: f64, e500: f64| FaultConfig {
        cut_stream: cut,
        cut_after_tokens: 3,
        error_500: e500,
        ..FaultConfig::default()
    };
    let mut c = config(vec![
        sim("a", |s| s.faults = faults(0.1, 0.05)),
        sim("b", |s| s.faults = faults(0.0, 0.1)),
        sim("c", |_| {}),
    ]);
    c.state.path = db.clone();
    // Where the ledger is read from after the gateway stops (SQLite file or Postgres).
    let stored = c.clone();
    c.upstream.eject_after_failures = 1_000_000;
    // Cut streams must reach the client cut here (the ledger's side of a broken stream is
    // what is tested); resumed streams have their own test in resilience.rs.
    c.upstream.max_resumes = 0;
    // Every request must be served: `max_attempts` counts every worker a request is sent to,
    // starts-over included, and a 500, a cut and another 500 in a row would use up the
    // default 3 about once in these 2,000 requests.
    c.upstream.max_attempts = 8;
    roomy(&mut c);
    let gw = Arc::new(start(c).await);

    let total = 2_000u64;
    let client_completion = Arc::new(AtomicU64::new(0));
    let mid_stream_errors = Arc::new(AtomicU64::new(0));
    let requests = futures::stream::iter(0..total).map(|i| {
        let gw = gw.clone();
        let client_completion = client_completion.clone();
        let mid_stream_errors = mid_stream_errors.clone();
        async move {
            let stream = i % 2 == 0;
            let body = chat("sim-small", json!({"stream": stream, "max_tokens": 1 + i % 12, "stream_options": {"include_usage": true}}));
            let body = if stream { body } else { let mut b = body; b.as_object_mut().unwrap().remove("stream_options"); b };
            let resp = post(&gw, "/v1/chat/completions", &body).await;
            assert_eq!(resp.status(), 200);
            if stream {
                let (events, _) = read_events(resp, Duration::from_secs(30)).await;
                let last = events.last().unwrap();
                if last.data == "[DONE]" {
                    let usage = &events[events.len() - 2].json()["usage"];
                    client_completion.fetch_add(usage["completion_tokens"].as_u64().unwrap(), Ordering::Relaxed);
                } else {
                    assert!(last.json()["error"].is_object());
                    mid_stream_errors.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                let v: Value = resp.json().await.unwrap();
                client_completion.fetch_add(v["usage"]["completion_tokens"].as_u64().unwrap(), Ordering::Relaxed);
            }
        }
    });
    requests.buffer_unordered(64).collect::<Vec<()>>().await;

    let generated: u64 = gw
        .sims
        .iter()
        .map(|s| s.stats().completion_tokens_generated)
        .sum();
    let gw_metrics = scrape_metrics(&gw).await;
    let gw = Arc::try_unwrap(gw).ok().unwrap();
    gw.shutdown().await; // flushes the ledger
    let rows = ledger(&stored).await;

    assert_eq!(
        rows.len() as u64,
        total,
        "one ledger row per request, none missing or doubled"
    );
    let mut ids: Vec<_> = rows.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, total);
    // Unstreamed answers reach their workers as streams too; one that was cut starts over on
    // another worker (its client had received nothing), and the 3 tokens the cut attempt
    // generated are not billed to anyone. Everything else generated is in the ledger.
    let restarts = restarts(&gw_metrics);
    assert!(
        restarts > 0,
        "the fault schedule cut some unstreamed answers"
    );
    let ledger_completion: u64 = rows.iter().map(|r| r.completion_tokens).sum();
    assert_eq!(
        ledger_completion + 3 * restarts,
        generated,
        "ledger tokens = tokens the workers generated, less those of answers started over"
    );
    let failed_mid = rows
        .iter()
        .filter(|r| r.status == UsageStatus::FailedMidStream)
        .count() as u64;
    assert_eq!(failed_mid, mid_stream_errors.load(Ordering::Relaxed));
    assert!(failed_mid > 0, "the fault schedule cut some streams");
    let completed: u64 = rows
        .iter()
        .filter(|r| r.status == UsageStatus::Completed)
        .map(|r| r.completion_tokens)
        .sum();
    assert_eq!(
        completed,
        client_completion.load(Ordering::Relaxed),
        "billed = what clients were told"
    );
    assert!(rows.iter().all(|r| r.cost > 0 && r.tenant_id == "dev"));
}

/// Clients that hang up mid-stream are billed for what was relayed to them before they left,
/// never more than the workers generated, and each such request is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnects_are_billed_once_and_never_more_than_generated() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let mut c = config(vec![
        sim("a", |s| s.decode_ms_per_token = 2.0),
        sim("b", |s| s.decode_ms_per_token = 2.0),
    ]);
    c.state.path = db.clone();
    // Where the ledger is read from after the gateway stops (SQLite file or Postgres).
    let stored = c.clone();
    roomy(&mut c);
    let gw = Arc::new(start(c).await);
    let total = 600u64;
    let received = Arc::new(AtomicU64::new(0));
    let requests = futures::stream::iter(0..total).map(|i| {
        let gw = gw.clone();
        let received = received.clone();
        async move {
            let resp = post(
                &gw,
                "/v1/chat/completions",
                &chat("sim-small", json!({"stream": true, "max_tokens": 40})),
            )
            .await;
            assert_eq!(resp.status(), 200);
            let mut body = resp.bytes_stream();
            let keep = (i % 7) as usize; // frames to read before hanging up (0..6); 0 = read all
            let mut frames = 0;
            while let Some(Ok(chunk)) = body.next().await {
                frames += String::from_utf8_lossy(&chunk)
                    .matches("\"content\":\"")
                    .count();
                if keep > 0 && frames >= keep {
                    break;
                }
            }
            received.fetch_add(frames as u64, Ordering::Relaxed);
        }
    });
    requests.buffer_unordered(48).collect::<Vec<()>>().await;
    let sims_done = {
        let gw = gw.clone();
        eventually(Duration::from_secs(10), move || {
            gw.sims.iter().all(|s| s.stats().in_flight == 0)
        })
        .await
    };
    assert!(sims_done, "cancelled generations stopped");
    let generated: u64 = gw
        .sims
        .iter()
        .map(|s| s.stats().completion_tokens_generated)
        .sum();
    let gw = Arc::try_unwrap(gw).ok().unwrap();
    gw.shutdown().await;
    let rows = ledger(&stored).await;
    assert_eq!(rows.len() as u64, total);
    let billed: u64 = rows.iter().map(|r| r.completion_tokens).sum();
    let disconnected = rows
        .iter()
        .filter(|r| r.status == UsageStatus::ClientDisconnected)
        .count();
    assert!(disconnected > 0);
    assert!(
        billed <= generated,
        "billed {billed} > generated {generated}"
    );
    assert!(
        billed >= received.load(Ordering::Relaxed),
        "every token a client received is billed"
    );
}

/// 40 parallel streams against a 2,000 tokens/minute limit: the tokens admitted never exceed
/// the limit, the rest get 429 with Retry-After and the rate-limit headers.
#[tokio::test]
async fn a_parallel_burst_never_overshoots_the_token_limit() {
    let mut c = config(vec![sim("a", |s| s.decode_ms_per_token = 5.0)]);
    let pro = c.tiers.get_mut("pro").unwrap();
    pro.tokens_per_minute = 2_000;
    pro.requests_per_minute = 10_000;
    let gw = start(c).await;
    let body = chat("sim-small", json!({"stream": true, "max_tokens": 300}));
    let responses =
        futures::future::join_all((0..40).map(|_| post(&gw, "/v1/chat/completions", &body))).await;
    let mut admitted = 0;
    let mut limited = 0;
    let mut streams = Vec::new();
    for resp in responses {
        match resp.status().as_u16() {
            200 => {
                admitted += 1;
                streams.push(read_events(resp, Duration::from_secs(10)));
            }
            429 => {
                limited += 1;
                let h = resp.headers();
                assert!(
                    h.get("retry-after")
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                        >= 1
                );
                assert_eq!(h["x-ratelimit-limit-tokens"], "2000");
                assert!(h.contains_key("x-ratelimit-remaining-tokens"));
                assert!(h.contains_key("x-ratelimit-reset-tokens"));
                let v: Value = resp.json().await.unwrap();
                assert_eq!(v["error"]["type"], "rate_limit_error");
            }
            s => panic!("unexpected status {s}"),
        }
    }
    // Each reserves 300 + its prompt estimate (~10): six fit in 2,000, the seventh does not.
    assert_eq!(admitted, 6, "admitted {admitted}");
    assert_eq!(limited, 34);
    let generated: u64 = futures::future::join_all(streams).await.len() as u64;
    assert_eq!(generated, 6);
    assert!(gw.sims[0].stats().completion_tokens_generated <= 2_000);
    gw.shutdown().await;
}

#[tokio::test]
async fn remaining_counts_go_down_and_come_back_after_settling() {
    let mut c = config(vec![sim("a", |_| {})]);
    let pro = c.tiers.get_mut("pro").unwrap();
    // Six a minute: one comes back every 10 s, far longer than these six requests take even
    // on a loaded machine (at 100 a minute one came back every 0.6 s, and a slow request let
    // the count stand still).
    pro.requests_per_minute = 6;
    pro.tokens_per_minute = 100_000;
    let gw = start(c).await;
    let mut last_requests = u64::MAX;
    for _ in 0..5 {
        let resp = post(
            &gw,
            "/v1/chat/completions",
            &chat("sim-small", json!({"max_tokens": 1000})),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        let remaining: u64 = h["x-ratelimit-remaining-requests"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            remaining < last_requests,
            "remaining requests go down: {remaining} after {last_requests}"
        );
        last_requests = remaining;
        let tokens: u64 = h["x-ratelimit-remaining-tokens"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // At admission the whole 1,000-token completion is held; settling gives most back.
        assert!(tokens <= 100_000 - 1_000, "{tokens}");
    }
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"max_tokens": 10})),
    )
    .await;
    let tokens: u64 = resp.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        tokens > 100_000 - 1_000,
        "unused reservations were refunded: {tokens}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn tier_caps_clamp_max_tokens_visibly_and_refuse_long_prompts() {
    let mut c = config(vec![sim("a", |_| {})]);
    let pro = c.tiers.get_mut("pro").unwrap();
    pro.max_tokens = 16;
    pro.max_prompt_tokens = 50;
    let gw = start(c).await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"max_tokens": 500})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-max-tokens"], "16");
    assert_eq!(resp.headers()["x-switchyard-max-tokens-clamped"], "true");
    let v: Value = resp.json().await.unwrap();
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 16);
    let long = json!({"messages": [{"role": "user", "content": "word ".repeat(100)}]});
    let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", long)).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    gw.shutdown().await;
}
