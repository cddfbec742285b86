//! The SLA ledger end to end: per-minute SLI rollups written with the usage batches (and
//! for requests refused before any worker), maintenance windows, and the monthly report's
//! numbers, exactly.
//!
//! A month cannot pass in a test, so the first test writes records with chosen timestamps
//! through the store (as the ledger writer would) and checks the report's arithmetic; the
//! second drives live traffic through simulated workers (a failing one, a slow one, a drained
//! one) and checks that it lands in the current minutes' buckets with the right counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_metering::maintenance::{MaintenanceScope, NewMaintenance};
use switchyard_metering::sli::{minute_of, Refusal, SliCounts};
use switchyard_metering::store::UsageQuery;
use switchyard_metering::{UsageRecord, UsageStatus};
use switchyard_server::RunningGateway;
use switchyard_sim::FaultConfig;
use switchyard_testkit::*;

/// 2026-09-01T00:00:00Z: a 30-day month, 43,200 minutes.
const SEPT: i64 = 1_788_220_800_000;
const MIN: i64 = 60_000;
const USD: i64 = 1_000_000_000;

async fn admin(
    gw: &RunningGateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, format!("{}/admin/v1{path}", gw.admin_url()))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn record(id: &str, at_ms: i64, status: UsageStatus, http: u16) -> UsageRecord {
    UsageRecord {
        request_id: id.into(),
        started_at_ms: at_ms,
        tenant_id: "acme".into(),
        key_id: "k".into(),
        model: "sim-small".into(),
        endpoint: "/v1/chat/completions".into(),
        stream: true,
        worker: "w".into(),
        provider: "p".into(),
        region: "eu".into(),
        prompt_tokens: 10,
        completion_tokens: 128,
        usage_estimated: false,
        usage_source: Default::default(),
        usage_note: None,
        ttft_ms: (status == UsageStatus::Completed).then_some(300),
        ttft_exempt: false,
        total_ms: 1_000,
        status,
        http_status: http,
        finish_reason: None,
        cost: 0,
        cogs: 0,
    }
}

#[tokio::test]
async fn a_month_of_injected_minutes_reports_exact_uptime_budget_and_credit() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    let (s, _) = admin(
        &gw,
        reqwest::Method::POST,
        "/tenants",
        Some(json!({"id": "acme", "tier": "pro"})),
    )
    .await;
    assert_eq!(s, 201);
    let store = gw.state.directory.store().clone();
    let day = 24 * 60 * MIN;

    let mut batch = Vec::new();
    // Day 10, 10:00: ten good streamed requests at $10 each (the month's fee: $100).
    let a = SEPT + 9 * day + 600 * MIN;
    for i in 0..10 {
        let mut r = record(
            &format!("ok-{i}"),
            a + i * 1_000,
            UsageStatus::Completed,
            200,
        );
        r.cost = 10 * USD;
        batch.push(r);
    }
    // 10:01: a 502 from the worker — a bad minute.
    batch.push(record("fail", a + MIN, UsageStatus::Failed, 502));
    // 10:02: a success whose first token took 6 s — a bad minute (not "< 5 s TTFT").
    let mut slow = record("slow", a + 2 * MIN, UsageStatus::Completed, 200);
    slow.ttft_ms = Some(6_000);
    slow.total_ms = 7_000;
    batch.push(slow);
    // Day 12: 100 minutes in a row with one 500 each.
    let b = SEPT + 11 * day;
    for i in 0..100 {
        batch.push(record(
            &format!("e-{i}"),
            b + i * MIN,
            UsageStatus::Failed,
            500,
        ));
    }
    // Day 20, 02:10: a 500 inside the announced maintenance window below — excluded.
    batch.push(record(
        "maint",
        SEPT + 19 * day + 130 * MIN,
        UsageStatus::Failed,
        500,
    ));
    store.insert_usage(&batch).await.unwrap();
    // The ledger retries a batch whose commit it did not see: nothing may count twice.
    store.insert_usage(&batch).await.unwrap();

    // Refused before any worker: a 503 (downtime) and our limiter's 429 (not downtime).
    let refusals = vec![
        Refusal {
            request_id: "r503".into(),
            at_ms: a + 3 * MIN,
            tenant_id: "acme".into(),
            model: "sim-small".into(),
            http_status: 503,
            throttled: false,
        },
        Refusal {
            request_id: "r429".into(),
            at_ms: a + 4 * MIN,
            tenant_id: "acme".into(),
            model: "sim-small".into(),
            http_status: 429,
            throttled: false,
        },
    ];
    store.insert_refusals(&refusals).await.unwrap();
    store.insert_refusals(&refusals).await.unwrap();

    // 30 minutes created (so announced) five days ahead: excluded. A month cannot pass in a
    // test, so that window is written through the store with the creation time it would
    // have had; the admin API stamps its own clock's time, and refuses a claimed notice.
    let announced = store
        .add_maintenance(&NewMaintenance {
            start_ms: SEPT + 19 * day + 120 * MIN,
            end_ms: SEPT + 19 * day + 150 * MIN,
            scope: MaintenanceScope::All,
            note: "kernel upgrade".into(),
            created_at_ms: SEPT + 14 * day,
        })
        .await
        .unwrap();
    let (s, backdated) = admin(
        &gw,
        reqwest::Method::POST,
        "/maintenance",
        Some(json!({
            "start": "2026-09-12T00:00:00Z", "end": "2026-09-12T02:00:00Z",
            "scope": "all", "note": "cover the outage", "announced_at": "2026-09-01T00:00:00Z",
        })),
    )
    .await;
    assert_eq!(s, 400, "{backdated}");
    assert_eq!(backdated["error"]["param"], "announced_at");
    // 10 minutes declared now (after the fact) for September: no 48 h notice, not excluded.
    let (s, late) = admin(
        &gw,
        reqwest::Method::POST,
        "/maintenance",
        Some(json!({
            "start": "2026-09-21T00:00:00Z", "end": "2026-09-21T00:10:00Z", "scope": "tenant:acme",
        })),
    )
    .await;
    assert_eq!(s, 201, "{late}");
    assert_eq!(late["notice_ok"], false);
    let (s, bad) = admin(
        &gw,
        reqwest::Method::POST,
        "/maintenance",
        Some(json!({
        "start": "2026-09-21T00:00:00Z", "end": "2026-09-21T00:00:00Z"})),
    )
    .await;
    assert_eq!(s, 400, "{bad}");

    let (s, list) = admin(
        &gw,
        reqwest::Method::GET,
        "/maintenance?month=2026-09",
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 2);

    let (s, report) = admin(
        &gw,
        reqwest::Method::GET,
        "/sla?month=2026-09&tenant=acme",
        None,
    )
    .await;
    assert_eq!(s, 200, "{report}");
    let r = &report["data"][0];
    // 43,200 minutes − 30 excluded = 43,170 eligible. Bad: 10:01 (502), 10:02 (slow), 10:03
    // (503 refusal) and the 100 minutes of 500s = 103; the 429 minute and the maintenance
    // minute are not bad.
    assert_eq!(r["minutes"], 43_200);
    assert_eq!(r["minutes_excluded"], 30);
    assert_eq!(r["minutes_maintenance_not_excluded"], 10);
    assert_eq!(r["minutes_eligible"], 43_170);
    assert_eq!(r["minutes_bad"], 103);
    // 43,067 / 43,170 = 0.99761408… → 997,614 ppm.
    assert_eq!(r["availability_ppm"], 997_614);
    assert_eq!(r["availability_pct"], "99.7614");
    // Budget 43,170 × 0.1% = 43.17 → 43 minutes; left 43.17 − 103 = −59.83 → −60.
    assert_eq!(r["error_budget_minutes"], 43);
    assert_eq!(r["error_budget_left_minutes"], -60);
    // −59.83 / 43.17 = −1.38591… of the budget → −13,860 bp (rounded down).
    assert_eq!(r["error_budget_left_bp"], -13_860);
    // Requests: 10 + 1 + 1 + 100 + 1 (maintenance) + 2 refusals = 115, once each.
    assert_eq!(r["requests"], 115);
    assert_eq!(r["errors_5xx"], 103);
    assert_eq!(r["errors_429"], 1);
    // 5xx among the 114 requests the SLI counts (the 429 left out): 903,508 ppm, far over the
    // 0.2% objective; no request was shed. The 429 is the tenant's: 1 / 115 = 8,695 ppm.
    assert_eq!(r["rate_5xx_ppm"], 903_508);
    assert_eq!(
        (
            r["errors_5xx_slo_met"].as_bool(),
            r["throttled_slo_met"].as_bool()
        ),
        (Some(false), Some(true))
    );
    assert_eq!(r["rate_429_ppm"], 8_695);
    // TTFT: ten at 300 ms (≤ 500 bucket) and one at 6 s: rank ⌈0.95 × 11⌉ = 11 → 6,000.
    assert_eq!(
        r["p95_ttft"],
        json!({"samples": 11, "le_ms": 6_000, "overflow": false})
    );
    assert_eq!(r["ttft_slo_met"], false);
    // TTLT: ten at 1 s, one at 7 s → 8,000 bucket. At 256 tokens: 300 + 700 × 256/128 = 1,700
    // (≤ 2,000) and 6,000 + 1,000 × 2 = 8,000 (≤ 8,000): the SLO of 8 s is met, just.
    assert_eq!(r["p95_ttlt"]["le_ms"], 8_000);
    assert_eq!(r["p95_ttlt_256"]["le_ms"], 8_000);
    assert_eq!(r["ttlt_256_slo_met"], true);
    // One slow hour is not three: no latency credit.
    assert_eq!(r["ttft_breach_hours_in_a_row"], 1);
    assert_eq!(r["latency_credit_bp"], 0);
    // Steps: (9,990 × 43,170 − 10,000 × 43,067) / (10 × 43,170) = 598,300 / 431,700 = 1.39:
    // floor → 1 step → 5% of the $100 fee = $5.
    assert_eq!(r["steps_below_slo"], 1);
    assert_eq!(r["credit_bp"], 500);
    assert_eq!(r["fee_usd"], "100.000000");
    assert_eq!(r["credit_usd"], "5.000000");
    assert_eq!(r["credit_nanos"], 5 * USD);

    // The gateway's alert evaluator reads the same month through its own window query (whole
    // minutes from the rollups, edges from raw rows): the same requests, judged the same way.
    let window = store.sli_window(SEPT, SEPT + 30 * day).await.unwrap();
    let mut seen = SliCounts::default();
    for w in window.iter().filter(|w| w.tenant_id == "acme") {
        seen.add(&w.counts);
    }
    assert_eq!(
        (
            seen.requests,
            seen.errors_5xx,
            seen.errors_429,
            seen.ttft_slow
        ),
        (
            r["requests"].as_u64().unwrap(),
            r["errors_5xx"].as_u64().unwrap(),
            r["errors_429"].as_u64().unwrap(),
            r["ttft_slow"].as_u64().unwrap()
        )
    );
    // 104 bad requests (the 103 5xx and the slow one; the 429 is not bad) of the 114 counted.
    assert_eq!((seen.bad, seen.eligible()), (103 + 1, 114));

    // Ceil: 1.39 → 2 steps → 10% = $10.
    let (_, report) = admin(
        &gw,
        reqwest::Method::GET,
        "/sla?month=2026-09&tenant=acme&partial_step=ceil",
        None,
    )
    .await;
    assert_eq!(report["data"][0]["credit_usd"], "10.000000");
    assert_eq!(report["partial_step"], "ceil");

    // A window that has started was announced: it cannot be taken back after the fact, and
    // the report stays as it was. One still to come can be deleted.
    let (s, refused) = admin(
        &gw,
        reqwest::Method::DELETE,
        &format!("/maintenance/{}", announced.id),
        None,
    )
    .await;
    assert_eq!(s, 409, "{refused}");
    let (_, report) = admin(
        &gw,
        reqwest::Method::GET,
        "/sla?month=2026-09&tenant=acme",
        None,
    )
    .await;
    assert_eq!(report["data"][0]["minutes_bad"], 103);
    let (s, future) = admin(
        &gw,
        reqwest::Method::POST,
        "/maintenance",
        Some(json!({"start": "2099-01-01T00:00:00Z", "end": "2099-01-01T00:10:00Z"})),
    )
    .await;
    assert_eq!(
        (s, future["notice_ok"].as_bool()),
        (201, Some(true)),
        "{future}"
    );
    let path = format!("/maintenance/{}", future["id"]);
    assert_eq!(
        admin(&gw, reqwest::Method::DELETE, &path, None).await.0,
        200
    );
    assert_eq!(
        admin(&gw, reqwest::Method::DELETE, &path, None).await.0,
        404
    );
    // Bad query parameters are refused by name.
    let (s, _) = admin(
        &gw,
        reqwest::Method::GET,
        "/sla?month=2026-09&partial_step=round",
        None,
    )
    .await;
    assert_eq!(s, 400);
    gw.shutdown().await;
}

/// Sums the dev tenant's rollups over `[from, to]` minutes (traffic may straddle a minute).
async fn live_counts(
    gw: &RunningGateway,
    tenant: &str,
    from: i64,
    to: i64,
) -> (SliCounts, Vec<i64>) {
    let rows = gw
        .state
        .directory
        .store()
        .sli_minutes(&UsageQuery {
            tenant_id: Some(tenant.into()),
            from_ms: Some(from * MIN),
            to_ms: Some((to + 1) * MIN),
        })
        .await
        .unwrap();
    let mut sum = SliCounts::default();
    for r in &rows {
        sum.add(&r.counts);
    }
    (sum, rows.iter().map(|r| r.minute).collect())
}

#[tokio::test]
async fn live_traffic_lands_in_the_current_minute_with_the_right_counts() {
    let mut ok = sim("ok", |_| {});
    ok.sim.model = "m-ok".into();
    let mut failing = sim("failing", |s| {
        s.faults = FaultConfig {
            error_500: 1.0,
            ..FaultConfig::default()
        }
    });
    failing.sim.model = "m-500".into();
    // Prefill over 5 s: a first token the addendum does not count as a success.
    let mut slow = sim("slow", |s| s.prefill_base_ms = 5_200.0);
    slow.sim.model = "m-slow".into();
    let mut gone = sim("gone", |_| {});
    gone.sim.model = "m-gone".into();
    let mut c = config(vec![ok, failing, slow, gone]);
    c.upstream.eject_after_failures = 1000; // keep the failing worker in rotation
    let gw = start(c).await;
    let tenant = gw.state.config.dev_tenant.id.clone();
    // Every request of "m-gone" finds no worker: the gateway's own 503.
    let (s, d) = admin(
        &gw,
        reqwest::Method::POST,
        "/fleet/drain",
        Some(json!({"worker": "gone"})),
    )
    .await;
    assert_eq!(s, 200, "{d}");

    let first = minute_of(switchyard_metering::directory::unix_ms());
    for _ in 0..3 {
        let resp = post(&gw, "/v1/chat/completions", &chat("m-ok", json!({}))).await;
        assert_eq!(resp.status(), 200);
    }
    let resp = post(&gw, "/v1/chat/completions", &chat("m-500", json!({}))).await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    let resp = post(&gw, "/v1/chat/completions", &chat("m-gone", json!({}))).await;
    assert_eq!(resp.status(), 503);
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("m-slow", json!({"stream": true})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (events, _) = read_events(resp, Duration::from_secs(20)).await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let last = minute_of(switchyard_metering::directory::unix_ms());

    // The ledger writes in the background: wait for all six requests.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (counts, minutes) = loop {
        let got = live_counts(&gw, &tenant, first, last).await;
        if got.0.requests >= 6 || std::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        counts,
        SliCounts {
            requests: 6,
            ok: 4,
            errors_5xx: 2,
            errors_429: 0,
            ttft_slow: 1,
            bad: 3,
            throttled: 0,
        }
    );
    assert!(
        minutes.iter().all(|m| (first..=last).contains(m)),
        "{minutes:?} not in {first}..={last}"
    );
    gw.shutdown().await;
}

/// A gateway that is not running cannot serve or measure anything: the minutes in which no
/// gateway was alive are unobserved and count as bad, instead of as silently up. The clock is
/// the test's, so that "stopped for three minutes" takes no three minutes.
#[tokio::test]
async fn minutes_without_a_running_gateway_count_as_unobserved() {
    use std::sync::Arc;
    use switchyard_metering::clock::ManualClock;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    // 2026-10-10T10:00:30Z.
    let t0 = 1_791_540_030_000;
    let clock = Arc::new(ManualClock::new(t0));
    // One config for both boots: the same state store (file, or Postgres schema).
    let mut c = config(vec![sim("a", |_| {})]);
    c.state.path = db.clone();
    let boot = |clock: Arc<ManualClock>| start_with_clock(c.clone(), clock);
    let gw = boot(clock.clone()).await; // alive in 10:00
    let (s, _) = admin(
        &gw,
        reqwest::Method::POST,
        "/tenants",
        Some(json!({"id": "acme", "tier": "pro"})),
    )
    .await;
    assert_eq!(s, 201);
    gw.shutdown().await;

    clock.set(t0 + 4 * MIN); // stopped through 10:01, 10:02 and 10:03
    let gw = boot(clock.clone()).await; // alive again in 10:04
    clock.set(t0 + 5 * MIN + 10_000); // the report is read at 10:05:40
    let (s, report) = admin(
        &gw,
        reqwest::Method::GET,
        "/sla?month=2026-10&tenant=acme",
        None,
    )
    .await;
    assert_eq!(s, 200, "{report}");
    let r = &report["data"][0];
    assert_eq!(r["minutes_unobserved"], 3, "{r:#}");
    assert_eq!(r["minutes_bad"], 3);
    assert_eq!(
        r["requests"], 0,
        "no request failed: silence alone made these minutes bad"
    );
    // The public page agrees, and does not count the minute in progress (10:05, in which this
    // process has not beaten yet) as unobserved.
    let status: Value = reqwest::get(format!("{}/status.json", gw.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let day = status["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "24h")
        .unwrap();
    assert_eq!(day["summary"]["minutes_bad"], 3, "{:#}", day["summary"]);
    gw.shutdown().await;
}

/// A long unstreamed answer is not slow to start: it reaches its worker as a stream, so its
/// TTFT is its first token, not its whole length. Six seconds of generation after a fast first
/// token make no bad minute (they once made one, a page and "degraded" on the status page).
#[tokio::test]
async fn a_six_second_unstreamed_answer_makes_no_bad_minute() {
    // A fast first token, then three more 2 s apart: about 6 s in all.
    let c = config(vec![sim("long", |s| s.decode_ms_per_token = 2_000.0)]);
    let gw = start(c).await;
    let started = minute_of(switchyard_metering::directory::unix_ms());
    let began = std::time::Instant::now();
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"max_tokens": 4})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["usage"]["completion_tokens"], 4);
    assert!(body["choices"][0]["message"]["content"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert!(
        began.elapsed() >= Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    let ended = minute_of(switchyard_metering::directory::unix_ms());
    let mut counts = SliCounts::default();
    for _ in 0..100 {
        counts = live_counts(&gw, "dev", started, ended).await.0;
        if counts.requests == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts.requests, 1, "{counts:?}");
    assert_eq!(
        counts.ttft_slow, 0,
        "the first token came at once: {counts:?}"
    );
    assert!(!counts.is_bad());
    gw.shutdown().await;
}

/// A prompt over its tier's `sla_max_prompt_tokens` is outside the TTFT objectives (the
/// addendum's "agreed burst caps"): its slow first token makes no bad minute, while the same
/// wait after a short prompt does. One tenant's long documents cannot burn everyone's budget.
#[tokio::test]
async fn a_slow_first_token_after_a_prompt_over_the_cap_is_not_judged() {
    let mut c = config(vec![sim("slow", |s| s.prefill_base_ms = 5_200.0)]);
    c.tiers.get_mut("pro").unwrap().sla_max_prompt_tokens = 20;
    let gw = start(c).await;
    let started = minute_of(switchyard_metering::directory::unix_ms());
    let long = chat(
        "sim-small",
        json!({"messages": [{"role": "user", "content": "word ".repeat(40)}]}),
    );
    let short = chat(
        "sim-small",
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    );
    let (long, short) = tokio::join!(
        post(&gw, "/v1/chat/completions", &long),
        post(&gw, "/v1/chat/completions", &short),
    );
    assert_eq!(
        (long.status().as_u16(), short.status().as_u16()),
        (200, 200)
    );
    let ended = minute_of(switchyard_metering::directory::unix_ms());
    let mut counts = SliCounts::default();
    for _ in 0..100 {
        counts = live_counts(&gw, "dev", started, ended).await.0;
        if counts.requests == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts.requests, 2, "{counts:?}");
    assert_eq!(
        (counts.ttft_slow, counts.bad),
        (1, 1),
        "only the short prompt's wait counts: {counts:?}"
    );
    gw.shutdown().await;
}
