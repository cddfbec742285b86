//! Alerts and incidents end to end: a worker that starts failing every request burns the
//! error budget, the page alert fires once (webhook and incident), and once the fault is gone
//! and traffic is clean it resolves once and the incident gets its end and impact. A failing
//! synthetic probe raises its own alert.
//!
//! The workbook's windows (1 h, 5 m, 6 h, 30 m) are scaled down to seconds through
//! `[alerts]`, and the evaluator runs every 200 ms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use switchyard_server::{Config, RunningGateway};
use switchyard_sim::FaultConfig;
use switchyard_testkit::*;

/// A webhook receiver on port 0 that keeps every POSTed body.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let got: Arc<Mutex<Vec<Value>>> = Arc::default();
        let sink = got.clone();
        let app = Router::new().route(
            "/hook",
            post(move |Json(body): Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(body);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, got, task }
    }

    fn with(&self, status: &str, alert: &str) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b["status"] == status && b["alert"] == alert)
            .cloned()
            .collect()
    }

    fn all(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn alerting_config(c: &mut Config, webhook: &str) {
    let a = &mut c.alerts;
    a.enabled = true;
    a.interval_ms = 200;
    a.webhook_url = Some(webhook.into());
    a.webhook_backoff_ms = 50;
    a.page_short_window_ms = 1_000;
    a.page_long_window_ms = 3_000;
    a.ticket_short_window_ms = 1_500;
    a.ticket_long_window_ms = 4_000;
    a.min_requests = 5;
}

async fn admin_get(gw: &RunningGateway, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}/admin/v1{path}", gw.admin_url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
}

async fn incidents(gw: &RunningGateway) -> Vec<Value> {
    let resp = admin_get(gw, "/incidents").await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

/// Sends a chat every ~20 ms until stopped.
fn drive(gw: &RunningGateway, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u32> {
    let url = format!("{}/v1/chat/completions", gw.url());
    tokio::spawn(async move {
        let http = client();
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            let _ = http
                .post(&url)
                .bearer_auth(KEY)
                .json(&chat("sim-small", serde_json::json!({})))
                .send()
                .await;
            sent += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent
    })
}

/// Rounds the SLO evaluator has completed, from its own counter on `/metrics`.
async fn evaluations(gw: &RunningGateway) -> u64 {
    let body = scrape_metrics(gw).await;
    body.lines()
        .find_map(|l| l.strip_prefix("switchyard_alert_evaluations_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Waits until the evaluator has completed `rounds` more rounds: what was going to fire in
/// them has fired. (A count of rounds, not a guess at how long they take.)
async fn evaluator_rounds(gw: &RunningGateway, rounds: u64) {
    let target = evaluations(gw).await + rounds;
    assert!(
        eventually_async(Duration::from_secs(20), || async {
            evaluations(gw).await >= target
        })
        .await,
        "the evaluator stopped before {rounds} more rounds"
    );
}

#[tokio::test]
async fn a_failing_worker_pages_once_opens_an_incident_and_resolves_once() {
    let hook = Receiver::start().await;
    let mut c = config(vec![sim("a", |s| s.model = "sim-small".into())]);
    alerting_config(&mut c, &hook.url);
    // Keep the failing worker in rotation: the outage is then a stream of 502s (the budget
    // burning), not a model without workers (which has an alert of its own).
    c.upstream.eject_after_failures = 1_000_000;
    let gw = start(c).await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = drive(&gw, stop.clone());

    // Clean traffic: nothing fires, however many rounds.
    evaluator_rounds(&gw, 4).await;
    assert!(hook.all().is_empty(), "{:?}", hook.all());
    assert!(incidents(&gw).await.is_empty());

    gw.sims[0].set_faults(FaultConfig {
        error_500: 1.0,
        ..FaultConfig::default()
    });
    assert!(
        eventually(Duration::from_secs(20), || !hook
            .with("firing", "slo_burn_rate")
            .is_empty())
        .await,
        "no page: {:?}",
        hook.all()
    );
    // Several evaluations later, still one notification.
    evaluator_rounds(&gw, 5).await;
    let firing = hook.with("firing", "slo_burn_rate");
    assert_eq!(firing.len(), 1, "{firing:#?}");
    let page = &firing[0];
    println!(
        "firing webhook payload:\n{}",
        serde_json::to_string_pretty(page).unwrap()
    );
    assert_eq!(page["severity"], "page");
    assert_eq!(page["scope"], "all");
    assert_eq!(page["slo"], "99.90");
    let burn_1s = page["burn_rates"]["1s"].as_f64().unwrap();
    let burn_3s = page["burn_rates"]["3s"].as_f64().unwrap();
    assert!(burn_1s > 14.4 && burn_3s > 14.4, "{page}");
    assert!(page["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(page["incident_id"].as_i64().is_some());
    assert_eq!(hook.all().len(), 1, "only the page: {:#?}", hook.all());

    let open = incidents(&gw).await;
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["status"], "open");
    assert_eq!(open[0]["severity"], "page");
    assert_eq!(open[0]["id"], page["incident_id"]);
    assert!(open[0]["ended_at"].is_null());

    // The fault is fixed; traffic is clean again.
    gw.sims[0].set_faults(FaultConfig::default());
    assert!(
        eventually(Duration::from_secs(20), || !hook
            .with("resolved", "slo_burn_rate")
            .is_empty())
        .await,
        "never resolved: {:?}",
        hook.all()
    );
    // A few more evaluations of clean traffic: nothing else goes out.
    evaluator_rounds(&gw, 5).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert_eq!(
        hook.with("resolved", "slo_burn_rate").len(),
        1,
        "{:#?}",
        hook.all()
    );
    assert_eq!(
        hook.with("firing", "slo_burn_rate").len(),
        1,
        "{:#?}",
        hook.all()
    );
    let resolved = &hook.with("resolved", "slo_burn_rate")[0];
    assert_eq!(resolved["started_at"], page["started_at"]);
    assert!(resolved["resolved_at"].is_string());

    let closed = incidents(&gw).await;
    assert_eq!(closed.len(), 1);
    let inc = &closed[0];
    println!("incident:\n{}", serde_json::to_string_pretty(inc).unwrap());
    assert_eq!(inc["status"], "resolved", "{inc:#}");
    assert!(inc["ended_at"].is_string());
    assert!(inc["requests_failed"].as_u64().unwrap() >= 5, "{inc:#}");
    assert!(inc["bad_minutes"].as_u64().unwrap() >= 1, "{inc:#}");
    // Every bad minute of a 28-31 day month at 99.9% is over 2% of the budget.
    assert!(inc["budget_spent_bp"].as_u64().unwrap() >= 200, "{inc:#}");
    assert_eq!(inc["tenants_affected"], 1, "{inc:#}");
    assert_eq!(inc["alerts"][0]["name"], "slo_burn_rate");
    assert!(inc["alerts"][0]["resolved_at"].is_string());

    // The month filter, and the post-mortem.
    let month = &inc["started_at"].as_str().unwrap()[..7];
    let resp = admin_get(&gw, &format!("/incidents?month={month}")).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let resp = admin_get(&gw, "/incidents?month=2020-01").await;
    let body: Value = resp.json().await.unwrap();
    assert!(body["data"].as_array().unwrap().is_empty());
    let id = inc["id"].as_i64().unwrap();
    let resp = admin_get(&gw, &format!("/incidents/{id}/postmortem")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    let md = resp.text().await.unwrap();
    println!("post-mortem:\n{md}");
    assert!(md.starts_with(&format!("# Incident {id}: ")), "{md}");
    for needle in [
        "## Summary",
        "## Timeline (UTC)",
        "Detection: first alert fired",
        "End: last alert resolved",
        "- Requests failed: ",
        "- Minutes bad: ",
        "- Error budget spent: ",
        "- Tenants affected: 1",
        "## Root cause",
        "## Action items",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
    }
    assert_eq!(admin_get(&gw, "/incidents/999").await.status(), 404);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_failing_synthetic_probe_raises_a_probe_alert() {
    let hook = Receiver::start().await;
    let mut c = config(vec![sim("a", |_| {}), sim("b", |_| {})]);
    alerting_config(&mut c, &hook.url);
    c.probes.interval_ms = 200;
    c.outlier.base_ejection_ms = 300;
    c.outlier.max_ejection_ms = 1_200;
    let gw = start(c).await;
    gw.sims[0].set_faults(FaultConfig {
        error_500: 1.0,
        ..FaultConfig::default()
    });
    assert!(
        eventually(Duration::from_secs(20), || !hook
            .with("firing", "probe_failed")
            .is_empty())
        .await,
        "no probe alert: {:?}",
        hook.all()
    );
    let alert = hook.with("firing", "probe_failed")[0].clone();
    println!(
        "probe webhook payload:\n{}",
        serde_json::to_string_pretty(&alert).unwrap()
    );
    assert_eq!(alert["scope"], "worker:a");
    assert_eq!(alert["severity"], "ticket");
    assert!(alert["summary"]
        .as_str()
        .unwrap()
        .contains("synthetic probe of worker a"));
    // Worker b still serves the model: no "model unavailable" page.
    assert!(hook.with("firing", "model_unavailable").is_empty());
    let open = incidents(&gw).await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["scopes"], serde_json::json!(["worker:a"]));

    // Fixed: after its ejection the worker is probed again, passes, and the alert resolves.
    gw.sims[0].set_faults(FaultConfig::default());
    assert!(
        eventually(Duration::from_secs(20), || !hook
            .with("resolved", "probe_failed")
            .is_empty())
        .await,
        "probe alert never resolved: {:?}",
        hook.all()
    );
    assert_eq!(hook.with("firing", "probe_failed").len(), 1);
    // The incident closes in the same evaluation, just after the notification is queued.
    let mut closed = Vec::new();
    for _ in 0..50 {
        closed = incidents(&gw).await;
        if closed[0]["status"] == "resolved" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(closed[0]["status"], "resolved", "{:#}", closed[0]);
    gw.shutdown().await;
}

/// A maintenance window is announced when it is created: on the webhook at once, and on the
/// public status page until it is over (windows for one tenant stay off the public page).
#[tokio::test]
async fn a_maintenance_window_is_announced_on_the_webhook_and_the_status_page() {
    let hook = Receiver::start().await;
    let mut c = config(vec![sim("a", |_| {})]);
    alerting_config(&mut c, &hook.url);
    let gw = start(c).await;
    let now = switchyard_metering::directory::unix_ms();
    let day = 24 * 3_600_000;
    let at = |ms: i64| switchyard_control::admin::format_rfc3339(ms);
    for (scope, note) in [("all", "kernel upgrade"), ("tenant:dev", "dev's own")] {
        let resp = client()
            .post(format!("{}/admin/v1/maintenance", gw.admin_url()))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({"start": at(now + 3 * day), "end": at(now + 3 * day + 1_800_000),
                "scope": scope, "note": note}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    assert!(
        eventually(Duration::from_secs(10), || hook
            .with("scheduled", "maintenance_announced")
            .len()
            == 2)
        .await,
        "{:?}",
        hook.all()
    );
    let sent = &hook.with("scheduled", "maintenance_announced")[0];
    assert_eq!(sent["maintenance"]["minutes"], 30);
    assert_eq!(sent["maintenance"]["notice_ok"], true);
    let status: Value = client()
        .get(format!("{}/status.json", gw.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = status["maintenance"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{status:#}");
    assert_eq!(listed[0]["note"], "kernel upgrade");
    assert_eq!(listed[0]["in_progress"], false);
    let page = client()
        .get(format!("{}/status", gw.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Scheduled maintenance") && page.contains("kernel upgrade"));
    assert!(!page.contains("dev's own"));
    gw.shutdown().await;
}
