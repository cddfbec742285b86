//! What keeps the SLA on unreliable workers: TTFT hedging (billed once), retries that prefer
//! another provider, the retry budget, TTFT outlier ejection, and the naive baseline's lack of
//! all of these (so that `bench/chaos` compares against something real).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_config::RoutingPolicy;
use switchyard_fleet::WorkerState;
use switchyard_metering::store::UsageQuery;
use switchyard_sim::FaultConfig;
use switchyard_testkit::*;

const DEADLINE: Duration = Duration::from_secs(15);

fn failing_500() -> FaultConfig {
    FaultConfig {
        error_500: 1.0,
        ..FaultConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_first_token_is_hedged_and_the_request_billed_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    // "slow" takes 3 s to its first token; "fast" 2 ms. Every request that lands on "slow"
    // first must be hedged to "fast" after 300 ms.
    let mut c = config(vec![
        sim("slow", |s| s.prefill_base_ms = 3_000.0),
        sim("fast", |_| {}),
    ]);
    c.state.path = db.clone();
    // Where the ledger is read from after the gateway stops (SQLite file or Postgres).
    let stored = c.clone();
    c.tiers.get_mut("pro").unwrap().hedge_after_ms = 300;
    let gw = start(c).await;

    let n = 6;
    for _ in 0..n {
        let began = Instant::now();
        let resp = post(
            &gw,
            "/v1/chat/completions",
            &chat("sim-small", json!({"stream": true, "max_tokens": 8})),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let (events, err) = read_events(resp, DEADLINE).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(events.last().unwrap().data, "[DONE]");
        let first = events.first().unwrap().at.duration_since(began);
        assert!(
            first < Duration::from_millis(2_000),
            "first event after {first:?}: the hedge answered, not the 3 s worker"
        );
    }
    let slow = gw.sims[0].stats();
    let fast = gw.sims[1].stats();
    assert!(
        slow.requests >= 1,
        "the slow worker was tried first at least once"
    );
    assert_eq!(fast.completed, n, "every answer came from the fast worker");
    assert!(
        eventually(Duration::from_secs(5), || gw.sims[0].stats().in_flight == 0).await,
        "the losing attempts were cancelled, not left generating"
    );
    gw.shutdown().await;

    // Billed once: one ledger row per client request, each naming the worker that answered.
    let store = open_store(&stored).await;
    let rows = store.usage_records(&UsageQuery::default()).await.unwrap();
    assert_eq!(rows.len() as u64, n, "one row per request, hedged or not");
    assert!(rows.iter().all(|r| r.worker == "fast"), "{rows:?}");
    let billed: u64 = rows.iter().map(|r| r.completion_tokens).sum();
    assert_eq!(billed, 8 * n, "the hedge loser's tokens are not billed");
}

/// An unstreamed request reaches its worker as a stream too, so a slow first token is hedged
/// the same way; the client gets one whole answer, from the worker that answered first.
#[tokio::test]
async fn unstreamed_requests_are_hedged_on_their_first_token() {
    let mut c = config(vec![
        sim("slow", |s| s.prefill_base_ms = 3_000.0),
        sim("fast", |_| {}),
    ]);
    c.tiers.get_mut("pro").unwrap().hedge_after_ms = 300;
    let gw = start(c).await;
    for _ in 0..4 {
        let began = Instant::now();
        let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["usage"]["completion_tokens"], 8);
        assert!(
            began.elapsed() < Duration::from_millis(2_000),
            "the hedge answered"
        );
    }
    assert_eq!(
        gw.sims[1].stats().completed,
        4,
        "every answer came from the fast worker"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn retries_go_to_another_provider_first() {
    // Two failing workers of provider "a" and one good worker of provider "b"; two attempts
    // per request. A retry that stayed on provider "a" would fail the request.
    let mut bad1 = sim("a1", |s| s.faults = failing_500());
    bad1.provider = "a".into();
    let mut bad2 = sim("a2", |s| s.faults = failing_500());
    bad2.provider = "a".into();
    let mut good = sim("b1", |_| {});
    good.provider = "b".into();
    let mut c = config(vec![bad1, bad2, good]);
    c.upstream.max_attempts = 2;
    c.upstream.eject_after_failures = 1_000; // keep the bad ones in rotation for the test
    c.upstream.retry_budget_min_per_sec = 1_000;
    let gw = start(c).await;
    for _ in 0..12 {
        let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(gw.sims[2].stats().completed, 12);
    assert!(
        gw.sims[0].stats().requests + gw.sims[1].stats().requests > 0,
        "provider a was tried first for some requests"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn the_retry_budget_stops_retries_from_multiplying_an_outage() {
    // Every worker fails. Without a budget each request would cost three upstream calls.
    let mut c = config(vec![
        sim("a", |s| s.faults = failing_500()),
        sim("b", |s| s.faults = failing_500()),
        sim("c", |s| s.faults = failing_500()),
    ]);
    c.upstream.max_attempts = 3;
    c.upstream.eject_after_failures = 1_000;
    c.upstream.retry_budget_ratio = 0.1;
    c.upstream.retry_budget_min_per_sec = 0;
    let gw = start(c).await;
    let n = 40u64;
    for _ in 0..n {
        let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
        assert_eq!(resp.status(), 502);
    }
    let upstream_calls: u64 = gw.sims.iter().map(|s| s.stats().requests).sum();
    // One call per request, plus the starting balance of one retry, plus 10% of 40.
    assert!(
        upstream_calls <= n + 1 + n / 10,
        "{upstream_calls} upstream calls for {n} requests"
    );
    assert!(upstream_calls > n, "the budget still allows some retries");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_worker_far_slower_than_its_pool_is_ejected_as_an_outlier() {
    let mut c = config(vec![
        sim("w1", |_| {}),
        sim("w2", |_| {}),
        sim("laggard", |s| s.prefill_base_ms = 400.0),
    ]);
    // Routing stops choosing the laggard as soon as it is measured slow, so here one sample
    // must be enough to judge (the default, 5, matters under load).
    c.outlier.ttft_min_samples = 1;
    c.outlier.ttft_min_excess_ms = 100;
    c.outlier.base_ejection_ms = 60_000;
    let gw = start(c).await;
    let laggard = gw.state.fleet.worker("laggard").unwrap();
    for _ in 0..40 {
        let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
        assert_eq!(resp.status(), 200);
        if laggard.state() == WorkerState::Ejected {
            break;
        }
    }
    assert_eq!(laggard.state(), WorkerState::Ejected);
    let reason = laggard.health_view().reason;
    assert!(reason.contains("TTFT outlier"), "{reason}");
    let after = gw.sims[2].stats().requests;
    for _ in 0..10 {
        post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
    }
    assert_eq!(
        gw.sims[2].stats().requests,
        after,
        "no traffic while ejected"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn outlier_ejection_never_takes_out_most_of_a_pool() {
    // Two slow workers and one fast: ejecting both slow ones would leave a third of the pool.
    let mut c = config(vec![
        sim("fast", |_| {}),
        sim("slow1", |s| s.prefill_base_ms = 300.0),
        sim("slow2", |s| s.prefill_base_ms = 300.0),
    ]);
    c.outlier.ttft_min_samples = 1;
    c.outlier.ttft_min_excess_ms = 100;
    c.outlier.ttft_factor = 2.0;
    c.outlier.base_ejection_ms = 60_000;
    c.outlier.max_ejected_percent = 50;
    let gw = start(c).await;
    for _ in 0..40 {
        post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
    }
    let ejected = gw
        .state
        .fleet
        .workers()
        .iter()
        .filter(|w| w.state() == WorkerState::Ejected)
        .count();
    assert_eq!(
        ejected, 1,
        "the first slow worker goes, the second would be two thirds"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn the_round_robin_baseline_neither_retries_nor_ejects() {
    let mut c = config(vec![
        sim("bad", |s| s.faults = failing_500()),
        sim("good", |_| {}),
    ]);
    c.routing.policy = RoutingPolicy::RoundRobin;
    c.upstream.eject_after_failures = 1;
    let gw = start(c).await;
    let mut failed = 0;
    for _ in 0..10 {
        let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
        if resp.status() != 200 {
            failed += 1;
        }
    }
    assert_eq!(
        failed, 5,
        "every other request fails: no retry, no ejection"
    );
    assert!(gw.state.fleet.worker("bad").unwrap().is_healthy());
    gw.shutdown().await;
}

#[tokio::test]
async fn synthetic_probes_eject_a_worker_too_slow_for_the_slo_and_pass_the_others() {
    let mut c = config(vec![
        sim("quick", |_| {}),
        sim("sluggish", |s| s.prefill_base_ms = 700.0),
    ]);
    c.probes.interval_ms = 200;
    c.probes.ttft_limit_ms = 300;
    c.probes.ttlt_limit_ms = 2_000;
    c.upstream.eject_after_failures = 1;
    c.outlier.base_ejection_ms = 60_000;
    let gw = start(c).await;
    let sluggish = gw.state.fleet.worker("sluggish").unwrap();
    let quick = gw.state.fleet.worker("quick").unwrap();
    assert!(
        eventually(Duration::from_secs(8), || sluggish.state()
            == WorkerState::Ejected)
        .await,
        "ejected by a probe, without any client traffic"
    );
    let view = sluggish.health_view();
    assert!(
        view.reason.contains("synthetic probe: TTFT"),
        "{}",
        view.reason
    );
    let probe = view.last_probe.unwrap();
    assert!(
        !probe.passed && probe.ttft_ms.unwrap() >= 600.0,
        "{probe:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || quick
            .health_view()
            .last_probe
            .is_some_and(|p| p.passed))
        .await
    );
    assert_eq!(quick.state(), WorkerState::Ready);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_hung_worker_whose_requests_are_hedged_away_is_still_ejected() {
    let hang = FaultConfig {
        hang: 1.0,
        ..FaultConfig::default()
    };
    let mut c = config(vec![
        sim("hung", |s| s.faults = hang),
        sim("ok1", |_| {}),
        sim("ok2", |_| {}),
    ]);
    c.tiers.get_mut("pro").unwrap().hedge_after_ms = 200;
    c.upstream.hedge_budget_ratio = 1.0;
    c.outlier.ttft_min_samples = 1;
    c.outlier.ttft_min_excess_ms = 100;
    c.outlier.base_ejection_ms = 60_000;
    let gw = start(c).await;
    let hung = gw.state.fleet.worker("hung").unwrap();
    for _ in 0..12 {
        let resp = post(
            &gw,
            "/v1/chat/completions",
            &chat("sim-small", json!({"stream": true})),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let (events, _) = read_events(resp, DEADLINE).await;
        assert_eq!(
            events.last().unwrap().data,
            "[DONE]",
            "hedged to a live worker"
        );
        if hung.state() == WorkerState::Ejected {
            break;
        }
    }
    assert_eq!(hung.state(), WorkerState::Ejected);
    assert!(
        hung.health_view().reason.contains("TTFT outlier"),
        "{}",
        hung.health_view().reason
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_broken_mid_way_goes_on_on_another_worker_and_is_billed_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    // "cutter" aborts every stream after 5 tokens; "steady" never does. Replies are exactly
    // max_tokens (20) long.
    let cut = FaultConfig {
        cut_stream: 1.0,
        cut_after_tokens: 5,
        ..FaultConfig::default()
    };
    let mut c = config(vec![
        sim("cutter", |s| {
            s.faults = cut;
            s.natural_tokens = 1_000;
        }),
        sim("steady", |s| s.natural_tokens = 1_000),
    ]);
    c.state.path = db.clone();
    // Where the ledger is read from after the gateway stops (SQLite file or Postgres).
    let stored = c.clone();
    c.upstream.eject_after_failures = 1_000; // keep the cutter in rotation for the test
    c.upstream.retry_budget_min_per_sec = 1_000;
    c.tiers.get_mut("pro").unwrap().hedge_after_ms = 0;
    let gw = start(c).await;
    let n = 8u64;
    for _ in 0..n {
        let body = chat(
            "sim-small",
            json!({"stream": true, "max_tokens": 20, "stream_options": {"include_usage": true}}),
        );
        let resp = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 200);
        let (events, err) = read_events(resp, DEADLINE).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            events.last().unwrap().data,
            "[DONE]",
            "no error event: the stream went on"
        );
        let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
            .iter()
            .map(|e| e.json())
            .collect();
        assert!(
            chunks.iter().all(|c| c.get("error").is_none()),
            "{chunks:?}"
        );
        let ids: std::collections::BTreeSet<String> = chunks
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 1, "one id for the whole stream: {ids:?}");
        let content: usize = chunks
            .iter()
            .filter(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
            })
            .count();
        assert_eq!(content, 20, "the client got the whole answer");
        let usage = &chunks.last().unwrap()["usage"];
        assert_eq!(usage["completion_tokens"], 20, "{usage}");
    }
    let cutter = gw.sims[0].stats();
    assert!(
        cutter.requests > 0,
        "some streams started on the cutter and were resumed"
    );
    gw.shutdown().await;

    let store = open_store(&stored).await;
    let rows = store.usage_records(&UsageQuery::default()).await.unwrap();
    assert_eq!(rows.len() as u64, n, "one ledger row per client request");
    assert!(rows.iter().all(|r| r.completion_tokens == 20), "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r.status == switchyard_metering::UsageStatus::Completed));
}

/// A stream broken mid-way whose continuation's worker then fails before its first byte (a
/// sibling of a dying worker that still looked ready) goes on on a third worker: the client
/// sees one whole answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_that_cannot_open_goes_on_on_another_worker() {
    // By price, every first attempt goes to "failing" (500 at once, retried before the first
    // byte), then to "cutter" (cut after 5 tokens), and its continuation to "failing" again
    // before "steady": the path a resumed stream takes when a provider dies.
    let mut c = config(vec![
        sim("failing", |s| {
            s.faults = FaultConfig {
                error_500: 1.0,
                ..FaultConfig::default()
            };
        }),
        sim("cutter", |s| {
            s.faults = FaultConfig {
                cut_stream: 1.0,
                cut_after_tokens: 5,
                ..FaultConfig::default()
            };
            s.natural_tokens = 1_000;
        }),
        sim("steady", |s| s.natural_tokens = 1_000),
    ]);
    for (w, price) in c.sim_workers.iter_mut().zip([0.5, 1.0, 2.0]) {
        w.price_per_hour = price;
    }
    c.upstream.eject_after_failures = 1_000; // keep "failing" in rotation for the test
    c.upstream.retry_budget_min_per_sec = 1_000;
    c.tiers.get_mut("pro").unwrap().hedge_after_ms = 0;
    let gw = start(c).await;
    let n = 4u64;
    for _ in 0..n {
        let body = chat("sim-small", json!({"stream": true, "max_tokens": 20}));
        let resp = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 200);
        let (events, err) = read_events(resp, DEADLINE).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(events.last().unwrap().data, "[DONE]", "the stream went on");
        let content = events[..events.len() - 1]
            .iter()
            .filter(|e| {
                e.json()["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
            })
            .count();
        assert_eq!(content, 20, "the client got the whole answer");
    }
    let (failing, cutter, steady) = (gw.sims[0].stats(), gw.sims[1].stats(), gw.sims[2].stats());
    assert_eq!(cutter.requests, n, "every stream started on the cutter");
    assert_eq!(
        failing.requests,
        2 * n,
        "each request failed there twice: its first attempt and its continuation"
    );
    assert_eq!(steady.requests, n, "every continuation ended on steady");
    gw.shutdown().await;
}

/// A continuation that breaks before relaying a token (it went to a worker that took it and
/// died too) is replaced without spending `max_resumes` (1 here): the client saw no progress
/// from it, and gets one whole answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_that_breaks_before_its_first_token_is_replaced() {
    // By price, every stream starts on "cutter" (cut after 5 tokens), its continuation goes
    // to "dropper" (aborts before any token), and the replacement to "steady".
    let cut_after = |tokens| FaultConfig {
        cut_stream: 1.0,
        cut_after_tokens: tokens,
        ..FaultConfig::default()
    };
    let mut c = config(vec![
        sim("cutter", |s| {
            s.faults = cut_after(5);
            s.natural_tokens = 1_000;
        }),
        sim("dropper", |s| {
            s.faults = cut_after(0);
            s.natural_tokens = 1_000;
        }),
        sim("steady", |s| s.natural_tokens = 1_000),
    ]);
    for (w, price) in c.sim_workers.iter_mut().zip([0.5, 1.0, 2.0]) {
        w.price_per_hour = price;
    }
    c.upstream.eject_after_failures = 1_000;
    c.upstream.retry_budget_min_per_sec = 1_000;
    c.tiers.get_mut("pro").unwrap().hedge_after_ms = 0;
    let gw = start(c).await;
    let n = 4u64;
    for _ in 0..n {
        let body = chat("sim-small", json!({"stream": true, "max_tokens": 20}));
        let resp = post(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(resp.status(), 200);
        let (events, err) = read_events(resp, DEADLINE).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(events.last().unwrap().data, "[DONE]", "the stream went on");
        let text = joined_content(&events[..events.len() - 1]);
        assert!(!text.is_empty());
    }
    let (cutter, dropper, steady) = (gw.sims[0].stats(), gw.sims[1].stats(), gw.sims[2].stats());
    assert_eq!(cutter.requests, n, "every stream started on the cutter");
    assert_eq!(
        dropper.requests, n,
        "every continuation went to the dropper first"
    );
    assert_eq!(steady.requests, n, "and was replaced on steady");
    gw.shutdown().await;
}

/// An unstreamed answer whose worker dies mid-way is finished elsewhere: resumed (vLLM chat)
/// or, where it cannot be, started over (its client has seen nothing). The client gets one
/// whole answer either way, and the ledger one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unstreamed_answer_cut_mid_way_is_finished_on_another_worker() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let cut = FaultConfig {
        cut_stream: 1.0,
        cut_after_tokens: 5,
        ..FaultConfig::default()
    };
    let mut c = config(vec![
        sim("cutter", |s| {
            s.faults = cut;
            s.natural_tokens = 1_000;
        }),
        sim("steady", |s| s.natural_tokens = 1_000),
    ]);
    c.state.path = db.clone();
    // Where the ledger is read from after the gateway stops (SQLite file or Postgres).
    let stored = c.clone();
    c.upstream.eject_after_failures = 1_000;
    c.upstream.retry_budget_min_per_sec = 1_000;
    c.tiers.get_mut("pro").unwrap().hedge_after_ms = 0;
    let gw = start(c).await;
    let n = 8u64;
    // Chat (resumable) and tool-using chat (not resumable: started over).
    for i in 0..n {
        let mut extra = json!({"max_tokens": 20});
        if i % 2 == 1 {
            extra["tools"] =
                json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
        }
        let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", extra)).await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["usage"]["completion_tokens"], 20, "{body}");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
    }
    assert!(
        gw.sims[0].stats().requests > 0,
        "some answers started on the cutter"
    );
    gw.shutdown().await;
    let store = open_store(&stored).await;
    let rows = store.usage_records(&UsageQuery::default()).await.unwrap();
    assert_eq!(rows.len() as u64, n, "one ledger row per client request");
    assert!(
        rows.iter()
            .all(|r| r.completion_tokens == 20 && r.http_status == 200),
        "{rows:?}"
    );
}

/// `max_attempts` bounds the workers one request is sent to over everything the gateway does
/// for it: a worker that failed before the first token and one whose answer broke after it
/// are two attempts, and with `max_attempts = 2` there is no third, started over or not.
#[tokio::test]
async fn max_attempts_counts_every_worker_a_request_was_sent_to() {
    let mut c = config(vec![
        sim("fails", |s| {
            s.faults = FaultConfig {
                error_500: 1.0,
                ..FaultConfig::default()
            };
        }),
        sim("breaks", |s| {
            s.faults = FaultConfig {
                cut_stream: 1.0,
                cut_after_tokens: 3,
                ..FaultConfig::default()
            };
        }),
    ]);
    c.upstream.max_attempts = 2;
    c.upstream.eject_after_failures = 1_000;
    c.upstream.retry_budget_min_per_sec = 1_000;
    c.tiers.get_mut("pro").unwrap().hedge_after_ms = 0;
    let gw = start(c).await;
    // Tools: not resumable, so a broken answer can only start over.
    let body = chat(
        "sim-small",
        json!({"max_tokens": 20, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}),
    );
    for round in 1..=4u64 {
        let resp = post(&gw, "/v1/chat/completions", &body).await;
        assert!(resp.status().is_server_error(), "{}", resp.status());
        let sent: u64 = gw.sims.iter().map(|s| s.stats().requests).sum();
        assert_eq!(
            sent,
            2 * round,
            "two workers per request, never a third attempt"
        );
    }
    gw.shutdown().await;
}
