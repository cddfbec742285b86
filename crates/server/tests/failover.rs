//! Failover before the first byte, health checks, and the statuses of a fleet in trouble.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_fleet::{RuntimeKind, WorkerState};
use switchyard_sim::FaultConfig;
use switchyard_testkit::*;

const DEADLINE: Duration = Duration::from_secs(10);

fn faulty(f: FaultConfig) -> impl FnOnce(&mut switchyard_sim::SimConfig) {
    move |s| s.faults = f
}

#[tokio::test]
async fn requests_fail_over_to_another_worker_before_the_first_byte() {
    for fault in [
        FaultConfig {
            refuse: 1.0,
            ..FaultConfig::default()
        },
        FaultConfig {
            error_500: 1.0,
            ..FaultConfig::default()
        },
        // Cut before any token: the stream never started for the client, so it is retried.
        FaultConfig {
            cut_stream: 1.0,
            cut_after_tokens: 0,
            ..FaultConfig::default()
        },
    ] {
        let mut c = config(vec![sim("bad", faulty(fault.clone())), sim("good", |_| {})]);
        c.upstream.eject_after_failures = 1000; // keep the bad worker in rotation for the test
        let gw = start(c).await;
        for stream in [false, true] {
            for _ in 0..6 {
                let resp = post(
                    &gw,
                    "/v1/chat/completions",
                    &chat("sim-small", json!({"stream": stream})),
                )
                .await;
                assert_eq!(resp.status(), 200, "{fault:?}");
                if stream {
                    let (events, _) = read_events(resp, DEADLINE).await;
                    assert_eq!(events.last().unwrap().data, "[DONE]", "{fault:?}");
                }
            }
        }
        assert!(gw.sims[0].stats().requests > 0, "the bad worker was tried");
        assert_eq!(gw.sims[1].stats().completed, 12, "{fault:?}");
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn a_worker_that_keeps_failing_leaves_rotation() {
    let mut c = config(vec![
        sim(
            "bad",
            faulty(FaultConfig {
                error_500: 1.0,
                ..FaultConfig::default()
            }),
        ),
        sim("good", |_| {}),
    ]);
    c.upstream.eject_after_failures = 2;
    c.health.interval_ms = 60_000; // only live traffic decides here
    let gw = start(c).await;
    for _ in 0..6 {
        assert_eq!(
            post(&gw, "/v1/chat/completions", &chat("sim-small", json!({})))
                .await
                .status(),
            200
        );
    }
    assert!(
        !gw.state.fleet.workers()[0].is_healthy(),
        "ejected after consecutive 5xx"
    );
    assert_eq!(
        gw.sims[0].stats().requests,
        2,
        "not tried again once ejected"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn an_ejected_worker_serves_its_ejection_then_returns_on_probation() {
    let mut c = config(vec![
        sim(
            "flaky",
            faulty(FaultConfig {
                error_500: 1.0,
                ..FaultConfig::default()
            }),
        ),
        sim("good", |_| {}),
    ]);
    c.upstream.eject_after_failures = 1;
    c.health.interval_ms = 100;
    c.outlier.base_ejection_ms = 1_500;
    c.outlier.probation_successes = 2;
    let gw = start(c).await;
    let fleet = gw.state.fleet.clone();
    let flaky = fleet.worker("flaky").unwrap();
    while flaky.is_healthy() {
        assert_eq!(
            post(&gw, "/v1/chat/completions", &chat("sim-small", json!({})))
                .await
                .status(),
            200
        );
    }
    let ejected_at = std::time::Instant::now();
    assert_eq!(flaky.state(), WorkerState::Ejected);
    assert!(
        flaky.health_view().reason.contains("500"),
        "{}",
        flaky.health_view().reason
    );
    // Its health checks pass at once (the sim's faults hit inference only), but the ejection
    // is served in full: live traffic is the stronger verdict.
    gw.sims[0].set_faults(FaultConfig::default());
    let checked = gw.sims[0].stats().health_checks;
    assert!(
        gw.sims[0]
            .wait_until(|s| s.health_checks >= checked + 3, Duration::from_secs(5))
            .await,
        "three more health checks"
    );
    assert_eq!(
        flaky.state(),
        WorkerState::Ejected,
        "health checks do not cut an ejection short"
    );
    assert!(
        eventually(Duration::from_secs(5), || flaky.state()
            == WorkerState::Probation)
        .await,
        "back on probation after the ejection"
    );
    assert!(ejected_at.elapsed() >= Duration::from_millis(1_400));
    // Probation: successes put it back in full rotation.
    let before = gw.sims[0].stats().requests;
    for _ in 0..20 {
        let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
        assert_eq!(resp.status(), 200);
        if flaky.state() == WorkerState::Ready {
            break;
        }
    }
    assert_eq!(flaky.state(), WorkerState::Ready);
    assert_eq!(
        gw.sims[0].stats().requests - before,
        2,
        "two successes on probation"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn client_errors_from_a_worker_are_relayed_and_do_not_count_against_it() {
    // The sim refuses a request larger than its whole KV cache with a 400, as vLLM does.
    let mut c = config(vec![sim("a", |s| s.kv_capacity_tokens = 64)]);
    c.upstream.eject_after_failures = 1;
    let gw = start(c).await;
    for _ in 0..3 {
        let resp = post(
            &gw,
            "/v1/chat/completions",
            &chat("sim-small", json!({"max_tokens": 1000})),
        )
        .await;
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"]["message"].is_string());
    }
    assert!(
        gw.state.fleet.workers()[0].is_healthy(),
        "a client's 4xx never ejects a worker"
    );
    assert_eq!(
        gw.sims[0].stats().requests,
        3,
        "and it is not retried elsewhere"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn no_healthy_worker_is_a_503_with_retry_after() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    gw.sims[0].kill();
    let fleet = gw.state.fleet.clone();
    assert!(
        eventually(Duration::from_secs(5), || !fleet.workers()[0].is_healthy()).await,
        "the health check notices"
    );
    let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_healthy_worker");
    let ready = client()
        .get(format!("{}/readyz", gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_hung_worker_gives_504_without_retry_budget_and_is_bypassed_with_it() {
    let mut c = config(vec![sim(
        "hung",
        faulty(FaultConfig {
            hang: 1.0,
            ..FaultConfig::default()
        }),
    )]);
    c.upstream.request_timeout_ms = 300;
    c.upstream.first_token_timeout_ms = 300;
    c.upstream.max_attempts = 1;
    let gw = start(c).await;
    for stream in [false, true] {
        let resp = post(
            &gw,
            "/v1/chat/completions",
            &chat("sim-small", json!({"stream": stream})),
        )
        .await;
        assert_eq!(resp.status(), 504, "stream={stream}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "upstream_timeout");
    }
    gw.shutdown().await;

    let mut c = config(vec![
        sim(
            "hung",
            faulty(FaultConfig {
                hang: 1.0,
                ..FaultConfig::default()
            }),
        ),
        sim("ok", |_| {}),
    ]);
    c.upstream.first_token_timeout_ms = 300;
    c.upstream.request_timeout_ms = 300;
    let gw = start(c).await;
    for stream in [false, true] {
        for _ in 0..3 {
            let resp = post(
                &gw,
                "/v1/chat/completions",
                &chat("sim-small", json!({"stream": stream})),
            )
            .await;
            assert_eq!(resp.status(), 200);
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn load_goes_to_the_least_busy_worker() {
    let gw = start(config(vec![
        sim("a", |s| s.decode_ms_per_token = 10.0),
        sim("b", |s| s.decode_ms_per_token = 10.0),
    ]))
    .await;
    // Long enough (1 s) that all eight are in flight together even on a loaded machine.
    let body = chat("sim-small", json!({"max_tokens": 100}));
    let requests = (0..8).map(|_| post(&gw, "/v1/chat/completions", &body));
    let responses = futures::future::join_all(requests).await;
    assert!(responses.iter().all(|r| r.status() == 200));
    let (a, b) = (gw.sims[0].stats().requests, gw.sims[1].stats().requests);
    assert_eq!((a, b), (4, 4), "8 concurrent requests spread evenly");
    gw.shutdown().await;
}

#[tokio::test]
async fn tgi_native_workers_are_translated_both_ways() {
    let mut s = sim("tgi", |_| {});
    s.runtime = RuntimeKind::TgiNative;
    let gw = start(config(vec![s])).await;

    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"max_tokens": 5})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(!body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    assert_eq!(body["usage"]["completion_tokens"], 5);
    let prompt = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt > 0);

    let stream = chat(
        "sim-small",
        json!({"max_tokens": 5, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let (events, _) = read_events(post(&gw, "/v1/chat/completions", &stream).await, DEADLINE).await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let usage = &events[events.len() - 2].json()["usage"];
    assert_eq!(usage["completion_tokens"], 5);
    assert_eq!(
        usage["prompt_tokens"].as_u64().unwrap(),
        prompt,
        "streamed and unstreamed agree"
    );
    assert!(!joined_content(&events).is_empty());

    let resp = post(
        &gw,
        "/v1/completions",
        &json!({"model": "sim-small", "prompt": "Once", "max_tokens": 3}),
    )
    .await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["usage"]["completion_tokens"], 3);

    let seen: Value = client()
        .get(format!("{}/sim/last_request", gw.sims[0].url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Unstreamed for the client, streamed from the worker (the gateway assembles the answer).
    assert_eq!(seen["path"], "/generate_stream");
    assert_eq!(seen["body"]["parameters"]["max_new_tokens"], 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_stream_finish() {
    let gw = start(config(vec![sim("a", |s| s.decode_ms_per_token = 10.0)])).await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"stream": true, "max_tokens": 30})),
    )
    .await;
    let reading = tokio::spawn(read_events(resp, DEADLINE));
    gw.shutdown().await;
    let (events, err) = reading.await.unwrap();
    assert!(err.is_none());
    assert_eq!(events.last().unwrap().data, "[DONE]");
}

#[tokio::test]
async fn busy_workers_give_503_with_retry_after_and_stay_in_rotation() {
    let busy = || {
        faulty(FaultConfig {
            refuse: 1.0,
            ..FaultConfig::default()
        })
    };
    let mut c = config(vec![sim("a", busy()), sim("b", busy())]);
    c.upstream.eject_after_failures = 1;
    let gw = start(c).await;
    for _ in 0..3 {
        let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "1");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "upstream_overloaded");
        assert!(
            !body["error"]["message"].as_str().unwrap().contains("sim-"),
            "no worker names leak"
        );
    }
    assert!(
        gw.state.fleet.workers().iter().all(|w| w.is_healthy()),
        "busy is not broken"
    );
    gw.shutdown().await;
}
