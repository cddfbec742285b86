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
