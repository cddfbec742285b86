//! `switchyard probe` (the real binary) against a gateway in front of a simulated worker,
//! probed from outside. While the worker answers, the probes pass; once it fails every
//! request, they fail, and the minutes they push make the SLA report and the status page show
//! the probers' view beside the gateway's own. A probe refused for its own key is not counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const ADMIN_TOKEN: &str = "sy-admin-probe-test-0123456789abc";
const DEV_KEY: &str = "sk-dev-probe-test-0123456789abcdef";

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn admin(url: &str, path: &str) -> Value {
    client()
        .get(format!("{url}/admin/v1{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn probe(url: &str, admin_url: &str, key: &str, rounds: &str) -> std::process::Output {
    Command::new(BIN)
        .args([
            "probe",
            "--url",
            url,
            "--admin-url",
            admin_url,
            "--key",
            key,
            "--model",
            "sim-small",
            "--name",
            "test-eu",
            "--region",
            "eu",
            "--every-ms",
            "150",
            "--rounds",
            rounds,
            "--listen",
            "127.0.0.1:0",
        ])
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SWITCHYARD_LOG", "warn")
        .output()
        .await
        .unwrap()
}

/// A gateway in this process, its clock two minutes ahead of the prober's: the SLA report
/// covers whole minutes up to its "now", so the minutes the prober pushes (by the real clock)
/// are already in it.
async fn gateway(
    dir: &std::path::Path,
) -> (
    switchyard_server::RunningGateway,
    Vec<switchyard_sim::SimHandle>,
    String,
    String,
) {
    let mut c = switchyard_server::Config::embedded_default();
    let mut sim = switchyard_sim::SimConfig {
        prefill_base_ms: 2.0,
        decode_ms_per_token: 1.0,
        ..switchyard_sim::SimConfig::default()
    };
    sim.model = "sim-small".into();
    c.sim_workers = vec![switchyard_config::SimWorkerConfig {
        name: "w1".into(),
        provider: "p".into(),
        region: "eu".into(),
        price_per_hour: 1.0,
        runtime: switchyard_fleet::RuntimeKind::Vllm,
        tiers: Vec::new(),
        pool: Default::default(),
        max_concurrency: 32,
        sim,
    }];
    c.state.path = dir.join("state.db");
    c.upstream.eject_after_failures = 1_000_000;
    c.probes.interval_ms = 0;
    c.admin.listen = "127.0.0.1:0".into();
    let clock = std::sync::Arc::new(switchyard_metering::clock::ManualClock::new(
        switchyard_metering::directory::unix_ms() + 120_000,
    ));
    let sims = switchyard_sim::start_sim_workers(&mut c).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = switchyard_server::start_with_clock(
        c,
        switchyard_server::Secrets {
            dev_key: Some(DEV_KEY.into()),
            admin_token: Some(ADMIN_TOKEN.into()),
            fleet_token: None,
        },
        listener,
        clock,
    )
    .await
    .unwrap();
    let (url, admin) = (gw.url(), gw.admin_url());
    (gw, sims, url, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_from_outside_count_in_the_sla_report_and_on_the_status_page() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, sims, url, admin_url) = gateway(dir.path()).await;

    // Healthy: three rounds, all passing, pushed.
    let out = probe(&url, &admin_url, DEV_KEY, "3").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A prober with a wrong key is refused (401): its own problem, not counted as downtime.
    let out = probe(&url, &admin_url, "sk-wrong-0123456789abcdefghij", "2").await;
    assert!(out.status.success());
    let month = &admin(&admin_url, "/sla?tenant=dev").await["data"][0];
    assert!(month["minutes_probed"].as_u64().unwrap() >= 1, "{month:#}");
    assert_eq!(month["minutes_probe_bad"], 0, "{month:#}");
    assert_eq!(month["probe_availability_ppm"], 1_000_000);

    // The worker fails every request: the probes see it from outside.
    sims[0].set_faults(switchyard_sim::FaultConfig {
        error_500: 1.0,
        ..switchyard_sim::FaultConfig::default()
    });
    let out = probe(&url, &admin_url, DEV_KEY, "2").await;
    assert!(out.status.success());
    let month = &admin(&admin_url, "/sla?tenant=dev").await["data"][0];
    assert!(
        month["minutes_probe_bad"].as_u64().unwrap() >= 1,
        "{month:#}"
    );
    assert!(month["probe_availability_ppm"].as_u64().unwrap() < 1_000_000);
    // The report's availability takes the worse view: the probed bad minute is bad.
    assert!(month["minutes_bad"].as_u64().unwrap() >= month["minutes_probe_bad"].as_u64().unwrap());

    let status: Value = client()
        .get(format!("{url}/status.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let day = &status["windows"][0]["summary"];
    assert!(day["probed_minutes"].as_u64().unwrap() >= 1, "{day:#}");
    assert!(
        day["probe_availability_ppm"].as_u64().unwrap() < 1_000_000,
        "{day:#}"
    );

    // Pushes are checked: a month-old minute, a future one, or more failures than probes, is
    // refused.
    let push = |body: Value| {
        client()
            .post(format!("{admin_url}/admin/v1/probes/minutes"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let old = push(json!({"prober": "x", "region": "eu", "minutes": [{"minute": 1, "probes": 1, "failed": 1}]}))
        .await
        .unwrap();
    assert_eq!(old.status(), 400);
    let now_minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60;
    let bad = push(json!({"prober": "x", "region": "eu", "minutes": [{"minute": now_minute, "probes": 1, "failed": 2}]}))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // A prober's clock a minute ahead of the gateway's (two ahead of the real one here) is
    // tolerated; ten minutes ahead is not.
    let skewed = push(json!({"prober": "x", "region": "eu", "minutes": [{"minute": now_minute + 3, "probes": 1, "failed": 0}]}))
        .await
        .unwrap();
    assert_eq!(skewed.status(), 200);
    let future = push(json!({"prober": "x", "region": "eu", "minutes": [{"minute": now_minute + 12, "probes": 1, "failed": 0}]}))
        .await
        .unwrap();
    assert_eq!(future.status(), 400);

    // An admin token without the admin port's URL is a mistake said at once, not minutes
    // pushed to the public port (which does not serve the admin API).
    let out = Command::new(BIN)
        .args([
            "probe",
            "--url",
            &url,
            "--key",
            DEV_KEY,
            "--model",
            "sim-small",
        ])
        .args(["--name", "x", "--rounds", "1", "--listen", "127.0.0.1:0"])
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("SWITCHYARD_ADMIN_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--admin-url"));
    gw.shutdown().await;
    for sim in sims {
        sim.shutdown().await;
    }
}
