//! Per-agent tokens for the registration API: each registers only within its scope, acts only
//! on its own workers, cannot take over another agent's name, and once revoked is refused and
//! its workers leave the fleet. The shared fleet token keeps working for the operator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use switchyard_config::FleetConfig;
use switchyard_server::{RunningGateway, Secrets};
use switchyard_sim::{SimConfig, SimHandle};
use switchyard_testkit::*;

const FLEET: &str = "sy-fleet-test-0123456789abcdef";

async fn call(
    gw: &RunningGateway,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, format!("{}{path}", gw.admin_url()))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn create_token(gw: &RunningGateway, body: Value) -> (String, String) {
    let (status, v) = call(
        gw,
        reqwest::Method::POST,
        "/admin/v1/agent-tokens",
        ADMIN,
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert!(v.get("hash").is_none());
    (
        v["id"].as_str().unwrap().to_string(),
        v["secret"].as_str().unwrap().to_string(),
    )
}

fn registration(name: &str, sim: &SimHandle, provider: &str, price: f64) -> Value {
    json!({
        "name": name, "url": sim.url(), "runtime": "vllm", "model": "sim-small",
        "provider": provider, "region": "eu", "gpu": "rtx4090",
        "price_per_hour": price, "max_concurrency": 8,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tokens_are_scoped_own_their_workers_and_revocation_takes_the_workers_out() {
    let sim = switchyard_sim::spawn_on("127.0.0.1:0", SimConfig::default())
        .await
        .unwrap();
    let mut c = config(vec![]);
    c.fleet = Some(FleetConfig {
        lease_ms: 15_000,
        heartbeat_ms: 5_000,
    });
    let secrets = Secrets {
        dev_key: Some(KEY.into()),
        admin_token: Some(ADMIN.into()),
        fleet_token: Some(FLEET.into()),
    };
    let gw = start_with(c, secrets).await;
    let post = reqwest::Method::POST;
    let (a_id, a) = create_token(
        &gw,
        json!({"name": "market-b", "providers": ["market-b"], "max_price_per_hour": 1.0}),
    )
    .await;
    let (_, b) = create_token(&gw, json!({"name": "anyone"})).await;

    // Within its scope: registered, and marked with the token that did it.
    let body = registration("w-a", &sim, "market-b", 0.45);
    let (status, v) = call(&gw, post.clone(), "/fleet/v1/workers", &a, Some(&body)).await;
    assert_eq!(status, 200, "{v}");
    let worker = gw.state.fleet.worker("w-a").unwrap();
    assert_eq!(worker.labels["switchyard.agent"], a_id);

    // Outside it: refused, saying why.
    for (provider, price, why) in [
        ("market-c", 0.45, "provider 'market-c'"),
        ("market-b", 2.0, "at most 1/h"),
    ] {
        let body = registration("w-x", &sim, provider, price);
        let (status, v) = call(&gw, post.clone(), "/fleet/v1/workers", &a, Some(&body)).await;
        assert_eq!(status, 403, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(why), "{v}");
    }
    // The gateway's own labels cannot be forged.
    let mut forged = registration("w-f", &sim, "market-b", 0.45);
    forged["labels"] = json!({"switchyard.agent": "agt_someone_else"});
    let (status, v) = call(&gw, post.clone(), "/fleet/v1/workers", &b, Some(&forged)).await;
    assert_eq!(status, 400, "{v}");

    // Another agent can neither act on the worker nor take its name over.
    let (status, _) = call(
        &gw,
        post.clone(),
        "/fleet/v1/workers/w-a/heartbeat",
        &b,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &gw,
        reqwest::Method::DELETE,
        "/fleet/v1/workers/w-a",
        &b,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let hijack = registration("w-a", &sim, "market-b", 0.1);
    let (status, v) = call(&gw, post.clone(), "/fleet/v1/workers", &b, Some(&hijack)).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(
        gw.state.fleet.worker("w-a").unwrap().spec.price_per_hour,
        0.45
    );
    // Its own agent and the operator's token can.
    let (status, _) = call(
        &gw,
        post.clone(),
        "/fleet/v1/workers/w-a/heartbeat",
        &a,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &gw,
        post.clone(),
        "/fleet/v1/workers/w-a/heartbeat",
        FLEET,
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Revoked: its worker leaves the fleet at once, and the token is refused from then on.
    let (status, v) = call(
        &gw,
        post.clone(),
        &format!("/admin/v1/agent-tokens/{a_id}/revoke"),
        ADMIN,
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["workers_removed"], json!(["w-a"]));
    assert!(gw.state.fleet.worker("w-a").is_none());
    let (status, v) = call(
        &gw,
        post.clone(),
        "/fleet/v1/workers/w-a/heartbeat",
        &a,
        None,
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("invalid_fleet_token"))
    );
    let (status, _) = call(&gw, post.clone(), "/fleet/v1/workers", &a, Some(&body)).await;
    assert_eq!(status, 401);

    let (_, list) = call(
        &gw,
        reqwest::Method::GET,
        "/admin/v1/agent-tokens",
        ADMIN,
        None,
    )
    .await;
    let listed: Vec<(&str, &str)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [("market-b", "revoked"), ("anyone", "active")]);
    let shown = list.to_string();
    assert!(
        !shown.contains(&a) && !shown.contains(&b),
        "no secret in a listing"
    );
    gw.shutdown().await;
    sim.shutdown().await;
}
