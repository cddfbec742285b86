//! Routing as a tenant notices it: a saturated fleet queues and then sheds the lowest tier
//! first, conversations stick to their worker, canary weights hold, reserved capacity stays
//! reserved.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_config::{CanaryMode, CanarySplit};
use switchyard_fleet::Pool;
use switchyard_testkit::*;

async fn error_code(resp: reqwest::Response) -> (u16, Option<String>, String) {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("").to_string();
    (status, retry_after, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_fleet_queues_then_sheds_the_lowest_tier_first() {
    // One worker that takes one request at a time, 400 ms each; a queue of two.
    let mut one = sim("only", |s| s.prefill_base_ms = 400.0);
    one.max_concurrency = 1;
    let mut c = config(vec![one]);
    c.routing.max_queue = 2;
    for tier in c.tiers.values_mut() {
        tier.slo_ttft_p95_ms = 20_000; // long deadlines: only displacement sheds here
        tier.requests_per_minute = 10_000;
        tier.max_concurrent = 100;
        tier.hedge_after_ms = 0;
    }
    let gw = std::sync::Arc::new(start(c).await);
    let hobby = tenant_key(&gw, "small-shop", "hobby").await;
    let business = tenant_key(&gw, "big-corp", "business").await;
    let t0 = Instant::now();
    let send = |secret: String, delay_ms: u64| {
        let gw = gw.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let resp = post_as(
                &gw,
                &secret,
                "/v1/chat/completions",
                &chat("sim-small", json!({})),
            )
            .await;
            let done = Instant::now();
            (error_code(resp).await, done)
        })
    };
    let occupant = send(KEY.to_string(), 0); // pro, takes the worker
    let hobby1 = send(hobby.clone(), 100); // queues
    let hobby2 = send(hobby.clone(), 150); // queues: the queue is full now
    let big = send(business.clone(), 250); // displaces the last hobby request
    let (occupant, hobby1, hobby2, big) = (
        occupant.await.unwrap(),
        hobby1.await.unwrap(),
        hobby2.await.unwrap(),
        big.await.unwrap(),
    );
    assert_eq!(occupant.0 .0, 200);
    assert_eq!(
        hobby2.0,
        (503, Some("2".into()), "overloaded_shed".into()),
        "shed, with Retry-After"
    );
    assert!(
        hobby2.1 - t0 < Duration::from_millis(400),
        "shed at once, not after waiting"
    );
    assert_eq!(big.0 .0, 200);
    assert_eq!(hobby1.0 .0, 200);
    assert!(
        big.1 < hobby1.1,
        "business was served before the hobby request queued earlier"
    );
    assert_eq!(gw.state.queue.len("sim-small"), 0);
}

#[tokio::test]
async fn a_request_waits_at_most_its_tier_deadline_then_gets_503() {
    let mut one = sim("only", |s| s.prefill_base_ms = 1_500.0);
    one.max_concurrency = 1;
    let mut c = config(vec![one]);
    c.tiers.get_mut("pro").unwrap().slo_ttft_p95_ms = 600; // queue for 300 ms
    c.tiers.get_mut("pro").unwrap().hedge_after_ms = 0;
    let gw = std::sync::Arc::new(start(c).await);
    let busy = {
        let gw = gw.clone();
        tokio::spawn(async move {
            post(&gw, "/v1/chat/completions", &chat("sim-small", json!({})))
                .await
                .status()
        })
    };
    // The busy request holds the only slot once the worker has it.
    assert!(
        gw.sims[0]
            .wait_until(|s| s.in_flight == 1, Duration::from_secs(5))
            .await
    );
    let began = Instant::now();
    let (status, retry_after, code) =
        error_code(post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await).await;
    let waited = began.elapsed();
    assert_eq!(
        (status, retry_after.as_deref(), code.as_str()),
        (503, Some("2"), "overloaded_shed")
    );
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_millis(1_200),
        "{waited:?}"
    );
    assert_eq!(busy.await.unwrap(), 200);
}

#[tokio::test]
async fn a_conversation_sticks_to_its_worker() {
    let mut c = config(vec![sim("a", |_| {}), sim("b", |_| {}), sim("c", |_| {})]);
    c.routing.sticky_idle_s = 60;
    let gw = start(c).await;
    let mut history = vec![
        json!({"role": "system", "content": "You plan train timetables."}),
        json!({"role": "user", "content": "Route 7 leaves at 9:00."}),
    ];
    for turn in 0..6 {
        let resp = post(
            &gw,
            "/v1/chat/completions",
            &json!({"model": "sim-small", "messages": history, "max_tokens": 4}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        history.push(json!({"role": "assistant", "content": "ok"}));
        history.push(json!({"role": "user", "content": format!("and turn {turn}?")}));
    }
    let counts: Vec<u64> = gw.sims.iter().map(|s| s.stats().requests).collect();
    assert_eq!(
        counts.iter().filter(|n| **n == 6).count(),
        1,
        "all six turns on one worker: {counts:?}"
    );
    // Other conversations still spread over the fleet.
    for i in 0..6 {
        let body = json!({"model": "sim-small", "max_tokens": 4,
            "messages": [{"role": "user", "content": format!("conversation {i}")}]});
        assert_eq!(post(&gw, "/v1/chat/completions", &body).await.status(), 200);
    }
    let after: Vec<u64> = gw.sims.iter().map(|s| s.stats().requests).collect();
    assert!(
        after.iter().zip(&counts).filter(|(a, b)| a > b).count() >= 2,
        "{after:?}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_canary_gets_its_configured_share() {
    let mut canary = sim("canary", |_| {});
    canary.pool = Pool::Canary;
    let mut c = config(vec![sim("main", |_| {}), canary]);
    c.routing.canary = vec![CanarySplit {
        model: "sim-small".into(),
        weight: 0.25,
        mode: CanaryMode::Split,
    }];
    let gw = start(c).await;
    for _ in 0..40 {
        assert_eq!(
            post(&gw, "/v1/chat/completions", &chat("sim-small", json!({})))
                .await
                .status(),
            200
        );
    }
    assert_eq!(gw.sims[1].stats().requests, 10, "25% of 40");
    assert_eq!(gw.sims[0].stats().requests, 30);
    gw.shutdown().await;
}

#[tokio::test]
async fn reserved_capacity_serves_only_its_tier() {
    let mut reserved = sim("reserved", |_| {});
    reserved.tiers = vec!["business".into()];
    let c = config(vec![reserved, sim("shared", |_| {})]);
    let gw = start(c).await;
    let business = tenant_key(&gw, "big-corp", "business").await;
    for _ in 0..10 {
        assert_eq!(
            post(&gw, "/v1/chat/completions", &chat("sim-small", json!({})))
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        gw.sims[0].stats().requests,
        0,
        "pro traffic never reaches business capacity"
    );
    for _ in 0..10 {
        let resp = post_as(
            &gw,
            &business,
            "/v1/chat/completions",
            &chat("sim-small", json!({})),
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    assert!(
        gw.sims[0].stats().requests > 0,
        "business uses its reserved worker"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn shadow_mode_copies_requests_to_the_canary_without_serving_or_billing_them() {
    let mut canary = sim("canary", |s| s.decode_ms_per_token = 1.0);
    canary.pool = Pool::Canary;
    let mut c = config(vec![sim("main", |_| {}), canary]);
    c.routing.canary = vec![CanarySplit {
        model: "sim-small".into(),
        weight: 0.5,
        mode: CanaryMode::Shadow,
    }];
    let gw = start(c).await;
    for _ in 0..10 {
        let resp = post(
            &gw,
            "/v1/chat/completions",
            &chat("sim-small", json!({"stream": true})),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let (events, _) = read_events(resp, Duration::from_secs(10)).await;
        assert_eq!(events.last().unwrap().data, "[DONE]");
    }
    assert_eq!(
        gw.sims[0].stats().completed,
        10,
        "every client answer came from main"
    );
    assert!(
        eventually(Duration::from_secs(5), || gw.sims[1].stats().completed == 5).await,
        "half the requests were copied to the canary: {:?}",
        gw.sims[1].stats()
    );
    let metrics = scrape_metrics(&gw).await;
    assert!(
        metrics.contains(r#"arm="shadow""#) && metrics.contains(r#"arm="main""#),
        "TTFT/TTLT per arm"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_tier_that_opted_in_falls_back_to_a_smaller_model_and_is_told() {
    let large = sim("large", |s| s.model = "sim-large".into());
    let mut c = config(vec![large, sim("small", |_| {})]);
    c.routing
        .fallback
        .insert("sim-large".into(), vec!["sim-small".into()]);
    c.tiers.get_mut("pro").unwrap().fallback = true;
    let gw = start(c).await;
    let hobby = tenant_key(&gw, "small-shop", "hobby").await; // hobby did not opt in
                                                              // The large model's only worker leaves rotation.
    gw.state.fleet.drain(
        &switchyard_fleet::DrainTarget::Worker("large".into()),
        true,
        "test",
    );
    for stream in [false, true] {
        let resp = post(
            &gw,
            "/v1/chat/completions",
            &chat("sim-large", json!({"stream": stream})),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-switchyard-fallback-model"], "sim-small");
        if stream {
            let (events, _) = read_events(resp, Duration::from_secs(10)).await;
            assert_eq!(
                events[0].json()["model"],
                "sim-small",
                "the answer says who answered"
            );
            assert_eq!(events.last().unwrap().data, "[DONE]");
        } else {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["model"], "sim-small");
        }
    }
    let resp = post_as(
        &gw,
        &hobby,
        "/v1/chat/completions",
        &chat("sim-large", json!({})),
    )
    .await;
    let (status, _, code) = error_code(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (503, "no_healthy_worker"),
        "no fallback without opting in"
    );
    assert_eq!(gw.sims[1].stats().requests, 2);
    gw.shutdown().await;
}
