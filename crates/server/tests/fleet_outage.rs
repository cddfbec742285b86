//! The shared fleet while Postgres is down: registrations, heartbeats and drains still work on
//! the gateway that receives them, and reach the other replicas once the database is back.
//!
//! The test runs a private cluster (`crates/metering/tests/pg/private_cluster.rs`), so stopping
//! it disturbs no other test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_config::FleetConfig;
use switchyard_fleet::WorkerState;
use switchyard_server::{Config, RunningGateway, Secrets};
use switchyard_sim::{SimConfig, SimHandle};
use switchyard_testkit::*;

#[path = "../../metering/tests/pg/private_cluster.rs"]
mod private_cluster;
use private_cluster::Cluster;

const FLEET: &str = "sy-fleet-test-0123456789abcdef";

async fn replica(c: &Config) -> TestGateway {
    start_with(
        c.clone(),
        Secrets {
            dev_key: Some(KEY.into()),
            admin_token: Some(ADMIN.into()),
            fleet_token: Some(FLEET.into()),
        },
    )
    .await
}

async fn sim_worker() -> SimHandle {
    let cfg = SimConfig {
        prefill_base_ms: 2.0,
        prefill_per_token_ms: 0.0,
        decode_ms_per_token: 1.0,
        ..SimConfig::default()
    };
    switchyard_sim::spawn_on("127.0.0.1:0", cfg).await.unwrap()
}

fn registration(name: &str, sim: &SimHandle) -> Value {
    json!({
        "name": name, "url": sim.url(), "runtime": "vllm", "model": "sim-small",
        "provider": format!("provider-{name}"), "region": "eu", "gpu": "rtx4090",
        "price_per_hour": 0.45, "max_concurrency": 8,
    })
}

async fn call(gw: &RunningGateway, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = client()
        .post(format!("{}{path}", gw.admin_url()))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn state_of(gw: &RunningGateway, name: &str) -> Option<WorkerState> {
    gw.state.fleet.worker(name).map(|w| w.state())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_changes_made_while_postgres_is_down_reach_the_other_replicas_when_it_is_back() {
    let cluster = Arc::new(Cluster::start());
    let mut c = config(vec![]);
    c.state.url = Some(cluster.url());
    c.state.schema = None;
    c.state.directory_refresh_ms = 600_000;
    c.fleet = Some(FleetConfig {
        lease_ms: 60_000,
        heartbeat_ms: 5_000,
    });
    let a = replica(&c).await;
    let b = replica(&c).await;
    let (s1, s2) = (sim_worker().await, sim_worker().await);
    let (status, _) = call(
        &a,
        "/fleet/v1/workers",
        FLEET,
        Some(registration("w1", &s1)),
    )
    .await;
    assert_eq!(status, 200);
    let known = eventually(Duration::from_secs(5), || {
        b.state.fleet.worker("w1").is_some()
    })
    .await;
    assert!(known, "b hears of w1 while the database is up");

    cluster.ctl_async(&["-m", "fast", "stop"]).await;
    // Registration, heartbeat and drain through A: each works on A at once.
    let (status, v) = call(
        &a,
        "/fleet/v1/workers",
        FLEET,
        Some(registration("w2", &s2)),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["new"], true);
    let (status, v) = call(&a, "/fleet/v1/workers/w1/heartbeat", FLEET, None).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &a,
        "/admin/v1/fleet/drain",
        ADMIN,
        Some(json!({"provider": "provider-w1"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(state_of(&a, "w1"), Some(WorkerState::Draining));
    let ready = eventually(Duration::from_secs(5), || {
        state_of(&a, "w2") == Some(WorkerState::Ready)
    })
    .await;
    assert!(ready, "a routes to w2 without the database");
    assert!(
        b.state.fleet.worker("w2").is_none(),
        "b cannot have heard yet"
    );

    cluster.ctl_async(&["start"]).await;
    let back = Instant::now();
    let caught_up = eventually(Duration::from_secs(20), || {
        state_of(&b, "w1") == Some(WorkerState::Draining) && b.state.fleet.worker("w2").is_some()
    })
    .await;
    assert!(
        caught_up,
        "b still behind {:?} after the database came back",
        back.elapsed()
    );
    // A kept what it did alone: the store's older view did not undo it.
    assert_eq!(state_of(&a, "w1"), Some(WorkerState::Draining));
    assert!(a.state.fleet.worker("w2").is_some());

    a.shutdown().await;
    b.shutdown().await;
    s1.shutdown().await;
    s2.shutdown().await;
}
