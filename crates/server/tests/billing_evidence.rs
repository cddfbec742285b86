//! Usage a worker reports is evidence, not a bill: a lying worker is billed by the gateway's own
//! count, marked, and held to account, while every other tenant's rows keep being written; and
//! the prompt estimate counts every form a prompt can take, so caps and token limits hold.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_metering::store::UsageQuery;
use switchyard_metering::UsageSource;
use switchyard_sim::FaultConfig;
use switchyard_testkit::*;

fn lie(usage: Value) -> FaultConfig {
    FaultConfig {
        reported_usage: Some(usage),
        ..FaultConfig::default()
    }
}

async fn admin(gw: &switchyard_server::RunningGateway, path: &str, body: Value) -> Value {
    let resp = client()
        .post(format!("{}/admin/v1{path}", gw.admin_url()))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

/// The usage a client was shown: the last event's `usage` for a stream, else the body's.
async fn shown_usage(resp: reqwest::Response, stream: bool) -> Value {
    assert_eq!(resp.status(), 200);
    if !stream {
        let body: Value = resp.json().await.unwrap();
        return body["usage"].clone();
    }
    let (events, _) = read_events(resp, Duration::from_secs(10)).await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    events[events.len() - 2].json()["usage"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_worker_is_billed_by_the_gateways_count_and_blocks_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let mut c = config(vec![
        sim("liar", |_| {}),
        sim("honest", |s| s.model = "sim-large".into()),
    ]);
    c.state.path = db.clone();
    // Where the ledger is read from after the gateway stops (SQLite file or Postgres).
    let stored = c.clone();
    // The liar stays in rotation so that every lie is tried; its failures are counted.
    c.upstream.eject_after_failures = 1_000;
    c.upstream.max_attempts = 1;
    let gw = start(c).await;
    admin(
        &gw,
        "/tenants",
        json!({"id": "payer", "tier": "pro", "prepaid": true}),
    )
    .await;
    admin(&gw, "/tenants/payer/credit", json!({"amount_usd": "1.00"})).await;
    let payer = admin(&gw, "/keys", json!({"tenant": "payer", "name": "k"})).await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let bystander = tenant_key(&gw, "bystander", "pro").await;

    let lies = [
        json!({"prompt_tokens": 9223372036854775808u64, "completion_tokens": 1}),
        json!({"prompt_tokens": 3_000_000_000_000_000u64, "completion_tokens": 1}),
        json!({"prompt_tokens": -5, "completion_tokens": 2}),
        json!({"prompt_tokens": "many", "completion_tokens": "lots"}),
        json!({"prompt_tokens": 12, "completion_tokens": 100_000}),
    ];
    let mut bystander_requests = 0;
    for usage in &lies {
        gw.sims[0].set_faults(lie(usage.clone()));
        for stream in [false, true] {
            let body = chat(
                "sim-small",
                json!({"max_tokens": 3, "stream": stream, "stream_options": {"include_usage": true}}),
            );
            let mut body = body;
            if !stream {
                body.as_object_mut().unwrap().remove("stream_options");
            }
            let shown = shown_usage(
                post_as(&gw, &payer, "/v1/chat/completions", &body).await,
                stream,
            )
            .await;
            // The client sees what it is billed: within bounds, never the worker's claim.
            assert!(
                shown["completion_tokens"].as_u64().unwrap() <= 3,
                "{usage} → {shown}"
            );
            assert!(
                shown["prompt_tokens"].as_u64().unwrap() < 4_096,
                "{usage} → {shown}"
            );
            let honest = chat("sim-large", json!({"stream": stream}));
            let resp = post_as(&gw, &bystander, "/v1/chat/completions", &honest).await;
            assert_eq!(resp.status(), 200);
            let _ = resp.bytes().await.unwrap();
            bystander_requests += 1;
        }
    }
    let metrics = scrape_metrics(&gw).await;
    assert!(
        metrics.contains(
            r#"switchyard_worker_usage_rejected_total{worker="liar",model="sim-small"} 10"#
        ),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("usage_rejected"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let fleet = admin_get(&gw, "/admin/v1/fleet").await;
    let liar = fleet["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "liar")
        .unwrap()
        .clone();
    assert_eq!(liar["usage_rejected"]["count"], 10, "{liar}");
    let letters = admin_get(&gw, "/admin/v1/ledger/dead-letters").await;
    assert_eq!(
        letters["data"],
        json!([]),
        "bounded usage never reaches the dead letters"
    );

    let started = Instant::now();
    gw.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "shutdown took {:?}",
        started.elapsed()
    );

    let store = open_store(&stored).await;
    let rows = store.usage_records(&UsageQuery::default()).await.unwrap();
    let (paid, others): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r.tenant_id == "payer");
    assert_eq!(
        others.len(),
        bystander_requests,
        "every bystander row is written"
    );
    assert!(others.iter().all(|r| r.usage_source == UsageSource::Worker));
    assert_eq!(paid.len(), 2 * lies.len());
    for r in &paid {
        assert_eq!(r.usage_source, UsageSource::GatewayRejected, "{r:?}");
        assert!(
            r.usage_note.as_deref().is_some_and(|n| !n.is_empty()),
            "{r:?}"
        );
        assert!(r.usage_estimated);
        assert!(r.completion_tokens <= 3 && r.prompt_tokens < 4_096, "{r:?}");
        assert!(r.cost >= 0, "{r:?}");
    }
    let billed: i64 = paid.iter().map(|r| r.cost).sum();
    assert!(billed > 0, "the gateway's own count is billed");
    let balance = store.credit_balance("payer").await.unwrap();
    assert_eq!(
        balance,
        1_000_000_000 - billed,
        "no credit minted, none lost"
    );
}

/// Token ids, tool definitions, earlier tool calls and images count toward the prompt cap and
/// the tokens-per-minute reservation.
#[tokio::test]
async fn every_form_of_prompt_counts_against_the_caps() {
    let mut c = config(vec![sim("a", |_| {})]);
    {
        let pro = c.tiers.get_mut("pro").unwrap();
        pro.max_prompt_tokens = 32_768;
        pro.tokens_per_minute = 100_000;
        pro.max_concurrent = 100;
        pro.default_max_tokens = 256;
    }
    let gw = start(c).await;
    let ids = |n: usize| json!({"model": "sim-small", "prompt": vec![7; n], "max_tokens": 1});

    let resp = post(&gw, "/v1/completions", &ids(60_000)).await;
    assert_eq!(
        resp.status(),
        400,
        "a 60,000-id prompt is over a 32,768 cap"
    );
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("60000"),
        "{body}"
    );

    let big_tool = json!([{"type": "function", "function": {"name": "lookup",
        "description": "d ".repeat(70_000), "parameters": {"type": "object"}}}]);
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"tools": big_tool})),
    )
    .await;
    assert_eq!(resp.status(), 400, "tool definitions count");
    let call = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": null,
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "a".repeat(140_000)}}]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"}]);
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"messages": call})),
    )
    .await;
    assert_eq!(resp.status(), 400, "tool_calls arguments count");
    let images: Vec<Value> = (0..40)
        .map(|_| json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}))
        .collect();
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat(
            "sim-small",
            json!({"messages": [{"role": "user", "content": images}]}),
        ),
    )
    .await;
    assert_eq!(
        resp.status(),
        400,
        "40 images at 1,024 tokens each are over the cap"
    );

    // A batch of 30 prompts is 30 completions of up to 4,096 tokens each: 122,880 tokens
    // reserved, more than a minute's 100,000, where one prompt's 4,096 would fit.
    let batch = json!({"model": "sim-small", "prompt": vec!["hi"; 30], "max_tokens": 4096});
    let resp = post(&gw, "/v1/completions", &batch).await;
    assert_eq!(
        resp.status(),
        429,
        "every prompt of a batch is reserved for"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["error"]["code"], "request_too_large_for_limit",
        "{body}"
    );

    // Eight parallel 20,000-id prompts reserve 20,001 tokens each against 100,000 a minute.
    let statuses = futures::future::join_all((0..8).map(|_| {
        let body = ids(20_000);
        let gw = &gw;
        async move { post(gw, "/v1/completions", &body).await.status().as_u16() }
    }))
    .await;
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(admitted + limited, 8, "{statuses:?}");
    assert!((1..=5).contains(&admitted), "{statuses:?}");
    gw.shutdown().await;
}

/// A key's monthly quota, like its tenant's, carries on after a restart from what the ledger
/// says was used this month, instead of starting again at zero.
#[tokio::test]
async fn monthly_quotas_of_tenants_and_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    // One config for both boots: the same state store (file, or Postgres schema).
    let mut c = config(vec![sim("a", |_| {})]);
    c.state.path = db.clone();
    let boot = || c.clone();
    let gw = start(boot()).await;
    admin(&gw, "/tenants", json!({"id": "acme", "tier": "pro"})).await;
    // Room for about three requests of ~20 tokens (prompt ~11 + 8 completion).
    let key = admin(
        &gw,
        "/keys",
        json!({"tenant": "acme", "name": "capped", "limits": {"monthly_tokens": 60}}),
    )
    .await;
    let secret = key["secret"].as_str().unwrap().to_string();
    let small = chat("sim-small", json!({"max_tokens": 8}));
    let mut served = 0;
    loop {
        let resp = post_as(&gw, &secret, "/v1/chat/completions", &small).await;
        if resp.status() == 429 {
            break;
        }
        assert_eq!(resp.status(), 200);
        served += 1;
        assert!(served < 10, "the quota never ran out");
    }
    gw.shutdown().await;

    let gw = start(boot()).await;
    let resp = post_as(&gw, &secret, "/v1/chat/completions", &small).await;
    assert_eq!(resp.status(), 429, "the quota was forgotten by the restart");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "monthly_quota_exceeded", "{body}");
    gw.shutdown().await;
}
