//! Several gateways on one Postgres store, as replicas behind a load balancer: what one of
//! them is told, the others know within a second: keys and tenants, and the fleet (workers
//! registered, renewed, drained, removed or expired through any of them). Always on Postgres
//! (the machine's server; a fresh schema per test), whatever `SWITCHYARD_TEST_STORE` says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_config::FleetConfig;
use switchyard_fleet::WorkerState;
use switchyard_server::{Config, RunningGateway, Secrets};
use switchyard_sim::{SimConfig, SimHandle};
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
        .post(format!("{}/admin/v1/keys/{id}/revoke", three.admin_url()))
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

/// Admissions decided by a replica's local fallback so far (the three replicas share this
/// process's recorder).
async fn local_fallbacks(gw: &TestGateway) -> u64 {
    let body = scrape_metrics(gw).await;
    body.lines()
        .filter(|l| {
            l.starts_with("switchyard_limits_admissions_total{") && l.contains("local_fallback")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
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
    let fallbacks_before = local_fallbacks(&gws[0]).await;
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
    let mut seen = std::collections::BTreeMap::new();
    for r in &results {
        *seen.entry(r.clone()).or_insert(0) += 1;
    }
    // Every decision must have been Redis's: one made by a replica's local fallback (Redis
    // too slow to answer) counts against that replica's share only.
    let fallbacks = local_fallbacks(&gws[0]).await - fallbacks_before;
    assert!(
        (30..=30 + refill).contains(&ok) && fallbacks == 0,
        "150 requests over three replicas against 30/min: {ok} answered (refill allowance {refill}), {fallbacks} decided by a local fallback: {seen:?}"
    );
    assert!(
        results
            .iter()
            .all(|(s, code)| *s == 200 || (*s == 429 && code == "rate_limit_exceeded")),
        "{seen:?}"
    );
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

const FLEET: &str = "sy-fleet-test-0123456789abcdef";

/// Replicas on one fresh schema, with the registration API on. The periodic reconcile is far
/// away: only the change feed (or a lease running out) can be this quick.
fn fleet_replicas_config(lease_ms: u64, heartbeat_ms: u64) -> Config {
    let mut c = config(vec![]);
    use_postgres(&mut c);
    c.state.directory_refresh_ms = 600_000;
    c.fleet = Some(FleetConfig {
        lease_ms,
        heartbeat_ms,
    });
    c
}

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
        "name": name,
        "url": sim.url(),
        "runtime": "vllm",
        "model": "sim-small",
        "provider": format!("provider-{name}"),
        "region": "eu",
        "gpu": "rtx4090",
        "price_per_hour": 0.45,
        "max_concurrency": 8,
        "api_key": "runtime-secret-0123456789",
        "labels": {"rack": "r1"},
    })
}

/// A call to the registration API with the fleet token.
async fn fleet_call(
    gw: &RunningGateway,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, format!("{}{path}", gw.admin_url()))
        .bearer_auth(FLEET);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn register(gw: &RunningGateway, body: &Value) -> Value {
    let (status, v) = fleet_call(gw, reqwest::Method::POST, "/fleet/v1/workers", Some(body)).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn heartbeat(gw: &RunningGateway, name: &str) -> (u16, Value) {
    let path = format!("/fleet/v1/workers/{name}/heartbeat");
    fleet_call(gw, reqwest::Method::POST, &path, None).await
}

async fn admin_post(gw: &RunningGateway, path: &str, body: Value) -> Value {
    let resp = client()
        .post(format!("{}{path}", gw.admin_url()))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// The status of one chat through `gw` (with the dev key every replica holds).
async fn chat_status(gw: &RunningGateway) -> u16 {
    let resp = post(
        gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"max_tokens": 2})),
    )
    .await;
    let status = resp.status().as_u16();
    let _ = resp.bytes().await;
    status
}

/// Waits until `cond` holds on every one of `replicas`; returns how long that took.
async fn until_every(
    replicas: &[&TestGateway],
    within: Duration,
    what: &str,
    cond: impl Fn(&RunningGateway) -> bool,
) -> Duration {
    let began = Instant::now();
    let held = eventually(within, || replicas.iter().all(|gw| cond(gw))).await;
    assert!(
        held,
        "{what}: not on every replica after {:?}",
        began.elapsed()
    );
    began.elapsed()
}

fn knows(gw: &RunningGateway, name: &str) -> bool {
    gw.state.fleet.worker(name).is_some()
}

fn state_of(gw: &RunningGateway, name: &str) -> Option<WorkerState> {
    gw.state.fleet.worker(name).map(|w| w.state())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_registered_through_one_replica_is_routed_to_by_the_others_within_a_second() {
    let c = fleet_replicas_config(15_000, 5_000);
    let a = replica(&c).await;
    let b = replica(&c).await;
    let sim = sim_worker().await;
    assert_eq!(chat_status(&b).await, 404, "no worker serves the model yet");

    let began = Instant::now();
    let registered = register(&a, &registration("w1", &sim)).await;
    assert_eq!(registered["new"], true);
    // B learns of it, checks its health itself, and routes to it.
    let routed = eventually_async(5 * PROPAGATION, || async { chat_status(&b).await == 200 }).await;
    let took = began.elapsed();
    assert!(routed, "replica b never routed to the worker ({took:?})");
    assert!(
        took <= PROPAGATION,
        "replica b took {took:?} to route to it"
    );
    assert!(sim.stats().completed >= 1, "the sim served it");
    let w = b.state.fleet.worker("w1").unwrap();
    assert_eq!(w.source, switchyard_fleet::WorkerSource::Registered);
    assert_eq!(w.labels["rack"], "r1");
    assert_eq!(w.spec.api_key.as_deref(), Some("runtime-secret-0123456789"));
    let lease = w.lease_left_ms().unwrap();
    assert!(
        (10_000..=15_000).contains(&lease),
        "the store's lease: {lease} ms left"
    );

    // A replica started later finds it at start.
    let late = replica(&c).await;
    assert!(knows(&late, "w1"), "read from the store before serving");

    // The same registration through B renews it: not new, and A keeps its worker.
    let on_a = a.state.fleet.worker("w1").unwrap();
    let again = register(&b, &registration("w1", &sim)).await;
    assert_eq!(again["new"], false);
    assert!(std::sync::Arc::ptr_eq(
        &on_a,
        &a.state.fleet.worker("w1").unwrap()
    ));

    for gw in [a, b, late] {
        gw.shutdown().await;
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_through_another_replica_keep_the_lease_alive_everywhere() {
    let c = fleet_replicas_config(600, 100);
    let a = replica(&c).await;
    let b = replica(&c).await;
    let sim = sim_worker().await;
    register(&a, &registration("w1", &sim)).await;
    // At once, before B may have heard of it: B finds it in the store rather than answering
    // 404 (which would send the agent to register again).
    let (status, hb) = heartbeat(&b, "w1").await;
    assert_eq!(status, 200, "{hb}");
    assert_eq!(hb["lease_ms"], 600);

    // Heartbeats through B alone, at the agent's pace, for four leases: A's own copy of the
    // lease runs out again and again, and A finds the renewal in the store each time.
    let until = Instant::now() + Duration::from_millis(2_400);
    while Instant::now() < until {
        let (status, hb) = heartbeat(&b, "w1").await;
        assert_eq!(status, 200, "{hb}");
        assert!(
            knows(&a, "w1"),
            "replica a dropped a worker renewed through b"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let routed = eventually_async(5 * PROPAGATION, || async { chat_status(&a).await == 200 }).await;
    assert!(routed, "replica a routes to it");
    assert!(knows(&a, "w1") && knows(&b, "w1"));

    // An unknown worker is still a 404 everywhere: the agent registers again.
    let (status, _) = heartbeat(&b, "nobody").await;
    assert_eq!(status, 404);

    a.shutdown().await;
    b.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_through_one_replica_stops_the_others_routing_to_the_worker_and_undrain_restores_it(
) {
    let c = fleet_replicas_config(15_000, 5_000);
    let a = replica(&c).await;
    let b = replica(&c).await;
    let sim = sim_worker().await;
    register(&a, &registration("w1", &sim)).await;
    let routed = eventually_async(5 * PROPAGATION, || async {
        chat_status(&a).await == 200 && chat_status(&b).await == 200
    })
    .await;
    assert!(routed, "both replicas route to it");

    // Drained by provider through B's admin API: A sends it nothing new.
    let drained = admin_post(
        &b,
        "/admin/v1/fleet/drain",
        json!({"provider": "provider-w1"}),
    )
    .await;
    assert_eq!(drained["matched"], 1);
    assert_eq!(drained["changed"], 1);
    let took = until_every(&[&a, &b], 5 * PROPAGATION, "drained", |gw| {
        state_of(gw, "w1") == Some(WorkerState::Draining)
    })
    .await;
    assert!(
        took <= PROPAGATION,
        "the drain took {took:?} to reach replica a"
    );
    let served = sim.stats().requests;
    assert_eq!(
        chat_status(&a).await,
        503,
        "no other worker: try again later"
    );
    assert_eq!(
        sim.stats().requests,
        served,
        "replica a sent the drained worker nothing"
    );
    let view = admin_get(&a, "/admin/v1/fleet").await;
    assert_eq!(
        view["data"][0]["reason"],
        "drained by admin (provider provider-w1)"
    );

    // Undrained through B by its name (newer than the provider's drain): back on A.
    let undrained = admin_post(&b, "/admin/v1/fleet/undrain", json!({"worker": "w1"})).await;
    assert_eq!(undrained["changed"], 1);
    let took = until_every(&[&a, &b], 5 * PROPAGATION, "undrained", |gw| {
        state_of(gw, "w1") == Some(WorkerState::Ready)
    })
    .await;
    assert!(
        took <= PROPAGATION,
        "the undrain took {took:?} to reach replica a"
    );
    assert_eq!(chat_status(&a).await, 200);
    assert!(sim.stats().requests > served);

    // The agent's own drain (before it stops the runtime), through A this time, reaches B.
    let (status, v) = fleet_call(
        &a,
        reqwest::Method::POST,
        "/fleet/v1/workers/w1/drain",
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    until_every(&[&a, &b], 5 * PROPAGATION, "drained by its agent", |gw| {
        state_of(gw, "w1") == Some(WorkerState::Draining)
    })
    .await;
    assert_eq!(chat_status(&b).await, 503);

    a.shutdown().await;
    b.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_runs_out_leaves_every_replica() {
    let c = fleet_replicas_config(600, 100);
    let a = replica(&c).await;
    let b = replica(&c).await;
    let sim = sim_worker().await;
    register(&a, &registration("w1", &sim)).await;
    until_every(&[&a, &b], 5 * PROPAGATION, "known", |gw| knows(gw, "w1")).await;
    // No heartbeat: gone from both within about a lease.
    let took = until_every(&[&a, &b], 5 * PROPAGATION, "expired", |gw| !knows(gw, "w1")).await;
    assert!(took <= 2 * PROPAGATION, "expiry took {took:?}");
    assert_eq!(
        chat_status(&b).await,
        503,
        "the model is still known: try again later"
    );
    let (status, _) = heartbeat(&b, "w1").await;
    assert_eq!(status, 404, "the agent is told to register again");
    a.shutdown().await;
    b.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_removed_through_one_replica_leaves_every_replica() {
    let c = fleet_replicas_config(15_000, 5_000);
    let a = replica(&c).await;
    let b = replica(&c).await;
    let three = replica(&c).await;
    let sim = sim_worker().await;
    register(&a, &registration("w1", &sim)).await;
    until_every(&[&a, &b, &three], 5 * PROPAGATION, "known", |gw| {
        knows(gw, "w1")
    })
    .await;

    let (status, gone) =
        fleet_call(&b, reqwest::Method::DELETE, "/fleet/v1/workers/w1", None).await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["removed"], true);
    let took = until_every(&[&a, &b, &three], 5 * PROPAGATION, "removed", |gw| {
        !knows(gw, "w1")
    })
    .await;
    assert!(took <= PROPAGATION, "removal took {took:?}");
    let (status, _) = heartbeat(&three, "w1").await;
    assert_eq!(status, 404);
    let (status, _) = fleet_call(&a, reqwest::Method::DELETE, "/fleet/v1/workers/w1", None).await;
    assert_eq!(status, 404, "nothing left to remove");

    for gw in [a, b, three] {
        gw.shutdown().await;
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sla_report_merges_every_replica_and_a_minute_one_of_them_saw_is_observed() {
    use std::sync::Arc;
    use switchyard_metering::clock::ManualClock;
    const MIN: i64 = 60_000;
    // SLA time (heartbeats, the report's "now") from one clock for both replicas, starting at
    // half past this minute; requests are stamped by the system clock, in this minute or the
    // next, which the report read three minutes on covers.
    let now = switchyard_metering::directory::unix_ms();
    let t0 = now - now % MIN + 30_000;
    let clock = Arc::new(ManualClock::new(t0));
    let mut c = config(vec![sim("a", |_| {})]);
    use_postgres(&mut c);
    c.state.heartbeat_ms = 100;
    // One alive in minute 0, both in minute 1, the other in minute 2: no minute unobserved.
    let one = start_with_clock(c.clone(), clock.clone()).await;
    let secret = tenant_key(&one, "acme", "pro").await;
    for _ in 0..7 {
        assert_eq!(status_with(&one, &secret).await, 200);
    }
    clock.set(t0 + MIN);
    let two = start_with_clock(c.clone(), clock.clone()).await;
    until_known(&[&two], &secret).await;
    for _ in 0..5 {
        assert_eq!(status_with(&two, &secret).await, 200);
    }
    one.shutdown().await;
    clock.set(t0 + 2 * MIN);
    // `two` alone records minute 2 (it beat minute 1 when it started).
    let store = open_store(&c).await;
    let minute_two = switchyard_metering::sli::minute_of(t0 + 2 * MIN);
    let recorded = eventually_async(Duration::from_secs(10), || async {
        store
            .heartbeats(t0 - 30_000, t0 + 3 * MIN)
            .await
            .is_ok_and(|h| h.minutes.contains(&minute_two))
    })
    .await;
    assert!(recorded, "no heartbeat in minute 2");
    clock.set(t0 + 3 * MIN); // read in minute 3: minutes 0 to 2 are complete
    let merged = eventually_async(Duration::from_secs(10), || async {
        let report = admin_get(&two, "/admin/v1/sla?tenant=acme").await;
        report["data"][0]["requests"] == 12
    })
    .await;
    let report = admin_get(&two, "/admin/v1/sla?tenant=acme").await;
    assert!(merged, "{report}");
    let r = &report["data"][0];
    assert_eq!(r["errors_5xx"], 0, "{r:#}");
    assert_eq!(r["minutes_unobserved"], 0, "{r:#}");
    assert_eq!(r["minutes_bad"], 0, "{r:#}");
    two.shutdown().await;
}
