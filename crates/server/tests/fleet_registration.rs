//! Workers that join and leave over the registration API (`/fleet/v1`), against an
//! in-process gateway and simulated workers on real sockets: the fleet token, serving
//! requests, leases running out, re-registration, static names, draining with a stream in
//! flight, the admin view of the fleet, and `/readyz` during shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard_config::FleetConfig;
use switchyard_server::{Config, RunningGateway, Secrets};
use switchyard_sim::{SimConfig, SimHandle};
use switchyard_testkit::*;

const FLEET: &str = "sy-fleet-test-0123456789abcdef";
const READY: Duration = Duration::from_secs(10);

fn fleet_config(lease_ms: u64, heartbeat_ms: u64) -> Config {
    let mut c = config(vec![]);
    c.fleet = Some(FleetConfig {
        lease_ms,
        heartbeat_ms,
    });
    c
}

async fn gateway(config: Config) -> TestGateway {
    start_with(
        config,
        Secrets {
            dev_key: Some(KEY.into()),
            admin_token: Some(ADMIN.into()),
            fleet_token: Some(FLEET.into()),
        },
    )
    .await
}

async fn sim_worker(tweak: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg = SimConfig {
        prefill_base_ms: 2.0,
        prefill_per_token_ms: 0.0,
        decode_ms_per_token: 1.0,
        ..SimConfig::default()
    };
    tweak(&mut cfg);
    switchyard_sim::spawn_on("127.0.0.1:0", cfg).await.unwrap()
}

fn registration(name: &str, sim: &SimHandle) -> Value {
    json!({
        "name": name,
        "url": sim.url(),
        "runtime": "vllm",
        "model": "sim-small",
        "provider": format!("provider-{name}"),
        "region": "eu",
        "gpu": "rtx4090",
        "price_per_hour": 0.45,
        "max_concurrency": 8,
        "network": "public",
        "vram_gb": 24,
        "compute_capability": "8.9",
        "quantization": "fp16",
        "labels": {"rack": "r1"},
    })
}

/// A fleet API call with `token` (None: no Authorization header).
async fn fleet_call(
    gw: &RunningGateway,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = client().request(method, format!("{}{path}", gw.admin_url()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn register(gw: &RunningGateway, body: &Value) -> (u16, Value) {
    fleet_call(
        gw,
        reqwest::Method::POST,
        "/fleet/v1/workers",
        Some(FLEET),
        Some(body),
    )
    .await
}

async fn admin_post(gw: &RunningGateway, path: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{}{path}", gw.admin_url()))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Waits for the registered worker's first passing health check.
async fn until_ready(gw: &RunningGateway, name: &str) {
    let fleet = gw.state.fleet.clone();
    let ok = eventually(READY, || fleet.worker(name).is_some_and(|w| w.is_healthy())).await;
    assert!(ok, "worker {name} never became ready");
}

#[tokio::test]
async fn registration_needs_the_fleet_token_and_valid_fields() {
    let sim = sim_worker(|_| {}).await;
    let gw = gateway(fleet_config(15_000, 5_000)).await;
    let body = registration("w1", &sim);
    let post = reqwest::Method::POST;
    for token in [None, Some("sy-fleet-wrong-0123456789abcdef"), Some(ADMIN)] {
        let (status, err) =
            fleet_call(&gw, post.clone(), "/fleet/v1/workers", token, Some(&body)).await;
        assert_eq!(status, 401, "token {token:?}: {err}");
        assert_eq!(err["error"]["code"], "invalid_fleet_token");
    }
    assert!(
        gw.state.fleet.workers().is_empty(),
        "nothing was registered"
    );

    let mut bad = body.clone();
    bad["max_concurrency"] = json!(0);
    let (status, err) = register(&gw, &bad).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["param"], "max_concurrency");
    let mut bad = body.clone();
    bad.as_object_mut().unwrap().remove("model");
    let (status, err) = register(&gw, &bad).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["param"], "model");
    assert!(err["error"]["message"].as_str().unwrap().contains("model"));

    let (status, ok) = register(&gw, &body).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["new"], true);
    assert_eq!(ok["lease_ms"], 15_000);
    assert_eq!(ok["heartbeat_ms"], 5_000);
    gw.shutdown().await;

    // Without a shared fleet token, only per-agent tokens get in: that one is refused.
    let gw = start(fleet_config(15_000, 5_000)).await;
    let (status, err) = fleet_call(&gw, post, "/fleet/v1/workers", Some(FLEET), Some(&body)).await;
    assert_eq!(status, 401);
    assert_eq!(err["error"]["code"], "invalid_fleet_token");
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_registered_worker_serves_requests() {
    let sim = sim_worker(|_| {}).await;
    let gw = gateway(fleet_config(15_000, 5_000)).await;
    let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
    assert_eq!(resp.status(), 404, "no worker has registered the model yet");

    let (status, _) = register(&gw, &registration("w1", &sim)).await;
    assert_eq!(status, 200);
    until_ready(&gw, "w1").await;
    let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert_eq!(sim.stats().completed, 1, "the sim served it");
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_worker_that_stops_heartbeating_leaves_the_fleet() {
    let sim = sim_worker(|_| {}).await;
    let gw = gateway(fleet_config(600, 100)).await;
    register(&gw, &registration("w1", &sim)).await;
    until_ready(&gw, "w1").await;

    // Heartbeats hold the place for several leases.
    let post_m = reqwest::Method::POST;
    for _ in 0..12 {
        let (status, hb) = fleet_call(
            &gw,
            post_m.clone(),
            "/fleet/v1/workers/w1/heartbeat",
            Some(FLEET),
            None,
        )
        .await;
        assert_eq!(status, 200, "{hb}");
        assert_eq!(hb["lease_ms"], 600);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gw.state.fleet.worker("w1").is_some(),
        "heartbeats renew the lease"
    );
    let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
    assert_eq!(resp.status(), 200);

    // Silence: the lease runs out and the worker is gone.
    let fleet = gw.state.fleet.clone();
    assert!(eventually(Duration::from_secs(5), || fleet.worker("w1").is_none()).await);
    let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
    assert_eq!(
        resp.status(),
        503,
        "the model is still known: try again later"
    );
    assert!(resp.headers().contains_key("retry-after"));
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "no_healthy_worker");
    let (status, _) = fleet_call(
        &gw,
        post_m,
        "/fleet/v1/workers/w1/heartbeat",
        Some(FLEET),
        None,
    )
    .await;
    assert_eq!(status, 404, "the agent is told to register again");
    assert_eq!(sim.stats().completed, 1);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn re_registration_renews_the_same_worker_or_replaces_a_changed_one() {
    let sim = sim_worker(|_| {}).await;
    let gw = gateway(fleet_config(15_000, 5_000)).await;
    let body = registration("w1", &sim);
    register(&gw, &body).await;
    until_ready(&gw, "w1").await;
    let first = gw.state.fleet.worker("w1").unwrap();

    let (status, again) = register(&gw, &body).await;
    assert_eq!(status, 200);
    assert_eq!(again["new"], false);
    assert_eq!(
        again["state"], "ready",
        "a renewal keeps the worker's state"
    );
    assert!(Arc::ptr_eq(&first, &gw.state.fleet.worker("w1").unwrap()));

    // A changed field other than the worker's identity (tests/worker_identity.rs) replaces it.
    let mut changed = body.clone();
    changed["max_concurrency"] = json!(4);
    let (status, replaced) = register(&gw, &changed).await;
    assert_eq!(status, 200);
    assert_eq!(replaced["new"], true);
    let second = gw.state.fleet.worker("w1").unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(second.spec.max_concurrency, 4);
    assert_eq!(gw.state.fleet.workers().len(), 1, "replaced, not added");
    until_ready(&gw, "w1").await;
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_static_worker_cannot_be_registered_over_or_removed() {
    let sim = sim_worker(|_| {}).await;
    let mut config = fleet_config(15_000, 5_000);
    config.sim_workers = vec![switchyard_testkit::sim("static-1", |_| {})];
    let gw = gateway(config).await;
    let (status, err) = register(&gw, &registration("static-1", &sim)).await;
    assert_eq!(status, 409, "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("config file"));
    for (method, path) in [
        (
            reqwest::Method::POST,
            "/fleet/v1/workers/static-1/heartbeat",
        ),
        (reqwest::Method::POST, "/fleet/v1/workers/static-1/drain"),
        (reqwest::Method::DELETE, "/fleet/v1/workers/static-1"),
    ] {
        let (status, _) = fleet_call(&gw, method, path, Some(FLEET), None).await;
        assert_eq!(status, 409, "{path}");
    }
    let w = gw.state.fleet.worker("static-1").unwrap();
    assert_eq!(w.source, switchyard_fleet::WorkerSource::Static);
    assert!(w.is_routable(), "untouched");
    assert_eq!(
        sim.stats().requests,
        0,
        "the registration never reached rotation"
    );
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_draining_worker_finishes_its_stream_and_gets_nothing_new() {
    let slow = sim_worker(|c| {
        c.decode_ms_per_token = 25.0;
        c.natural_tokens = 1_000;
    })
    .await;
    let other = sim_worker(|_| {}).await;
    let gw = gateway(fleet_config(15_000, 5_000)).await;
    register(&gw, &registration("slow", &slow)).await;
    until_ready(&gw, "slow").await;

    let stream = post(
        &gw,
        "/v1/chat/completions",
        &chat(
            "sim-small",
            json!({"stream": true, "max_tokens": 40, "stream_options": {"include_usage": true}}),
        ),
    )
    .await;
    assert_eq!(stream.status(), 200);
    let reader = tokio::spawn(read_events(stream, Duration::from_secs(20)));

    let post_m = reqwest::Method::POST;
    let (status, drained) = fleet_call(
        &gw,
        post_m,
        "/fleet/v1/workers/slow/drain",
        Some(FLEET),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(drained["state"], "draining");
    assert_eq!(drained["outstanding"], 1, "the stream is still on it");

    // No other worker: a new request is refused as "try again", not sent to the draining one.
    let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
    assert_eq!(resp.status(), 503);
    // Another worker joins: new requests go there.
    register(&gw, &registration("other", &other)).await;
    until_ready(&gw, "other").await;
    let resp = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(other.stats().completed, 1);
    assert_eq!(
        slow.stats().requests,
        1,
        "only the stream reached the draining worker"
    );

    let (events, transport_error) = reader.await.unwrap();
    assert_eq!(transport_error, None);
    assert_eq!(
        events.last().unwrap().data,
        "[DONE]",
        "the stream ended properly"
    );
    let content = joined_content(&events);
    assert_eq!(
        content.split_whitespace().count(),
        40,
        "every token arrived"
    );
    let usage = events[events.len() - 2].json()["usage"].clone();
    assert_eq!(usage["completion_tokens"], 40);

    let (status, view) = fleet_call(
        &gw,
        reqwest::Method::GET,
        "/fleet/v1/workers/slow",
        Some(FLEET),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(view["outstanding"], 0);
    assert_eq!(view["state"], "draining");
    let (status, gone) = fleet_call(
        &gw,
        reqwest::Method::DELETE,
        "/fleet/v1/workers/slow",
        Some(FLEET),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(gone["removed"], true);
    assert!(gw.state.fleet.worker("slow").is_none());
    gw.shutdown().await;
    slow.shutdown().await;
    other.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_lists_and_drains_the_fleet_without_secrets() {
    let sim = sim_worker(|_| {}).await;
    let mut config = fleet_config(15_000, 5_000);
    config.sim_workers = vec![switchyard_testkit::sim("static-1", |_| {})];
    let gw = gateway(config).await;
    let mut body = registration("w1", &sim);
    body["api_key"] = json!("runtime-secret-do-not-show-42");
    register(&gw, &body).await;
    until_ready(&gw, "w1").await;

    let list = admin_get(&gw, "/admin/v1/fleet").await;
    assert!(!list.to_string().contains("runtime-secret"), "{list}");
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let stat = &data[0];
    assert_eq!(stat["name"], "static-1");
    assert_eq!(stat["source"], "static");
    assert_eq!(stat["lease_left_ms"], Value::Null);
    let reg = &data[1];
    assert_eq!(reg["name"], "w1");
    assert_eq!(reg["source"], "registered");
    assert_eq!(reg["state"], "ready");
    assert_eq!(reg["reason"], "health check passed");
    assert_eq!(reg["provider"], "provider-w1");
    assert_eq!(reg["labels"]["vram_gb"], "24");
    assert_eq!(reg["labels"]["rack"], "r1");
    assert!(reg["lease_left_ms"].as_u64().unwrap() > 10_000);
    for field in [
        "outstanding",
        "ejections",
        "since",
        "ttft_ewma_ms",
        "ejected_for_ms",
    ] {
        assert!(reg.get(field).is_some(), "{field} missing");
    }

    let (status, drained) = admin_post(
        &gw,
        "/admin/v1/fleet/drain",
        json!({"provider": "provider-w1"}),
    )
    .await;
    assert_eq!(status, 200, "{drained}");
    assert_eq!(drained["matched"], 1);
    assert_eq!(drained["changed"], 1);
    let list = admin_get(&gw, "/admin/v1/fleet").await;
    assert_eq!(list["data"][1]["state"], "draining");
    assert_eq!(
        list["data"][1]["reason"],
        "drained by admin (provider provider-w1)"
    );
    assert_eq!(
        list["data"][0]["state"], "ready",
        "other providers untouched"
    );

    let (status, undrained) =
        admin_post(&gw, "/admin/v1/fleet/undrain", json!({"region": "eu"})).await;
    assert_eq!(status, 200);
    assert_eq!(undrained["changed"], 1);
    let list = admin_get(&gw, "/admin/v1/fleet").await;
    assert_eq!(list["data"][1]["state"], "ready");

    let (status, err) = admin_post(&gw, "/admin/v1/fleet/drain", json!({"region": "mars"})).await;
    assert_eq!(status, 404);
    assert!(err["error"]["message"].as_str().unwrap().contains("mars"));
    let (status, _) = admin_post(
        &gw,
        "/admin/v1/fleet/drain",
        json!({"region": "eu", "provider": "x"}),
    )
    .await;
    assert_eq!(status, 400, "exactly one target");
    gw.shutdown().await;
    sim.shutdown().await;
}

/// Two gateways on one SQLite file: no change feed, and the periodic reconcile far away, so
/// the second has not heard of a worker registered through the first until it is asked about
/// it. Its heartbeat, its view and its drain through the second find it in the store rather
/// than answering 404 (a 404 sends the agent to register again, or to give up its drain).
#[tokio::test]
async fn a_gateway_that_has_not_heard_of_a_worker_finds_it_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fleet_config(15_000, 5_000);
    config.state.url = None;
    config.state.schema = None;
    config.state.path = dir.path().join("state.db");
    config.state.directory_refresh_ms = 600_000;
    let a = gateway(config.clone()).await;
    let b = gateway(config).await;
    let sim = sim_worker(|_| {}).await;
    let post_m = reqwest::Method::POST;

    register(&a, &registration("w1", &sim)).await;
    assert!(
        b.state.fleet.worker("w1").is_none(),
        "b has not heard of it"
    );
    let (status, hb) = fleet_call(
        &b,
        post_m.clone(),
        "/fleet/v1/workers/w1/heartbeat",
        Some(FLEET),
        None,
    )
    .await;
    assert_eq!(status, 200, "{hb}");
    until_ready(&b, "w1").await;
    let resp = post(&b, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
    assert_eq!(resp.status(), 200, "b routes to it");

    register(&a, &registration("w2", &sim)).await;
    assert!(b.state.fleet.worker("w2").is_none());
    let (status, view) = fleet_call(
        &b,
        reqwest::Method::GET,
        "/fleet/v1/workers/w2",
        Some(FLEET),
        None,
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["labels"]["rack"], "r1");
    let (status, drained) =
        fleet_call(&b, post_m, "/fleet/v1/workers/w2/drain", Some(FLEET), None).await;
    assert_eq!(status, 200, "{drained}");
    assert_eq!(drained["state"], "draining");
    a.shutdown().await;
    b.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn readyz_reports_draining_once_shutdown_begins() {
    let mut config = config(vec![switchyard_testkit::sim("a", |_| {})]);
    config.server.shutdown_delay_ms = 1_500;
    let gw = start(config).await;
    let url = format!("{}/readyz", gw.url());
    let ready = client().get(&url).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let v: Value = ready.json().await.unwrap();
    assert_eq!(v["draining"], false);

    let shutdown = tokio::spawn(gw.shutdown());
    let mut seen = None;
    for _ in 0..200 {
        let resp = client().get(&url).send().await.unwrap();
        if resp.status() == 503 {
            seen = Some(resp.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v = seen.expect("/readyz never reported 503 during shutdown");
    assert_eq!(v["draining"], true);
    shutdown.await.unwrap();
}
