//! The status pages end to end: known live traffic (successes, a worker's injected 500s, the
//! gateway's own 503 for a drained model) plus records written through the store at a chosen
//! time, then `/status.json`'s numbers exactly, `/status` as HTML naming the models and
//! regions and no tenant, key or worker, and `/admin/status` behind the admin token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use switchyard_metering::directory::unix_ms;
use switchyard_metering::sli::minute_of;
use switchyard_metering::{UsageRecord, UsageStatus};
use switchyard_server::{RunningGateway, Secrets};
use switchyard_sim::FaultConfig;
use switchyard_testkit::*;

const MIN: i64 = 60_000;
const TENANT: &str = "acme-secret-corp";

fn record(id: &str, at_ms: i64, status: UsageStatus, http: u16, ttft: u64) -> UsageRecord {
    UsageRecord {
        request_id: id.into(),
        started_at_ms: at_ms,
        tenant_id: TENANT.into(),
        key_id: "key_hidden".into(),
        model: "m-ok".into(),
        endpoint: "/v1/chat/completions".into(),
        stream: true,
        worker: "wk-ok-eu".into(),
        provider: "provider-wk-ok-eu".into(),
        region: "eu-west".into(),
        prompt_tokens: 10,
        completion_tokens: 64,
        usage_estimated: false,
        usage_source: Default::default(),
        usage_note: None,
        ttft_ms: (status == UsageStatus::Completed).then_some(ttft),
        ttft_exempt: false,
        total_ms: ttft + 500,
        status,
        http_status: http,
        finish_reason: None,
        cost: 0,
        cogs: 0,
    }
}

async fn get(gw: &RunningGateway, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", gw.url()))
        .send()
        .await
        .unwrap()
}

/// Three workers in two regions: a good one, one answering 500 to everything (kept in
/// rotation), and a drained one, so its model has no worker and gets the gateway's 503.
async fn gateway() -> TestGateway {
    let mut ok = sim("wk-ok-eu", |_| {});
    ok.sim.model = "m-ok".into();
    ok.region = "eu-west".into();
    let mut failing = sim("wk-fail-us", |s| {
        s.faults = FaultConfig {
            error_500: 1.0,
            ..FaultConfig::default()
        }
    });
    failing.sim.model = "m-500".into();
    failing.region = "us-east".into();
    let mut gone = sim("wk-gone-eu", |_| {});
    gone.sim.model = "m-gone".into();
    gone.region = "eu-west".into();
    let mut c = config(vec![ok, failing, gone]);
    c.upstream.eject_after_failures = 1_000;
    let gw = start(c).await;
    let resp = client()
        .post(format!("{}/admin/v1/fleet/drain", gw.admin_url()))
        .bearer_auth(ADMIN)
        .json(&json!({"worker": "wk-gone-eu"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw
}

/// Live traffic must land in one minute for exact bad-minute counts: start early in one.
async fn early_in_a_minute() {
    let into = unix_ms().rem_euclid(MIN);
    if into > 40_000 {
        tokio::time::sleep(Duration::from_millis(
            u64::try_from(MIN - into + 500).unwrap(),
        ))
        .await;
    }
}

#[tokio::test]
async fn status_json_counts_known_traffic_exactly_and_pages_leak_no_tenant() {
    let gw = gateway().await;
    let secret = tenant_key(&gw, TENANT, "pro").await;
    let store = gw.state.directory.store().clone();

    // Three hours ago, written as the ledger would: 19 first tokens at 300 ms and one at
    // 2.5 s (p95 = rank 19 of 20 → the 500 ms bucket), and one 500: a bad minute.
    let past_minute = minute_of(unix_ms()) - 180;
    let past = past_minute * MIN;
    let mut batch: Vec<UsageRecord> = (0..19)
        .map(|i| record(&format!("p{i}"), past + i, UsageStatus::Completed, 200, 300))
        .collect();
    batch.push(record(
        "p-slowish",
        past + 20,
        UsageStatus::Completed,
        200,
        2_500,
    ));
    batch.push(record("p-500", past + 21, UsageStatus::Failed, 500, 0));
    store.insert_usage(&batch).await.unwrap();

    early_in_a_minute().await;
    let live_minute = minute_of(unix_ms());
    for _ in 0..4 {
        let resp = post_as(
            &gw,
            &secret,
            "/v1/chat/completions",
            &chat("m-ok", json!({})),
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    for _ in 0..2 {
        let resp = post_as(
            &gw,
            &secret,
            "/v1/chat/completions",
            &chat("m-500", json!({})),
        )
        .await;
        assert!(resp.status().is_server_error(), "{}", resp.status());
    }
    let resp = post_as(
        &gw,
        &secret,
        "/v1/chat/completions",
        &chat("m-gone", json!({})),
    )
    .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        minute_of(unix_ms()),
        live_minute,
        "traffic crossed a minute"
    );

    // The ledger writes in the background: wait until all seven live requests are stored.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let rows = store
            .sli_fleet_minutes(live_minute * MIN, (live_minute + 1) * MIN)
            .await
            .unwrap();
        let n: u64 = rows.iter().map(|r| r.counts.requests).sum();
        if n >= 7 {
            assert_eq!(n, 7);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ledger wrote {n} of 7"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let resp = get(&gw, "/status.json").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let raw = resp.text().await.unwrap();
    let s: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(s["object"], "status");
    assert_eq!(s["status"], "down");
    let now_minute = minute_of(s["generated_at_ms"].as_i64().unwrap());
    assert_eq!(now_minute, live_minute);

    // Current status per model: the good one; the failing one (all of its recent requests
    // 5xx); the drained one (no worker in rotation; its 503 counts for it).
    let scope = |list: &str, name: &str| -> Value {
        s[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in {list}: {s}"))
    };
    let names = |list: &str| -> Vec<String> {
        s[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("models"), ["m-500", "m-gone", "m-ok"]);
    assert_eq!(names("regions"), ["eu-west", "us-east"]);
    let m_ok = scope("models", "m-ok");
    assert_eq!(m_ok["status"], "operational");
    assert_eq!(
        m_ok["recent"],
        json!({"requests": 4, "errors_5xx": 0, "ttft_slow": 0, "error_rate_ppm": 0})
    );
    assert_eq!(
        m_ok["workers"],
        json!({"total": 1, "in_rotation": 1, "impaired": 0})
    );
    let m_500 = scope("models", "m-500");
    assert_eq!(m_500["status"], "down");
    assert_eq!(
        m_500["reason"],
        "100.00% of requests failed in the last 5 minutes"
    );
    assert_eq!(
        m_500["recent"],
        json!({"requests": 2, "errors_5xx": 2, "ttft_slow": 0, "error_rate_ppm": 1_000_000})
    );
    let m_gone = scope("models", "m-gone");
    assert_eq!(m_gone["status"], "down");
    assert_eq!(m_gone["reason"], "no worker is in rotation");
    assert_eq!(m_gone["recent"]["requests"], 1);
    assert_eq!(m_gone["recent"]["errors_5xx"], 1);
    // Regions: the gateway's own 503 has no region; the drained worker is not held against
    // eu-west (draining is the operator's choice).
    let eu = scope("regions", "eu-west");
    assert_eq!(eu["status"], "operational");
    assert_eq!(
        eu["workers"],
        json!({"total": 2, "in_rotation": 1, "impaired": 0})
    );
    assert_eq!(eu["recent"]["requests"], 4);
    let us = scope("regions", "us-east");
    assert_eq!(us["status"], "down");
    assert_eq!(us["recent"]["requests"], 2);

    // History. 24 h: 96 buckets of 15 minutes ending with the current minute.
    let windows = s["windows"].as_array().unwrap();
    assert_eq!(
        windows
            .iter()
            .map(|w| w["name"].clone())
            .collect::<Vec<_>>(),
        ["24h", "7d", "30d"]
    );
    let day = &windows[0];
    assert_eq!(day["minutes"], 1_440);
    assert_eq!(day["bucket_minutes"], 15);
    let points = day["points"].as_array().unwrap();
    assert_eq!(points.len(), 96);
    // 21 stored + 7 live requests; 5xx: one stored, two from the worker, the 503.
    // Two bad minutes of 1,440: 1,438 / 1,440 = 0.998611… → 998,611 ppm.
    let sum = &day["summary"];
    assert_eq!(sum["requests"], 28);
    assert_eq!(sum["errors_5xx"], 4);
    assert_eq!(sum["minutes_bad"], 2);
    assert_eq!(sum["availability_ppm"], 998_611);
    assert_eq!(sum["availability_pct"], "99.8611");
    assert_eq!(sum["error_rate_ppm"], 142_857); // 4 / 28
    assert!(sum["p95_ttft_ms"].as_i64().unwrap() >= 500, "{sum}");
    // The stored minute's bucket, exactly.
    let from = now_minute + 1 - 1_440;
    let at = usize::try_from((past_minute - from) / 15).unwrap();
    let p = &points[at];
    assert_eq!(
        p["start_ms"],
        (from + 15 * i64::try_from(at).unwrap()) * MIN
    );
    assert_eq!(p["requests"], 21);
    assert_eq!(p["errors_5xx"], 1);
    assert_eq!(p["minutes_bad"], 1);
    assert_eq!(p["availability_ppm"], 933_333); // 14 / 15
    assert_eq!(p["error_rate_ppm"], 47_619); // 1 / 21
    assert_eq!(p["p95_ttft_ms"], 500);
    // The live minute is in the last bucket.
    let last = &points[95];
    assert_eq!(last["requests"], 7);
    assert_eq!(last["errors_5xx"], 3);
    assert_eq!(last["minutes_bad"], 1);
    assert_eq!(last["error_rate_ppm"], 428_571); // 3 / 7
                                                 // Buckets without traffic: up, no rate, no p95.
    let quiet = &points[0];
    assert_eq!(
        (
            quiet["requests"].clone(),
            quiet["availability_ppm"].clone(),
            quiet["error_rate_ppm"].clone(),
            quiet["p95_ttft_ms"].clone()
        ),
        (json!(0), json!(1_000_000), Value::Null, Value::Null)
    );
    // 7 d and 30 d hold the same traffic over more minutes.
    let week = &windows[1]["summary"];
    assert_eq!(
        (&week["minutes"], &week["requests"], &week["minutes_bad"]),
        (&json!(10_080), &json!(28), &json!(2))
    );
    assert_eq!(week["availability_ppm"], 999_801); // 10,078 / 10,080
    let month = &windows[2]["summary"];
    assert_eq!(month["minutes"], 43_200);
    assert_eq!(month["availability_ppm"], 999_953); // 43,198 / 43,200
    assert_eq!(windows[1]["points"].as_array().unwrap().len(), 84);
    assert_eq!(windows[2]["points"].as_array().unwrap().len(), 90);

    // Cached: a second look within the TTL is the same snapshot.
    let again: Value = get(&gw, "/status.json").await.json().await.unwrap();
    assert_eq!(again["generated_at_ms"], s["generated_at_ms"]);

    // The HTML page: models, regions, charts; nothing that identifies a tenant or a worker.
    let resp = get(&gw, "/status").await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    let html = resp.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"));
    for needle in [
        "m-ok",
        "m-500",
        "m-gone",
        "eu-west",
        "us-east",
        "Major outage",
    ] {
        assert!(html.contains(needle), "{needle} missing from the page");
    }
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(html.contains("data-chart=\"availability\" data-points=\"96\""));
    assert!(html.contains("data-window=\"24h\""));
    assert!(!html.contains("<script"));
    let tenant_key_prefix = &secret[..12];
    for (what, page) in [("/status", &html), ("/status.json", &raw)] {
        for secret_thing in [
            TENANT,
            secret.as_str(),
            tenant_key_prefix,
            KEY,
            "key_hidden",
            "wk-ok-eu",
            "wk-fail-us",
            "provider-wk",
        ] {
            assert!(
                !page.contains(secret_thing),
                "{what} shows {secret_thing:?}"
            );
        }
    }
    let week_html = get(&gw, "/status?window=7d").await.text().await.unwrap();
    assert!(week_html.contains("data-window=\"7d\""));
    assert!(week_html.contains("data-points=\"84\""));
    let fallback = get(&gw, "/status?window=1y").await.text().await.unwrap();
    assert!(fallback.contains("data-window=\"24h\""));

    // The admin view: the token in the Authorization header only.
    let url = format!("{}/admin/status", gw.admin_url());
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic "));
    let resp = client()
        .get(format!("{url}?token={ADMIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "a token in the URL must not be accepted"
    );
    let resp = client()
        .get(&url)
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "a tenant key is not the admin token");
    let wrong = base64::engine::general_purpose::STANDARD.encode("admin:not-the-token");
    let resp = client()
        .get(&url)
        .header("authorization", format!("Basic {wrong}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = client().get(&url).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let admin_html = resp.text().await.unwrap();
    assert!(admin_html.contains(&format!("data-tenant=\"{TENANT}\"")));
    assert!(admin_html.contains("wk-fail-us"));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{ADMIN}"));
    let resp = client()
        .get(&url)
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let basic_html = resp.text().await.unwrap();
    assert!(basic_html.contains(TENANT));
    gw.shutdown().await;
}

#[tokio::test]
async fn admin_status_is_absent_without_an_admin_token() {
    let gw = start_with(
        config(vec![sim("a", |_| {})]),
        Secrets {
            dev_key: Some(KEY.into()),
            admin_token: None,
            fleet_token: None,
        },
    )
    .await;
    let resp = client()
        .get(format!("{}/admin/status", gw.admin_url()))
        .bearer_auth("anything-at-all-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // The public page needs no token at all.
    let resp = get(&gw, "/status").await;
    assert_eq!(resp.status(), 200);
    let s: Value = get(&gw, "/status.json").await.json().await.unwrap();
    assert_eq!(s["status"], "operational");
    assert_eq!(s["models"][0]["name"], "sim-small");
    gw.shutdown().await;
}
