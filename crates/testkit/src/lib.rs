//! Switchyard's test kit (a dev-dependency): an in-process gateway on port 0 in front of
//! in-process simulated workers, started the way `switchyard serve` starts them, and helpers
//! to read responses and event streams as a client would.
//!
//! Waiting: on a simulated worker, wait on what happened with `SimHandle::wait_until` (woken by
//! its counters) and hold requests in flight with `hold`/`release`; elsewhere, [`eventually`]
//! and [`eventually_async`] check a condition until it holds. Never a fixed sleep standing in
//! for "it has happened by now".
//!
//! State: SQLite in memory, or with `SWITCHYARD_TEST_STORE=postgres` a Postgres schema of
//! each test's own on `SWITCHYARD_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`): `scripts/test` runs the gateway's integration
//! tests both ways. A test that reads the store itself opens it with [`open_store`].
// A failed step of a test is a panic with its reason: that is what a test kit is for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod tls;

use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_config::SimWorkerConfig;
use switchyard_fleet::RuntimeKind;
use switchyard_server::{Config, RunningGateway, Secrets};
use switchyard_sim::{SimConfig, SimHandle};

pub const KEY: &str = "sk-test-0123456789abcdefghij";

/// `postgres`: test gateways keep their state in Postgres instead of SQLite.
pub const STORE_ENV: &str = "SWITCHYARD_TEST_STORE";
pub const POSTGRES_URL_ENV: &str = "SWITCHYARD_TEST_POSTGRES_URL";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Points `config` at the store the tests run on: SQLite in memory, or a fresh Postgres
/// schema (`test_<random>`, so tests never see each other's rows).
pub fn use_test_store(c: &mut Config) {
    match std::env::var(STORE_ENV).as_deref() {
        Ok("postgres") => use_postgres(c),
        Ok("sqlite") | Err(_) => c.state.path = ":memory:".into(),
        Ok(other) => panic!("{STORE_ENV}={other}: expected postgres or sqlite"),
    }
}

/// Points `config` at a fresh Postgres schema whatever `SWITCHYARD_TEST_STORE` says: for
/// tests of several gateways sharing one store (give each the same config).
pub fn use_postgres(c: &mut Config) {
    c.state.url =
        Some(std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into()));
    c.state.schema = Some(format!("test_{}", uuid::Uuid::new_v4().simple()));
}

pub const REDIS_URL_ENV: &str = "SWITCHYARD_TEST_REDIS_URL";

/// Shares `config`'s limits in the machine's Redis (`SWITCHYARD_TEST_REDIS_URL`, default
/// `redis://127.0.0.1:6379`) under a fresh key prefix: give every replica of a test the same
/// config.
pub fn use_redis(c: &mut Config) {
    c.limits.redis_url =
        Some(std::env::var(REDIS_URL_ENV).unwrap_or_else(|_| "redis://127.0.0.1:6379".into()));
    c.limits.redis_prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    // Tests count admissions exactly; on a loaded CI machine Redis can take longer than the
    // production default to answer, and a timed-out admission is decided by the local fallback.
    c.limits.redis_timeout_ms = 5_000;
}

/// Whether the tests run on Postgres (a test that needs a SQLite file says so).
pub fn on_postgres() -> bool {
    std::env::var(STORE_ENV).as_deref() == Ok("postgres")
}

/// The store `config` names, opened as the gateway opens it: for tests that read the ledger
/// after a gateway stopped.
pub async fn open_store(config: &Config) -> std::sync::Arc<dyn switchyard_metering::Store> {
    switchyard_gateway::build::open_store(config).await.unwrap()
}
pub const ADMIN: &str = "sy-admin-test-0123456789abcdef";

/// A sim with fast, deterministic timing unless the test says otherwise.
pub fn sim(name: &str, tweak: impl FnOnce(&mut SimConfig)) -> SimWorkerConfig {
    let mut sim = SimConfig {
        prefill_base_ms: 2.0,
        prefill_per_token_ms: 0.0,
        decode_ms_per_token: 1.0,
        ..SimConfig::default()
    };
    tweak(&mut sim);
    SimWorkerConfig {
        name: name.into(),
        provider: format!("provider-{name}"),
        region: "local".into(),
        price_per_hour: 1.0,
        runtime: RuntimeKind::Vllm,
        tiers: Vec::new(),
        pool: Default::default(),
        max_concurrency: 32,
        sim,
    }
}

/// A new tenant of `tier` with one key; returns the key's secret.
pub async fn tenant_key(gw: &RunningGateway, tenant: &str, tier: &str) -> String {
    let admin = |path: &str| {
        client()
            .post(format!("{}/admin/v1{path}", gw.admin_url()))
            .bearer_auth(ADMIN)
    };
    let resp = admin("/tenants")
        .json(&serde_json::json!({"id": tenant, "tier": tier}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    let resp = admin("/keys")
        .json(&serde_json::json!({"tenant": tenant, "name": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    body["secret"].as_str().unwrap().to_string()
}

/// POSTs as the holder of `secret`.
pub async fn post_as(
    gw: &RunningGateway,
    secret: &str,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    client()
        .post(format!("{}{path}", gw.url()))
        .bearer_auth(secret)
        .json(body)
        .send()
        .await
        .unwrap()
}

pub fn config(sims: Vec<SimWorkerConfig>) -> Config {
    let mut c = Config::embedded_default();
    c.sim_workers = sims;
    c.health.interval_ms = 100;
    // Generous: tests load both cores, and a slow health answer must not eject a worker.
    c.health.timeout_ms = 3_000;
    c.server.shutdown_grace_ms = 2_000;
    use_test_store(&mut c);
    // Every test chat has the same opening, so stickiness would send them all to one worker;
    // tests of stickiness turn it on.
    c.routing.sticky_idle_s = 0;
    // Probes would add requests the tests' counts do not expect; probe tests turn them on.
    c.probes.interval_ms = 0;
    c
}

pub async fn start(config: Config) -> TestGateway {
    start_with(
        config,
        Secrets {
            dev_key: Some(KEY.into()),
            admin_token: Some(ADMIN.into()),
            fleet_token: None,
        },
    )
    .await
}

/// A gateway a test started, with the simulated workers its config asked for (started first,
/// as `switchyard serve` does). Derefs to the gateway.
pub struct TestGateway {
    pub gateway: RunningGateway,
    /// In `[[sim_workers]]` order, for fault injection.
    pub sims: Vec<SimHandle>,
}

impl std::ops::Deref for TestGateway {
    type Target = RunningGateway;
    fn deref(&self) -> &RunningGateway {
        &self.gateway
    }
}

impl TestGateway {
    /// The gateway's shutdown (drain, grace, ledger flush), then the sims'.
    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        for sim in self.sims {
            sim.shutdown().await;
        }
    }
}

pub async fn start_with(config: Config, secrets: Secrets) -> TestGateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_on(config, secrets, listener, None).await
}

/// Starts the config's sims, then the gateway on `listener`, on the system clock unless a
/// test gives one.
pub async fn start_on(
    mut config: Config,
    secrets: Secrets,
    listener: tokio::net::TcpListener,
    clock: Option<std::sync::Arc<dyn switchyard_metering::clock::Clock>>,
) -> TestGateway {
    // Tests run side by side: an admin port left at its fixed default would clash.
    if config.admin.listen == switchyard_config::AdminConfig::default().listen {
        config.admin.listen = "127.0.0.1:0".into();
    }
    config.validate().unwrap();
    let sims = switchyard_sim::start_sim_workers(&mut config)
        .await
        .unwrap();
    let gateway = match clock {
        Some(clock) => switchyard_server::start_with_clock(config, secrets, listener, clock).await,
        None => switchyard_server::start(config, secrets, listener).await,
    }
    .unwrap();
    TestGateway { gateway, sims }
}

/// [`start`] with the clock SLA time is kept by: a test that judges minutes sets it, so that
/// a minute boundary passing during the test cannot move its data into another bucket.
pub async fn start_with_clock(
    config: Config,
    clock: std::sync::Arc<dyn switchyard_metering::clock::Clock>,
) -> TestGateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secrets = Secrets {
        dev_key: Some(KEY.into()),
        admin_token: Some(ADMIN.into()),
        fleet_token: None,
    };
    start_on(config, secrets, listener, Some(clock)).await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The gateway's `/metrics` text.
pub async fn scrape_metrics(gw: &RunningGateway) -> String {
    client()
        .get(format!("{}/metrics", gw.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// GETs an admin API path with the admin token; asserts 200 and returns the JSON.
pub async fn admin_get(gw: &RunningGateway, path: &str) -> Value {
    let resp = client()
        .get(format!("{}{path}", gw.admin_url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.json().await.unwrap()
}

pub async fn post(gw: &RunningGateway, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", gw.url()))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

pub async fn post_raw(
    gw: &RunningGateway,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client()
        .post(format!("{}{path}", gw.url()))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// One parsed SSE `data:` payload with its arrival time.
#[derive(Debug)]
pub struct Event {
    pub data: String,
    pub at: Instant,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// Reads a whole event stream as a client would, noting when each event arrived. Bounded by
/// a deadline so that a hanging stream fails the test instead of hanging it.
pub async fn read_events(
    resp: reqwest::Response,
    deadline: Duration,
) -> (Vec<Event>, Option<String>) {
    use futures::StreamExt;
    let mut parser = switchyard_protocol::SseParser::new();
    let mut items = Vec::new();
    let mut events = Vec::new();
    let mut body = resp.bytes_stream();
    let end = tokio::time::Instant::now() + deadline;
    let mut transport_error = None;
    loop {
        match tokio::time::timeout_at(end, body.next()).await {
            Err(_) => panic!("stream still open after {deadline:?}"),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                transport_error = Some(e.to_string());
                break;
            }
            Ok(Some(Ok(chunk))) => {
                parser.feed(&chunk, &mut items);
                let now = Instant::now();
                for item in items.drain(..) {
                    if let switchyard_protocol::SseItem::Event { data, .. } = item {
                        events.push(Event { data, at: now });
                    }
                }
            }
        }
    }
    (events, transport_error)
}

/// Content of all chunks, in order (`delta.content` or `text`).
pub fn joined_content(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .flat_map(|e| {
            let v = e.json();
            v["choices"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| {
                    c.pointer("/delta/content")
                        .or_else(|| c.get("text"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// [`eventually`] for a condition that must itself wait (an HTTP call, a store read).
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    deadline: Duration,
    mut cond: impl FnMut() -> F,
) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond().await
}

/// Checks `cond` until it holds or `deadline` passes; returns whether it held.
pub async fn eventually(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

pub fn chat(model: &str, extra: Value) -> Value {
    let mut body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Tell me about rail yards."}],
        "max_tokens": 8,
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    body
}
