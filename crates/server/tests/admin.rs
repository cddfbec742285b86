//! The admin API end to end: tenants and keys made over HTTP work on the inference API at
//! once, revocation and rotation apply on the very next request, scopes and expiry hold,
//! prepaid credit gates requests before any worker sees them, and the usage, invoice and
//! margin reports add up to exactly what the responses said.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_control::admin::{format_rfc3339, Month};
use switchyard_metering::directory::unix_ms;
use switchyard_metering::money::{token_cost, usd_to_nanos};
use switchyard_server::{RunningGateway, Secrets};
use switchyard_testkit::*;

const DEADLINE: Duration = Duration::from_secs(10);

async fn admin_req(
    gw: &RunningGateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method, format!("{}/admin/v1{path}", gw.admin_url()))
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

async fn admin_get(gw: &RunningGateway, path: &str) -> (u16, Value) {
    admin_req(gw, reqwest::Method::GET, path, None).await
}

async fn admin_post(gw: &RunningGateway, path: &str, body: Value) -> (u16, Value) {
    admin_req(gw, reqwest::Method::POST, path, Some(body)).await
}

async fn create_tenant(gw: &RunningGateway, id: &str, extra: Value) {
    let mut body = json!({"id": id, "tier": "pro"});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let (status, body) = admin_post(gw, "/tenants", body).await;
    assert_eq!(status, 201, "{body}");
}

/// Creates a key and returns (id, secret).
async fn create_key(gw: &RunningGateway, tenant: &str, extra: Value) -> (String, String) {
    let mut body = json!({"tenant": tenant, "name": "test key"});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let (status, body) = admin_post(gw, "/keys", body).await;
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with(body["prefix"].as_str().unwrap()));
    assert!(body["warning"]
        .as_str()
        .unwrap()
        .contains("not be shown again"));
    assert!(
        body.get("rotated_from").is_none(),
        "a new key replaced nothing"
    );
    assert!(body.get("hash").is_none(), "{body}");
    (body["id"].as_str().unwrap().to_string(), secret)
}

async fn call(gw: &RunningGateway, secret: &str, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", gw.url()))
        .bearer_auth(secret)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn chat_with(gw: &RunningGateway, secret: &str, model: &str) -> reqwest::Response {
    call(gw, secret, "/v1/chat/completions", &chat(model, json!({}))).await
}

async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn a_tenant_and_key_made_over_the_api_work_at_once() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    create_tenant(&gw, "acme", json!({})).await;
    let (key_id, secret) = create_key(&gw, "acme", json!({})).await;

    let resp = chat_with(&gw, &secret, "sim-small").await;
    assert_eq!(resp.status(), 200);
    for h in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
    ] {
        assert!(resp.headers().get(h).is_some(), "missing {h}");
    }

    // The listing shows the key but neither its secret nor its hash.
    let (status, list) = admin_get(&gw, "/keys?tenant=acme").await;
    assert_eq!(status, 200);
    let keys = list["data"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["id"], key_id.as_str());
    assert_eq!(keys[0]["status"], "active");
    let text = list.to_string();
    assert!(!text.contains(&secret), "the secret leaked into a listing");
    assert!(keys[0].get("secret").is_none() && keys[0].get("hash").is_none());
    let (_, one) = admin_get(&gw, &format!("/keys/{key_id}")).await;
    assert!(one.get("secret").is_none() && !one.to_string().contains(&secret));

    // The tenant, with its effective limits and live figures.
    let (status, t) = admin_get(&gw, "/tenants/acme").await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["tier"], "pro");
    assert_eq!(t["active"], true);
    assert_eq!(t["limits"]["requests_per_minute"], 600);
    // Not prepaid: the balance is simply what was charged so far, negated.
    assert!(t["balance_nanos"].as_i64().unwrap() < 0, "{t}");
    let (_, all) = admin_get(&gw, "/tenants").await;
    let ids: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"acme") && ids.contains(&"dev"), "{ids:?}");

    // Changing the tier applies at once too.
    let (status, t) = admin_req(
        &gw,
        reqwest::Method::PATCH,
        "/tenants/acme",
        Some(json!({"tier": "hobby", "overrides": {"requests_per_minute": 7}})),
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["limits"]["requests_per_minute"], 7);
    let resp = chat_with(&gw, &secret, "sim-small").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "7");
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_named() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    create_tenant(&gw, "acme", json!({})).await;
    let cases = [
        ("/tenants", json!({"id": "acme", "tier": "pro"}), 409, None),
        (
            "/tenants",
            json!({"id": "Acme", "tier": "pro"}),
            400,
            Some("id"),
        ),
        (
            "/tenants",
            json!({"id": "x", "tier": "gold"}),
            400,
            Some("tier"),
        ),
        (
            "/tenants",
            json!({"id": "x", "tier": "pro", "teir": 1}),
            400,
            None,
        ),
        (
            "/tenants",
            json!({"id": "x", "tier": "pro", "overrides": {"max_concurrent": 0}}),
            400,
            Some("overrides"),
        ),
        ("/keys", json!({"tenant": "nobody", "name": "k"}), 404, None),
        (
            "/keys",
            json!({"tenant": "acme", "name": ""}),
            400,
            Some("name"),
        ),
        (
            "/keys",
            json!({"tenant": "acme", "name": "k", "scopes": {"endpoints": ["embeddings"]}}),
            400,
            Some("scopes.endpoints"),
        ),
        (
            "/keys",
            json!({"tenant": "acme", "name": "k", "expires_at": "2020-01-01T00:00:00Z"}),
            400,
            Some("expires_at"),
        ),
        (
            "/keys",
            json!({"tenant": "acme", "name": "k", "limits": {"price_input_per_million": 0.0}}),
            400,
            Some("limits"),
        ),
        (
            "/tenants/acme/credit",
            json!({"amount_usd": "1.2.3"}),
            400,
            Some("amount_usd"),
        ),
        (
            "/tenants/nobody/credit",
            json!({"amount_usd": "1"}),
            404,
            None,
        ),
        ("/keys/key_nope/revoke", json!({}), 404, None),
    ];
    for (path, body, status, param) in cases {
        let (got, resp) = admin_post(&gw, path, body.clone()).await;
        assert_eq!(got, status, "{path} {body}: {resp}");
        assert!(resp["error"]["message"].is_string(), "{resp}");
        if let Some(param) = param {
            assert_eq!(resp["error"]["param"], param, "{path} {body}: {resp}");
        }
    }
    for (query, param) in [
        ("?from=2026-02-30", "from"),
        ("?to=2026-13-01", "to"),
        ("?from=2026-11-02&to=2026-11-01", "to"),
        ("?period=week", "period"),
        ("?tennant=acme", "tennant"),
        ("?month=2026-1", "month"),
    ] {
        let (status, resp) = admin_get(&gw, &format!("/usage{query}")).await;
        assert_eq!(status, 400, "{query}: {resp}");
        assert_eq!(resp["error"]["param"], param, "{query}: {resp}");
    }
    let (status, resp) = admin_get(&gw, "/invoices/acme?month=2026-00").await;
    assert_eq!(
        (status, resp["error"]["param"].clone()),
        (400, json!("month"))
    );
    let (status, _) = admin_get(&gw, "/invoices/nobody").await;
    assert_eq!(status, 404);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_admin_token_is_required_and_without_one_there_is_no_admin_api() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    let url = format!("{}/admin/v1/tenants", gw.admin_url());
    for token in [Some("sy-admin-wrong-0123456789abcdef"), Some(KEY), None] {
        let mut req = client().get(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let (status, code) = error_code(req.send().await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (401, "invalid_admin_token"),
            "{token:?}"
        );
    }
    // The admin token is not an API key either.
    let (status, code) = error_code(chat_with(&gw, ADMIN, "sim-small").await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    gw.shutdown().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secrets = Secrets {
        dev_key: Some(KEY.into()),
        admin_token: None,
        fleet_token: None,
    };
    let gw = start_on(config(vec![sim("a", |_| {})]), secrets, listener, None).await;
    let resp = client()
        .get(format!("{}/admin/v1/tenants", gw.admin_url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let (status, code) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (404, "unknown_url"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_its_very_next_request() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    create_tenant(&gw, "acme", json!({})).await;
    let (id, secret) = create_key(&gw, "acme", json!({})).await;
    assert_eq!(chat_with(&gw, &secret, "sim-small").await.status(), 200);
    let (status, key) = admin_post(&gw, &format!("/keys/{id}/revoke"), json!({})).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["status"], "revoked");
    assert!(key["revoked_at"].is_string());
    let (status, code) = error_code(chat_with(&gw, &secret, "sim-small").await).await;
    assert_eq!((status, code.as_str()), (401, "api_key_revoked"));
    // Revoking again is harmless and keeps the first time.
    let (status, again) = admin_post(&gw, &format!("/keys/{id}/revoke"), json!({})).await;
    assert_eq!((status, &again["revoked_at"]), (200, &key["revoked_at"]));
    // A revoked key cannot be rotated back to life.
    let (status, _) = admin_post(&gw, &format!("/keys/{id}/rotate"), json!({})).await;
    assert_eq!(status, 409);
    gw.shutdown().await;
}

#[tokio::test]
async fn rotation_replaces_the_secret_and_keeps_the_scopes() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    create_tenant(&gw, "acme", json!({})).await;
    let (old_id, old) = create_key(
        &gw,
        "acme",
        json!({"name": "ci", "scopes": {"models": ["sim-small"], "endpoints": ["chat"]}, "limits": {"requests_per_minute": 50}}),
    )
    .await;
    assert_eq!(chat_with(&gw, &old, "sim-small").await.status(), 200);
    // No body at all is fine.
    let resp = client()
        .post(format!("{}/admin/v1/keys/{old_id}/rotate", gw.admin_url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let new: Value = resp.json().await.unwrap();
    assert_eq!(new["rotated_from"], old_id.as_str());
    assert_eq!(new["name"], "ci");
    assert_eq!(new["tenant"], "acme");
    assert_eq!(new["scopes"]["models"], json!(["sim-small"]));
    assert_eq!(new["limits"]["requests_per_minute"], 50);
    let secret = new["secret"].as_str().unwrap();
    assert_ne!(secret, old);

    let (status, code) = error_code(chat_with(&gw, &old, "sim-small").await).await;
    assert_eq!((status, code.as_str()), (401, "api_key_revoked"));
    let resp = chat_with(&gw, secret, "sim-small").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "50");
    gw.shutdown().await;
}

#[tokio::test]
async fn key_scopes_limit_models_and_endpoints() {
    let gw = start(config(vec![
        sim("a", |_| {}),
        sim("b", |s| s.model = "sim-large".into()),
    ]))
    .await;
    create_tenant(&gw, "acme", json!({})).await;
    let (_, small_only) =
        create_key(&gw, "acme", json!({"scopes": {"models": ["sim-small"]}})).await;
    assert_eq!(chat_with(&gw, &small_only, "sim-small").await.status(), 200);
    let (status, code) = error_code(chat_with(&gw, &small_only, "sim-large").await).await;
    assert_eq!((status, code.as_str()), (403, "permission_denied"));

    let (_, chat_only) = create_key(&gw, "acme", json!({"scopes": {"endpoints": ["chat"]}})).await;
    assert_eq!(chat_with(&gw, &chat_only, "sim-large").await.status(), 200);
    let completion = json!({"model": "sim-small", "prompt": "Once", "max_tokens": 3});
    let resp = call(&gw, &chat_only, "/v1/completions", &completion).await;
    let (status, code) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (403, "permission_denied"));
    gw.shutdown().await;
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    create_tenant(&gw, "acme", json!({})).await;
    let expires = unix_ms() + 1_500;
    let (id, secret) =
        create_key(&gw, "acme", json!({"expires_at": format_rfc3339(expires)})).await;
    assert_eq!(chat_with(&gw, &secret, "sim-small").await.status(), 200);
    // Wait for the clock, not for the gateway: expiry needs no reload.
    let wait = expires + 50 - unix_ms();
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64)).await;
    let (status, code) = error_code(chat_with(&gw, &secret, "sim-small").await).await;
    assert_eq!((status, code.as_str()), (401, "api_key_expired"));
    let (_, key) = admin_get(&gw, &format!("/keys/{id}")).await;
    assert_eq!(key["status"], "expired");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_prepaid_tenant_without_credit_is_refused_before_any_worker_is_called() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    create_tenant(&gw, "prepay", json!({"prepaid": true})).await;
    let (_, secret) = create_key(&gw, "prepay", json!({})).await;
    let (status, code) = error_code(chat_with(&gw, &secret, "sim-small").await).await;
    assert_eq!((status, code.as_str()), (402, "insufficient_credit"));
    assert_eq!(gw.sims[0].stats().requests, 0, "a worker was called");

    let (status, credit) = admin_post(
        &gw,
        "/tenants/prepay/credit",
        json!({"amount_usd": "1.00", "note": "top-up"}),
    )
    .await;
    assert_eq!(status, 200, "{credit}");
    assert_eq!(credit["balance_nanos"], 1_000_000_000);
    assert_eq!(credit["balance_usd"], "1.000000");

    let resp = chat_with(&gw, &secret, "sim-small").await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let price = usd_to_nanos(3.20);
    let cost = token_cost(body["usage"]["prompt_tokens"].as_u64().unwrap(), price).unwrap()
        + token_cost(body["usage"]["completion_tokens"].as_u64().unwrap(), price).unwrap();
    let (_, t) = admin_get(&gw, "/tenants/prepay").await;
    assert_eq!(t["balance_nanos"], 1_000_000_000 - cost, "{t}");
    gw.shutdown().await;
}

#[tokio::test]
async fn usage_invoice_and_margin_add_up_to_the_responses() {
    let gw = start(config(vec![
        sim("a", |_| {}),
        sim("b", |s| s.model = "sim-large".into()),
    ]))
    .await;
    create_tenant(&gw, "acme", json!({})).await;
    create_tenant(&gw, "other", json!({})).await;
    let (_, secret) = create_key(&gw, "acme", json!({})).await;
    let (_, other) = create_key(&gw, "other", json!({})).await;
    let price = usd_to_nanos(3.20);
    let cost_of = |body: &Value| {
        token_cost(body["usage"]["prompt_tokens"].as_u64().unwrap(), price).unwrap()
            + token_cost(body["usage"]["completion_tokens"].as_u64().unwrap(), price).unwrap()
    };
    let resp = chat_with(&gw, &other, "sim-small").await;
    assert_eq!(resp.status(), 200);
    let other_cost = cost_of(&resp.json().await.unwrap());

    // (requests, prompt, completion, cost) per model, from the responses.
    let mut expect: std::collections::BTreeMap<&str, (u64, u64, u64, i64)> = Default::default();
    for (i, model) in [
        "sim-small",
        "sim-large",
        "sim-small",
        "sim-small",
        "sim-large",
    ]
    .into_iter()
    .enumerate()
    {
        let resp = if i % 2 == 0 {
            chat_with(&gw, &secret, model).await
        } else {
            let body = json!({"model": model, "prompt": "Once upon a time", "max_tokens": 4 + i});
            call(&gw, &secret, "/v1/completions", &body).await
        };
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        let (p, c) = (
            body["usage"]["prompt_tokens"].as_u64().unwrap(),
            body["usage"]["completion_tokens"].as_u64().unwrap(),
        );
        let e = expect.entry(model).or_default();
        e.0 += 1;
        e.1 += p;
        e.2 += c;
        e.3 += cost_of(&body);
    }
    let requests: u64 = expect.values().map(|e| e.0).sum();
    let cost: i64 = expect.values().map(|e| e.3).sum();

    // The ledger is written in the background: poll until it has every request (both
    // tenants' and the other tenant's one).
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (status, usage) = admin_get(&gw, "/usage?period=month").await;
        assert_eq!(status, 200, "{usage}");
        if usage["totals"]["requests"] == requests + 1 {
            assert_eq!(usage["totals"]["cost_nanos"], cost + other_cost);
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "ledger incomplete: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, usage) = admin_get(&gw, "/usage?tenant=acme&period=month").await;
    assert_eq!(usage["totals"]["requests"], requests, "{usage}");
    let rows = usage["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{usage}");
    for row in rows {
        let e = expect[row["model"].as_str().unwrap()];
        assert_eq!(row["tenant"], "acme");
        assert_eq!(row["requests"], e.0);
        assert_eq!(row["prompt_tokens"], e.1);
        assert_eq!(row["completion_tokens"], e.2);
        assert_eq!(row["cost_nanos"], e.3);
    }
    assert_eq!(usage["totals"]["cost_nanos"], cost);

    // The same by day (today), and as CSV with a header line.
    let today = format_rfc3339(unix_ms())[..10].to_string();
    let (_, by_day) = admin_get(&gw, &format!("/usage?tenant=acme&from={today}&to={today}")).await;
    assert_eq!(by_day["totals"]["requests"], requests);
    assert_eq!(by_day["data"][0]["period"], today.as_str());
    let resp = client()
        .get(format!(
            "{}/admin/v1/usage?tenant=acme&format=csv",
            gw.admin_url()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = resp.text().await.unwrap();
    let mut lines = text.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("tenant,period,model,requests,"));
    let csv_requests: u64 = lines
        .map(|l| l.split(',').nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(csv_requests, requests);

    // Raw records: one per request.
    let (_, records) = admin_get(&gw, "/usage/records?tenant=acme").await;
    let records = records["data"].as_array().unwrap();
    assert_eq!(records.len() as u64, requests);
    let record_cost: i64 = records
        .iter()
        .map(|r| r["cost_nanos"].as_i64().unwrap())
        .sum();
    assert_eq!(record_cost, cost);

    // The invoice: per model, at the tenant's prices, totals exact in nanos.
    let month = Month::containing(unix_ms()).to_string();
    let (status, invoice) = admin_get(&gw, &format!("/invoices/acme?month={month}")).await;
    assert_eq!(status, 200, "{invoice}");
    assert_eq!(invoice["tenant"], "acme");
    assert_eq!(invoice["tier"], "pro");
    assert_eq!(invoice["month"], month.as_str());
    for line in invoice["lines"].as_array().unwrap() {
        let e = expect[line["model"].as_str().unwrap()];
        assert_eq!(line["requests"], e.0);
        assert_eq!(line["prompt_tokens"], e.1);
        assert_eq!(line["completion_tokens"], e.2);
        assert_eq!(line["amount_nanos"], e.3);
        assert_eq!(line["price_input_per_million_usd"], "3.200000");
        assert_eq!(line["price_output_per_million_nanos"], price);
    }
    assert_eq!(invoice["total"]["amount_nanos"], cost);
    assert_eq!(invoice["total"]["requests"], requests);
    assert_eq!(invoice["balance_nanos"], -cost);

    // Margin over this tenant: revenue is exactly what it was charged; cogs from GPU time.
    let (status, margin) = admin_get(&gw, &format!("/margin?month={month}&tenant=acme")).await;
    assert_eq!(status, 200, "{margin}");
    assert_eq!(margin["total"]["revenue_nanos"], cost);
    let revenue: i64 = margin["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revenue_nanos"].as_i64().unwrap())
        .sum();
    assert_eq!(revenue, cost);
    let cogs = margin["total"]["cogs_nanos"].as_i64().unwrap();
    assert!(cogs > 0, "{margin}");
    assert_eq!(margin["total"]["margin_nanos"], cost - cogs);
    let providers: Vec<&str> = margin["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["provider-b", "provider-a"]);
    // Across all tenants, the other tenant's request is revenue too.
    let (_, all) = admin_get(&gw, &format!("/margin?month={month}")).await;
    assert_eq!(all["total"]["requests"], requests + 1);
    assert_eq!(all["total"]["revenue_nanos"], cost + other_cost);
    gw.shutdown().await;
}
