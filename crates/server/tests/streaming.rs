//! Streaming: chunk-by-chunk relay, usage chunks, odd upstream framing, broken and stalled
//! streams, and client disconnects.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use switchyard_sim::{FaultConfig, UsageInStream};
use switchyard_testkit::*;

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn stream_with_include_usage_ends_with_a_usage_chunk_and_done() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    let body = chat(
        "sim-small",
        json!({"stream": true, "stream_options": {"include_usage": true}, "max_tokens": 6}),
    );
    let resp = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (events, err) = read_events(resp, DEADLINE).await;
    assert!(err.is_none());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let usage_chunk = events[events.len() - 2].json();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 6);
    assert_eq!(usage_chunk["model"], "sim-small");
    // Exactly one chunk carries usage.
    let with_usage = events
        .iter()
        .filter(|e| e.data != "[DONE]" && !e.json()["usage"].is_null())
        .count();
    assert_eq!(with_usage, 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn without_include_usage_no_chunk_carries_usage() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"stream": true})),
    )
    .await;
    let (events, _) = read_events(resp, DEADLINE).await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    assert!(events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .all(|e| e.json().get("usage").is_none()));
    assert!(!joined_content(&events).is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn chunks_reach_the_client_as_the_worker_produces_them() {
    // 20 tokens at 40 ms each: a buffering proxy would deliver everything at the end.
    let gw = start(config(vec![sim("a", |s| s.decode_ms_per_token = 40.0)])).await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"stream": true, "max_tokens": 20})),
    )
    .await;
    let (events, _) = read_events(resp, DEADLINE).await;
    let content: Vec<_> = events.iter().filter(|e| e.data != "[DONE]").collect();
    let first = content.first().unwrap().at;
    let last = content.last().unwrap().at;
    let spread = last - first;
    assert!(
        spread >= Duration::from_millis(400),
        "events arrived together ({spread:?}): the stream was buffered"
    );
    // Distinct arrival times: at least most tokens arrived in their own read.
    let mut times: Vec<_> = content.iter().map(|e| e.at).collect();
    times.dedup();
    assert!(
        times.len() >= 15,
        "only {} distinct arrivals for {} events",
        times.len(),
        content.len()
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn keepalive_comments_and_split_writes_upstream_are_absorbed() {
    let gw = start(config(vec![sim("a", |s| {
        s.keepalive_comments = true;
        s.split_writes = true;
    })]))
    .await;
    let plain = start(config(vec![sim("b", |_| {})])).await;
    let body = chat(
        "sim-small",
        json!({"stream": true, "max_tokens": 12, "seed": 7, "stream_options": {"include_usage": true}}),
    );
    let (quirky, err) = read_events(post(&gw, "/v1/chat/completions", &body).await, DEADLINE).await;
    assert!(err.is_none());
    let (clean, _) = read_events(post(&plain, "/v1/chat/completions", &body).await, DEADLINE).await;
    assert_eq!(joined_content(&quirky), joined_content(&clean));
    assert_eq!(quirky.last().unwrap().data, "[DONE]");
    gw.shutdown().await;
    plain.shutdown().await;
}

#[tokio::test]
async fn usage_is_given_even_when_the_runtime_streams_none() {
    let gw = start(config(vec![sim("a", |s| {
        s.usage_in_stream = UsageInStream::Never
    })]))
    .await;
    let body = chat(
        "sim-small",
        json!({"stream": true, "max_tokens": 7, "stream_options": {"include_usage": true}}),
    );
    let (events, _) = read_events(post(&gw, "/v1/chat/completions", &body).await, DEADLINE).await;
    let usage = &events[events.len() - 2].json()["usage"];
    assert_eq!(usage["completion_tokens"], 7, "one token per content chunk");
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn completions_stream_too() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    let body = json!({"model": "sim-small", "prompt": "Once upon", "max_tokens": 4, "stream": true, "n": 2});
    let (events, _) = read_events(post(&gw, "/v1/completions", &body).await, DEADLINE).await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let indexes: std::collections::BTreeSet<u64> = events
        .iter()
        .filter(|e| e.data != "[DONE]")
        .flat_map(|e| {
            e.json()["choices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["index"].as_u64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(indexes.into_iter().collect::<Vec<_>>(), vec![0, 1]);
    gw.shutdown().await;
}

/// The worker dies mid-way: the client gets what was generated, then one error event, and the
/// stream closes (no hang, no [DONE] that would pass the cut-off answer as complete).
#[tokio::test]
async fn a_stream_cut_mid_way_ends_with_one_error_event() {
    let mut c = config(vec![sim("a", |s| {
        s.faults = FaultConfig {
            cut_stream: 1.0,
            cut_after_tokens: 3,
            ..FaultConfig::default()
        };
    })]);
    c.upstream.max_attempts = 1;
    let gw = start(c).await;
    let (events, err) = read_events(
        post(
            &gw,
            "/v1/chat/completions",
            &chat("sim-small", json!({"stream": true, "max_tokens": 20})),
        )
        .await,
        DEADLINE,
    )
    .await;
    assert!(
        err.is_none(),
        "the client's connection closes cleanly: {err:?}"
    );
    assert!(
        !joined_content(&events).is_empty(),
        "tokens before the cut were relayed"
    );
    let last = events.last().unwrap().json();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mid-stream"),
        "{last}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.data.contains("\"error\""))
            .count(),
        1
    );
    assert!(events.iter().all(|e| e.data != "[DONE]"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_stalled_stream_is_ended_after_the_stall_timeout() {
    let mut c = config(vec![sim("a", |s| {
        s.faults = FaultConfig {
            stall_stream: 1.0,
            cut_after_tokens: 2,
            ..FaultConfig::default()
        };
    })]);
    c.upstream.stall_timeout_ms = 300;
    c.upstream.max_attempts = 1;
    let gw = start(c).await;
    let (events, _) = read_events(
        post(
            &gw,
            "/v1/chat/completions",
            &chat("sim-small", json!({"stream": true, "max_tokens": 20})),
        )
        .await,
        DEADLINE,
    )
    .await;
    let last = events.last().unwrap().json();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{last}");
    assert!(last["error"]["message"]
        .as_str()
        .unwrap()
        .contains("stalled"));
    gw.shutdown().await;
}

/// The same stall under an unstreamed request: the client gets the error as it was
/// classified, a 504 timeout, not a generic 502.
#[tokio::test]
async fn a_stalled_unstreamed_answer_is_a_timeout() {
    let mut c = config(vec![sim("a", |s| {
        s.faults = FaultConfig {
            stall_stream: 1.0,
            cut_after_tokens: 2,
            ..FaultConfig::default()
        };
    })]);
    c.upstream.stall_timeout_ms = 300;
    c.upstream.max_attempts = 1;
    let gw = start(c).await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"max_tokens": 20})),
    )
    .await;
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout", "{body}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_worker_killed_mid_stream_ends_the_stream_with_an_error() {
    let mut c = config(vec![sim("a", |s| s.decode_ms_per_token = 20.0)]);
    c.upstream.max_attempts = 1;
    let gw = start(c).await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"stream": true, "max_tokens": 200})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    gw.sims[0].kill();
    let (events, _) = read_events(resp, DEADLINE).await;
    assert!(events.last().unwrap().json()["error"].is_object());
    gw.shutdown().await;
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    let gw = start(config(vec![sim("a", |s| s.decode_ms_per_token = 20.0)])).await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"stream": true, "max_tokens": 500})),
    )
    .await;
    let mut body = resp.bytes_stream();
    use futures::StreamExt;
    body.next().await.unwrap().unwrap();
    assert_eq!(gw.sims[0].stats().in_flight, 1);
    drop(body);
    let sim = &gw.sims[0];
    assert!(
        eventually(Duration::from_secs(5), || sim.stats().in_flight == 0).await,
        "the worker was still generating after the client left"
    );
    let generated = sim.stats().completion_tokens_generated;
    assert!(
        generated < 500,
        "generation stopped early ({generated} tokens)"
    );
    // The worker's lease is released too: it is free for the next request.
    assert!(
        eventually(Duration::from_secs(2), || gw.state.fleet.workers()[0]
            .outstanding()
            == 0)
        .await
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_client_that_disconnects_from_a_non_streamed_request_cancels_it_too() {
    let gw = start(config(vec![sim("a", |s| s.decode_ms_per_token = 20.0)])).await;
    let url = format!("{}/v1/chat/completions", gw.url());
    let request = client()
        .post(url)
        .bearer_auth(KEY)
        .json(&chat("sim-small", json!({"max_tokens": 500})))
        .send();
    let sim = &gw.sims[0];
    tokio::select! {
        _ = request => panic!("a 10 s generation finished early"),
        _ = sim.wait_until(|s| s.in_flight > 0, Duration::from_secs(3600)) => {}
    }
    // The request future is dropped here: the client is gone.
    assert!(eventually(Duration::from_secs(5), || sim.stats().in_flight == 0).await);
    assert!(sim.stats().completion_tokens_generated < 500);
    gw.shutdown().await;
}

/// A client that leaves while its unstreamed answer is being generated is billed for what was
/// generated until then (the gateway streamed it from the worker), not only for its prompt.
#[tokio::test]
async fn a_client_that_leaves_an_unstreamed_request_is_billed_for_what_was_generated() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let mut c = config(vec![sim("a", |s| s.decode_ms_per_token = 20.0)]);
    c.state.path = db.clone();
    // Where the ledger is read from after the gateway stops (SQLite file or Postgres).
    let stored = c.clone();
    let gw = start(c).await;
    let request = client()
        .post(format!("{}/v1/chat/completions", gw.url()))
        .bearer_auth(KEY)
        .json(&chat("sim-small", json!({"max_tokens": 500})))
        .send();
    let sim = &gw.sims[0];
    tokio::select! {
        _ = request => panic!("a 10 s generation finished early"),
        // Leave after some tokens were generated.
        _ = sim.wait_until(|s| s.completion_tokens_generated >= 20, Duration::from_secs(3600)) => {}
    }
    assert!(eventually(Duration::from_secs(5), || sim.stats().in_flight == 0).await);
    let generated = sim.stats().completion_tokens_generated;
    gw.shutdown().await;
    let store = open_store(&stored).await;
    let rows = store
        .usage_records(&switchyard_metering::store::UsageQuery::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        r.status,
        switchyard_metering::UsageStatus::ClientDisconnected
    );
    assert_eq!(r.http_status, 499);
    assert!(!r.stream);
    assert!(
        (20..=generated).contains(&r.completion_tokens),
        "billed {} of {generated} generated",
        r.completion_tokens
    );
    assert!(r.ttft_ms.is_some(), "its first token was seen");
}

/// A worker that ignores `stream: true` and answers one whole JSON object (some
/// OpenAI-compatible servers do) still serves streamed and unstreamed clients; no first token
/// was seen before its whole answer, so the request has no TTFT rather than its whole length,
/// and the worker is not timed by it.
#[tokio::test]
async fn a_worker_that_answers_whole_serves_both_kinds_of_client_without_a_ttft() {
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(|| async {
                axum::Json(json!({
                    "id": "whole-1", "object": "chat.completion", "created": 1, "model": "w",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "All in one piece."},
                        "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
                }))
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
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let mut c = config(Vec::new());
    c.state.path = db.clone();
    // Where the ledger is read from after the gateway stops (SQLite file or Postgres).
    let stored = c.clone();
    c.workers = vec![toml::from_str(&format!(
        "name = 'whole'\nurl = 'http://{addr}'\nruntime = 'openai'\nmodel = 'whole-model'"
    ))
    .unwrap()];
    let gw = start(c).await;
    let body = chat("whole-model", json!({}));
    let resp = post(&gw, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "All in one piece.");
    assert_eq!(v["usage"]["total_tokens"], 14);

    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat(
            "whole-model",
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (events, err) = read_events(resp, Duration::from_secs(10)).await;
    assert!(err.is_none());
    assert_eq!(joined_content(&events), "All in one piece.");
    assert_eq!(events.last().unwrap().data, "[DONE]");
    // Nor is the whole answer's time taken as the worker's TTFT (it would be judged an
    // outlier against workers that stream, and ejected).
    let fleet = admin_get(&gw, "/admin/v1/fleet").await;
    let worker = &fleet["data"][0];
    assert_eq!(worker["name"], "whole");
    assert_eq!(worker["ttft_samples"], 0, "{worker}");
    gw.shutdown().await;
    server.abort();

    let store = open_store(&stored).await;
    let rows = store
        .usage_records(&switchyard_metering::store::UsageQuery::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r.ttft_ms.is_none() && r.completion_tokens == 5),
        "{rows:?}"
    );
}
