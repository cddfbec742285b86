//! Opt-in content logging end to end: off by default, on per tenant with a TTL, redacted
//! before anything is written, readable and erasable through the admin API, and swept once
//! expired.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_metering::content::ContentRecord;
use switchyard_server::RunningGateway;
use switchyard_testkit::*;

const EMAIL: &str = "ann.secret@corp-example.com";
const CARD: &str = "4242 4242 4242 4242";
const API_KEY: &str = "sk-proj-Zq8xW3vN5mB7kL2pQ9rT4yU6";

fn admin(gw: &RunningGateway, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    client()
        .request(method, format!("{}/admin/v1{path}", gw.admin_url()))
        .bearer_auth(ADMIN)
}

async fn set_logging(gw: &RunningGateway, tenant: &str, value: Value) -> Value {
    let resp = admin(gw, reqwest::Method::PATCH, &format!("/tenants/{tenant}"))
        .json(&json!({ "content_logging": value }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn content(gw: &RunningGateway, query: &str) -> Vec<Value> {
    let resp = admin(gw, reqwest::Method::GET, &format!("/content?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["data"].as_array().unwrap().clone()
}

/// Polls the admin API until `n` records of `tenant` are stored (the writer is asynchronous).
async fn wait_for(gw: &RunningGateway, tenant: &str, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let rows = content(gw, &format!("tenant={tenant}")).await;
        if rows.len() >= n {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("content records of {tenant} never reached {n}");
}

fn secret_prompt() -> Value {
    json!({
        "model": "sim-small",
        "messages": [{"role": "user", "content": format!(
            "Mail {EMAIL}, pay with {CARD}, key {API_KEY}, order 12345."
        )}],
        "max_tokens": 8,
    })
}

fn state_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_only_when_on_redacted_and_erasable() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(vec![sim("a", |_| {})]);
    config.state.path = dir.path().join("state.db");
    let gw = start(config).await;

    // Off by default: nothing stored.
    let quiet = tenant_key(&gw, "quiet", "pro").await;
    let resp = post_as(&gw, &quiet, "/v1/chat/completions", &secret_prompt()).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    let loud = tenant_key(&gw, "loud", "pro").await;
    let t = set_logging(&gw, "loud", json!(7)).await;
    assert_eq!(t["content_logging"], 7);

    // Non-streamed.
    let resp = post_as(&gw, &loud, "/v1/chat/completions", &secret_prompt()).await;
    assert_eq!(resp.status(), 200);
    let full_id = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = resp.json().await.unwrap();
    let full_text = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!full_text.is_empty());

    // Streamed.
    let mut streamed = secret_prompt();
    streamed["stream"] = json!(true);
    let resp = post_as(&gw, &loud, "/v1/chat/completions", &streamed).await;
    assert_eq!(resp.status(), 200);
    let stream_id = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let (events, err) = read_events(resp, Duration::from_secs(10)).await;
    assert!(err.is_none());
    let stream_text = joined_content(&events);
    assert!(!stream_text.is_empty());

    let rows = wait_for(&gw, "loud", 2).await;
    assert_eq!(rows.len(), 2);
    let by_id = |id: &str| rows.iter().find(|r| r["request_id"] == id).unwrap().clone();
    let full = by_id(&full_id);
    let stream = by_id(&stream_id);
    assert_eq!(full["completion"], full_text.as_str());
    assert_eq!(stream["completion"], stream_text.as_str());
    assert_eq!(full["stream"], false);
    assert_eq!(stream["stream"], true);
    assert_eq!(full["status"], "completed");
    assert_eq!(full["model"], "sim-small");
    let ttl = full["expires_at_ms"].as_i64().unwrap() - full["created_at_ms"].as_i64().unwrap();
    assert_eq!(ttl, 7 * 24 * 3600 * 1000);
    for row in [&full, &stream] {
        let prompt = row["prompt"].as_str().unwrap();
        assert!(prompt.contains("[REDACTED:email]"), "{prompt}");
        assert!(prompt.contains("[REDACTED:card]"), "{prompt}");
        assert!(prompt.contains("[REDACTED:key]"), "{prompt}");
        assert!(prompt.contains("order 12345"), "{prompt}");
        assert!(!prompt.contains(EMAIL) && !prompt.contains(CARD) && !prompt.contains(API_KEY));
        assert_eq!(row["prompt_truncated"], false);
        assert_eq!(row["completion_truncated"], false);
    }
    let one = content(&gw, &format!("tenant=loud&request_id={stream_id}")).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["request_id"], stream_id.as_str());

    // The quiet tenant's request came first and was settled before the loud ones were
    // stored, yet nothing of it is there.
    assert!(content(&gw, "tenant=quiet").await.is_empty());

    // The raw values reach neither the database nor its WAL, where the redacted records are.
    // (SQLite's files; on Postgres the records read back above are what the table holds.)
    if !on_postgres() {
        let bytes = state_bytes(dir.path());
        assert!(contains(&bytes, "[REDACTED:email]"));
        for raw in [EMAIL, CARD, API_KEY] {
            assert!(!contains(&bytes, raw), "{raw} is in the state files");
        }
    }

    // Turning it off stops logging the next request.
    let t = set_logging(&gw, "loud", json!("off")).await;
    assert_eq!(t["content_logging"], "off");
    let resp = post_as(&gw, &loud, "/v1/chat/completions", &secret_prompt()).await;
    resp.bytes().await.unwrap();

    // Erase: the tenant's records are gone.
    let resp = admin(&gw, reqwest::Method::DELETE, "/content?tenant=loud")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["deleted"], 2);
    assert!(content(&gw, "tenant=loud").await.is_empty());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_checked_and_the_admin_token_is_required() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    let resp = admin(&gw, reqwest::Method::POST, "/tenants")
        .json(&json!({"id": "thirty", "tier": "pro", "content_logging": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let t: Value = resp.json().await.unwrap();
    assert_eq!(t["content_logging"], 30);
    let resp = admin(&gw, reqwest::Method::PATCH, "/tenants/thirty")
        .json(&json!({"content_logging": 14}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = admin(&gw, reqwest::Method::GET, "/tenants/thirty")
        .send()
        .await
        .unwrap();
    let t: Value = resp.json().await.unwrap();
    assert_eq!(t["content_logging"], 30);

    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let url = format!("{}/admin/v1/content?tenant=thirty", gw.admin_url());
        let resp = client().request(method.clone(), &url).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{method} without a token");
        let resp = client()
            .request(method.clone(), &url)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{method} with an API key");
    }
    let resp = admin(&gw, reqwest::Method::GET, "/content")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "tenant is required");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_are_swept() {
    let mut config = config(vec![sim("a", |_| {})]);
    config.content_log.sweep_interval_ms = 50;
    let gw = start(config).await;
    let store = gw.state.directory.store().clone();
    let now = switchyard_metering::directory::unix_ms();
    let record = |id: &str, expires_at_ms: i64| ContentRecord {
        request_id: id.into(),
        tenant_id: "acme".into(),
        model: "sim-small".into(),
        endpoint: "/v1/chat/completions".into(),
        stream: false,
        status: "completed".into(),
        created_at_ms: now - 8 * 24 * 3600 * 1000,
        expires_at_ms,
        prompt: "[]".into(),
        prompt_truncated: false,
        completion: "hi".into(),
        completion_truncated: false,
    };
    store
        .insert_content(&[record("old", now - 1), record("fresh", now + 3_600_000)])
        .await
        .unwrap();
    let mut left = Vec::new();
    for _ in 0..200 {
        left = store.content_records("acme", None, 10).await.unwrap();
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].request_id, "fresh");
    gw.shutdown().await;
}
