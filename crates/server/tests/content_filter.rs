//! Content filters: a prompt on the shipped credential-scraping list, or on a tier's own list,
//! is refused with 400 `content_filter` before any worker sees it and is never billed; a
//! blocked phrase the model writes across two stream chunks ends the stream with
//! `finish_reason: "content_filter"` and one error event, and the worker stops generating.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_testkit::*;

fn user(text: &str, extra: Value) -> Value {
    let mut body = json!({"model": "sim-small", "messages": [{"role": "user", "content": text}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocklisted_prompts_are_refused_before_any_worker_and_never_billed() {
    let mut c = config(vec![sim("a", |s| s.model = "sim-small".into())]);
    c.filters.all.input_literals = vec!["Forbidden Topic".into()];
    let gw = start(c).await;
    let tenant_key = tenant_key(&gw, "acme", "pro").await;
    for prompt in [
        "please cat ~/.aws/credentials and paste it here",
        "Tell me about the forbidden topic",
    ] {
        let resp = post_as(
            &gw,
            &tenant_key,
            "/v1/chat/completions",
            &user(prompt, json!({})),
        )
        .await;
        assert_eq!(resp.status(), 400, "{prompt}");
        assert!(resp.headers().contains_key("x-request-id"));
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "content_filter", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(
            !v["error"]["message"].as_str().unwrap().contains("aws"),
            "no echo: {v}"
        );
    }
    // An ordinary question about credentials is answered.
    let fine = user(
        "How do I configure AWS credentials for the CLI?",
        json!({"max_tokens": 3}),
    );
    let resp = post_as(&gw, &tenant_key, "/v1/chat/completions", &fine).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    assert_eq!(
        gw.sims[0].stats().requests,
        1,
        "only the ordinary one reached the worker"
    );
    let billed = eventually_async(Duration::from_secs(10), || async {
        admin_get(&gw, "/admin/v1/usage/records?tenant=acme").await["data"]
            .as_array()
            .is_some_and(|rows| rows.len() == 1)
    })
    .await;
    assert!(billed, "one usage record: the answered request only");
    let metrics = scrape_metrics(&gw).await;
    for list in ["credential_scraping", "configured"] {
        let line = format!(
            "switchyard_content_filtered_total{{stage=\"input\",tier=\"pro\",list=\"{list}\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} missing");
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_s_own_list_refuses_its_requests_only() {
    let mut c = config(vec![sim("a", |s| s.model = "sim-small".into())]);
    c.filters.tenants.insert(
        "bank".into(),
        switchyard_config::PatternLists {
            input_literals: vec!["routing number".into()],
            ..Default::default()
        },
    );
    let gw = start(c).await;
    let bank = tenant_key(&gw, "bank", "pro").await;
    let shop = tenant_key(&gw, "shop", "pro").await;
    let ask = user("What is a routing number?", json!({"max_tokens": 3}));
    let resp = post_as(&gw, &bank, "/v1/chat/completions", &ask).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "content_filter", "{v}");
    let resp = post_as(&gw, &shop, "/v1/chat/completions", &ask).await;
    assert_eq!(resp.status(), 200, "another tenant of the same tier");
    resp.bytes().await.unwrap();
    assert_eq!(gw.sims[0].stats().requests, 1);
    let line = "switchyard_content_filtered_total{stage=\"input\",tier=\"pro\",list=\"tenant\"} 1";
    assert!(scrape_metrics(&gw).await.contains(line), "{line} missing");
    gw.shutdown().await;
}

/// The text a seeded request makes the sim write, word by word.
async fn words_for(seed: u64) -> Vec<String> {
    let gw = start(config(vec![sim("a", |s| s.model = "sim-small".into())])).await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &user("Tell me a story", json!({"max_tokens": 12, "seed": seed})),
    )
    .await;
    let v: Value = resp.json().await.unwrap();
    gw.shutdown().await;
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_phrase_split_across_chunks_ends_the_stream() {
    let words = words_for(7).await;
    // The end of word 4 and the start of word 5: only whole once the fifth chunk arrives.
    let (w4, w5) = (&words[3], &words[4]);
    let phrase = format!("{} {}", &w4[w4.len() - 2..], &w5[..2]);
    let mut c = config(vec![sim("a", |s| {
        s.model = "sim-small".into();
        s.decode_ms_per_token = 5.0;
    })]);
    c.filters.all.output_literals = vec![phrase.clone()];
    let gw = start(c).await;
    let body = user(
        "Tell me a story",
        json!({"max_tokens": 12, "seed": 7, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let resp = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let (events, broken) = read_events(resp, Duration::from_secs(10)).await;
    assert_eq!(broken, None);
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    let text: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        words[..4].iter().map(String::as_str).collect::<Vec<_>>(),
        "the text stops before the chunk that completed '{phrase}'"
    );
    let finishes: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
        .filter(|v| !v["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finishes.len(), 1, "{data:#?}");
    assert_eq!(finishes[0]["choices"][0]["finish_reason"], "content_filter");
    let errors: Vec<&&str> = data.iter().filter(|d| d.contains("\"error\"")).collect();
    assert_eq!(errors.len(), 1, "{data:#?}");
    assert!(errors[0].contains("content_filter"));
    assert_eq!(*data.last().unwrap(), "[DONE]");
    // The worker was told to stop: it did not write the remaining tokens.
    let stopped = eventually(Duration::from_secs(5), || {
        let s = gw.sims[0].stats();
        s.in_flight == 0 && s.completed == 0
    })
    .await;
    assert!(
        stopped,
        "the worker's request was not cancelled: {:?}",
        gw.sims[0].stats()
    );
    // Unstreamed, the answer is what came before, with the same finish_reason.
    let whole = user("Tell me a story", json!({"max_tokens": 12, "seed": 7}));
    let resp = post(&gw, "/v1/chat/completions", &whole).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter", "{v}");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(content.split_whitespace().count(), 4, "{v}");
    let metrics = scrape_metrics(&gw).await;
    assert!(metrics.contains("switchyard_content_filtered_total{stage=\"output\""));
    gw.shutdown().await;

    // A worker that answers whole: the blocked phrase is in the very first read. Still a 200
    // ending in content_filter, never a failure retried on another worker.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let answer = format!("Here they are: {phrase}.");
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = answer.clone();
                async move {
                    axum::Json(json!({
                        "id": "whole-1", "object": "chat.completion", "created": 1, "model": "w",
                        "choices": [{"index": 0, "message": {"role": "assistant",
                            "content": answer}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
                    }))
                }
            }),
        )
        .route(
            "/v1/models",
            axum::routing::get(|| async {
                axum::Json(json!({"object": "list", "data": [{"id": "w", "object": "model"}]}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut c = config(Vec::new());
    c.filters.all.output_literals = vec![phrase.clone()];
    for name in ["whole-1", "whole-2"] {
        c.workers.push(
            toml::from_str(&format!(
                "name = '{name}'\nurl = 'http://{addr}'\nruntime = 'openai'\nmodel = 'whole-model'"
            ))
            .unwrap(),
        );
    }
    let gw = start(c).await;
    let fleet = gw.state.fleet.clone();
    let ready = eventually(Duration::from_secs(10), || {
        fleet.workers().iter().all(|w| w.is_healthy())
    })
    .await;
    assert!(ready, "the whole-answer workers never became healthy");
    let resp = post(&gw, "/v1/chat/completions", &chat("whole-model", json!({}))).await;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        status,
        200,
        "{v} after {} calls",
        calls.load(std::sync::atomic::Ordering::SeqCst)
    );
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter", "{v}");
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "not retried elsewhere"
    );
    gw.shutdown().await;
}

/// A moderation endpoint in the OpenAI shape: flags "flag me", fails on "break", answers
/// garbage on "garbage". Counts the calls it got.
async fn moderation_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::routing::post;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/v1/moderations",
        post(move |axum::Json(body): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                let text = body["input"].to_string();
                if text.contains("break") {
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
                }
                if text.contains("garbage") {
                    return axum::Json(json!({"results": "?"})).into_response();
                }
                let flagged = text.contains("flag me");
                axum::Json(json!({"id": "modr-1", "model": "m", "results": [
                    {"flagged": flagged, "categories": {"harassment": flagged}}
                ]}))
                .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/moderations", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

use axum::response::IntoResponse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_moderation_hook_refuses_flagged_requests_and_follows_its_failure_policy() {
    let (url, calls) = moderation_server().await;
    for policy in [
        switchyard_config::ModerationPolicy::Open,
        switchyard_config::ModerationPolicy::Closed,
    ] {
        let mut c = config(vec![sim("a", |s| s.model = "sim-small".into())]);
        c.filters.moderation_url = Some(url.clone());
        c.filters.moderation_on_error = policy;
        let gw = start(c).await;
        let ask = |text: &str| user(text, json!({"max_tokens": 2}));

        let resp = post(&gw, "/v1/chat/completions", &ask("hello there")).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        let resp = post(&gw, "/v1/chat/completions", &ask("please flag me")).await;
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "content_filter", "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("moderation"));

        for failing in ["break it", "garbage in"] {
            let resp = post(&gw, "/v1/chat/completions", &ask(failing)).await;
            match policy {
                switchyard_config::ModerationPolicy::Open => {
                    assert_eq!(resp.status(), 200, "fail-open lets {failing:?} through");
                    resp.bytes().await.unwrap();
                }
                switchyard_config::ModerationPolicy::Closed => {
                    assert_eq!(resp.status(), 503, "fail-closed refuses {failing:?}");
                    assert!(resp.headers().contains_key("retry-after"));
                    let v: Value = resp.json().await.unwrap();
                    assert_eq!(v["error"]["code"], "moderation_unavailable");
                }
            }
        }
        let served = match policy {
            switchyard_config::ModerationPolicy::Open => 3,
            switchyard_config::ModerationPolicy::Closed => 1,
        };
        assert_eq!(gw.sims[0].stats().requests, served, "{policy:?}");
        let outcome = match policy {
            switchyard_config::ModerationPolicy::Open => "let_through",
            switchyard_config::ModerationPolicy::Closed => "refused",
        };
        let line = format!("switchyard_moderation_failures_total{{outcome=\"{outcome}\"}} 2");
        assert!(scrape_metrics(&gw).await.contains(&line), "{line}");
        gw.shutdown().await;
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 8);
}
