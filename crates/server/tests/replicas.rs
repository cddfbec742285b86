//! Several gateways on one Postgres store, as replicas behind a load balancer: what one of
//! them is told, the others know within a second. Always on Postgres (the machine's server;
//! a fresh schema per test), whatever `SWITCHYARD_TEST_STORE` says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_testkit::*;

/// How soon a change made through one replica must be in force on the others.
const PROPAGATION: Duration = Duration::from_secs(1);

async fn status_with(gw: &TestGateway, secret: &str) -> u16 {
    let resp = post_as(
        gw,
        secret,
        "/v1/chat/completions",
        &chat("sim-small", json!({"max_tokens": 2})),
    )
    .await;
    let status = resp.status().as_u16();
    let _ = resp.bytes().await;
    status
}

/// Waits until every replica answers `secret` with `want`; returns how long that took.
async fn until_all(replicas: &[&TestGateway], secret: &str, want: u16) -> Duration {
    let began = Instant::now();
    let all_answer = eventually_async(5 * PROPAGATION, || async {
        for gw in replicas {
            if status_with(gw, secret).await != want {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        all_answer,
        "replicas still not answering {want} after {:?}",
        began.elapsed()
    );
    began.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_and_revoked_through_one_replica_take_effect_on_the_others_within_a_second() {
    let mut c = config(vec![sim("a", |_| {})]);
    use_postgres(&mut c);
    // The periodic reload far away: only the change notifications can be this quick.
    c.state.directory_refresh_ms = 600_000;
    let one = start(c.clone()).await;
    let two = start(c.clone()).await;
    let three = start(c).await;

    // Created through one: the others had never heard of it.
    let secret = tenant_key(&one, "acme", "pro").await;
    let took = until_all(&[&two, &three], &secret, 200).await;
    assert!(
        took <= PROPAGATION,
        "a new key took {took:?} to reach the others"
    );

    // Revoked through three: refused by one and two.
    let keys = admin_get(&three, "/admin/v1/keys?tenant=acme").await;
    let id = keys["data"][0]["id"].as_str().unwrap().to_string();
    let resp = client()
        .post(format!("{}/admin/v1/keys/{id}/revoke", three.url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let took = until_all(&[&one, &two], &secret, 401).await;
    assert!(
        took <= PROPAGATION,
        "a revocation took {took:?} to reach the others"
    );

    one.shutdown().await;
    two.shutdown().await;
    three.shutdown().await;
}

/// Waits until every replica knows `secret`, without spending any of its limits: a request
/// for a model nobody serves is refused (404) after authentication, before admission.
async fn until_known(replicas: &[&TestGateway], secret: &str) {
    let known = eventually_async(5 * PROPAGATION, || async {
        for gw in replicas {
            let resp = post_as(
                gw,
                secret,
                "/v1/chat/completions",
                &chat("no-such-model", json!({})),
            )
            .await;
            if resp.status() != 404 {
                return false;
            }
        }
        true
    })
    .await;
    assert!(known, "the new key did not reach every replica");
}

/// Three replicas on one Postgres and one Redis, with tier `pro` limited by `tweak`.
async fn three_sharing_limits(
    tweak: impl FnOnce(&mut switchyard_metering::Limits),
    sim_tweak: impl Fn(&mut switchyard_sim::SimConfig) + Copy,
) -> [TestGateway; 3] {
    let mut c = config(vec![sim("a", sim_tweak)]);
    use_postgres(&mut c);
    use_redis(&mut c);
    tweak(c.tiers.get_mut("pro").unwrap());
    [
        start(c.clone()).await,
        start(c.clone()).await,
        start(c).await,
    ]
}

/// `n` requests at once, spread round-robin over `replicas`; the statuses and error codes.
async fn spread(
    replicas: &[TestGateway],
    secret: &str,
    n: usize,
    body: serde_json::Value,
) -> Vec<(u16, String)> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let url = format!("{}/v1/chat/completions", replicas[i % replicas.len()].url());
        let (secret, body) = (secret.to_string(), body.clone());
        tasks.spawn(async move {
            let resp = client()
                .post(url)
                .bearer_auth(secret)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            (
                status,
                body["error"]["code"].as_str().unwrap_or("").to_string(),
            )
        });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        out.push(done.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_per_minute_limit_holds_across_three_replicas() {
    let gws = three_sharing_limits(|pro| pro.requests_per_minute = 30, |_| {}).await;
    let secret = tenant_key(&gws[0], "acme", "pro").await;
    until_known(&[&gws[1], &gws[2]], &secret).await;
    let began = Instant::now();
    let results = spread(
        &gws,
        &secret,
        150,
        chat("sim-small", json!({"max_tokens": 2})),
    )
    .await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let refill = (began.elapsed().as_secs_f64() / 2.0).floor() as usize;
    assert!(
        (30..=30 + refill).contains(&ok),
        "150 requests over three replicas against 30/min: {ok} answered (refill allowance {refill})"
    );
    assert!(results
        .iter()
        .all(|(s, code)| *s == 200 || (*s == 429 && code == "rate_limit_exceeded")));
    for gw in gws {
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_cap_of_four_holds_across_three_replicas() {
    // Each answer takes about 3 s (60 tokens at 50 ms), so all twelve overlap.
    let gws = three_sharing_limits(
        |pro| pro.max_concurrent = 4,
        |sim| {
            sim.decode_ms_per_token = 50.0;
            sim.natural_tokens = 1_000;
        },
    )
    .await;
    let secret = tenant_key(&gws[0], "acme", "pro").await;
    until_known(&[&gws[1], &gws[2]], &secret).await;
    let results = spread(
        &gws,
        &secret,
        12,
        chat("sim-small", json!({"max_tokens": 60})),
    )
    .await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 4, "{results:?}");
    assert!(results
        .iter()
        .all(|(s, code)| *s == 200 || (*s == 429 && code == "concurrency_limit_exceeded")));
    for gw in gws {
        gw.shutdown().await;
    }
}
