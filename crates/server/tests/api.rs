//! The OpenAI-compatible surface: responses, usage, pass-through and errors.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use switchyard_testkit::*;

#[tokio::test]
async fn chat_and_completion_return_usage_and_the_public_model_name() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"max_tokens": 5})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-request-id").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "sim-small");
    assert!(!body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    let u = &body["usage"];
    assert_eq!(u["completion_tokens"], 5);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + 5
    );

    let resp = post(
        &gw,
        "/v1/completions",
        &json!({"model": "sim-small", "prompt": "Once", "max_tokens": 3}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["usage"]["completion_tokens"], 3);
    gw.shutdown().await;
}

#[tokio::test]
async fn models_lists_what_the_fleet_serves_and_says_it_is_simulated() {
    let gw = start(config(vec![
        sim("a", |_| {}),
        sim("b", |s| s.model = "sim-large".into()),
    ]))
    .await;
    let resp = client()
        .get(format!("{}/v1/models", gw.url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sim-large", "sim-small"]);
    assert!(body["data"][0]["owned_by"]
        .as_str()
        .unwrap()
        .contains("sim"));
    gw.shutdown().await;
}

#[tokio::test]
async fn unknown_fields_and_sampling_parameters_reach_the_worker_untouched() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    let extra = json!({
        "vendor_knob": {"nested": [1, 2, {"x": null}]},
        "temperature": 0.7, "top_p": 0.9, "seed": 42, "n": 2, "stop": ["\n\n"],
        "logprobs": true, "top_logprobs": 2, "max_completion_tokens": 4,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto"
    });
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", extra.clone()),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"].as_array().unwrap().len(),
        2,
        "n=2 gives two choices"
    );

    let seen: Value = client()
        .get(format!("{}/sim/last_request", gw.sims[0].url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sent = &seen["body"];
    for (k, v) in extra.as_object().unwrap() {
        assert_eq!(&sent[k], v, "field {k} changed on the way");
    }
    // The request id the worker saw is a UUID (llama.cpp refuses anything else).
    let rid = seen["headers"]["x-request-id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(rid).is_ok(), "{rid}");
    gw.shutdown().await;
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    assert!(
        resp.headers().get("x-request-id").is_some(),
        "every response has a request id"
    );
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    let err = &body["error"];
    for key in ["message", "type", "param", "code"] {
        assert!(err.get(key).is_some(), "error lacks {key}: {body}");
    }
    (status, err.clone())
}

#[tokio::test]
async fn bad_requests_get_openai_errors_and_never_reach_a_worker() {
    let mut c = config(vec![sim("a", |_| {})]);
    c.server.max_body_bytes = 4096;
    let gw = start(c).await;
    let cases: Vec<(&str, Vec<u8>, u16, Value)> = vec![
        ("/v1/chat/completions", b"{not json".to_vec(), 400, Value::Null),
        ("/v1/chat/completions", b"[1,2]".to_vec(), 400, Value::Null),
        ("/v1/chat/completions", br#"{"model":"sim-small"}"#.to_vec(), 400, json!("messages")),
        ("/v1/chat/completions", br#"{"model":"sim-small","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#.to_vec(), 400, json!("temperature")),
        ("/v1/chat/completions", br#"{"model":"sim-small","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#.to_vec(), 400, json!("max_tokens")),
        ("/v1/completions", br#"{"model":"sim-small"}"#.to_vec(), 400, json!("prompt")),
        ("/v1/chat/completions", br#"{"model":"gpt-5","messages":[{"role":"user","content":"x"}]}"#.to_vec(), 404, json!("model")),
        ("/v1/chat/completions", format!(r#"{{"model":"sim-small","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(5000)).into_bytes(), 413, Value::Null),
    ];
    for (path, body, status, param) in cases {
        let resp = post_raw(&gw, path, body.clone()).await;
        // Every answer to an authenticated caller carries its rate-limit figures.
        assert!(
            resp.headers()
                .contains_key("x-ratelimit-remaining-requests"),
            "{status}"
        );
        let (got, err) = error_of(resp).await;
        assert_eq!(
            got,
            status,
            "{}: {err}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        assert_eq!(err["param"], param, "{err}");
    }

    // A body over the limit sent without Content-Length (chunked) is cut off at the limit.
    let chunks = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    let resp = post_raw(
        &gw,
        "/v1/chat/completions",
        reqwest::Body::wrap_stream(chunks),
    )
    .await;
    assert_eq!(error_of(resp).await.0, 413);

    let (status, err) = error_of(
        client()
            .post(format!("{}/v1/chat/completions", gw.url()))
            .json(&chat("sim-small", json!({})))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (401, Some("missing_api_key"))
    );
    let (status, err) = error_of(
        client()
            .post(format!("{}/v1/chat/completions", gw.url()))
            .bearer_auth("sk-wrong-key-000000000000")
            .json(&chat("sim-small", json!({})))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let (status, _) = error_of(
        client()
            .get(format!("{}/v1/nothing", gw.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = error_of(
        client()
            .get(format!("{}/v1/chat/completions", gw.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);

    assert_eq!(
        gw.sims[0].stats().requests,
        0,
        "no bad request reached the worker"
    );
    let ok = post(&gw, "/v1/chat/completions", &chat("sim-small", json!({}))).await;
    assert_eq!(ok.status(), 200, "the gateway still serves");
    gw.shutdown().await;
}

#[tokio::test]
async fn arbitrary_bodies_never_take_the_gateway_down() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config as PtConfig, TestRunner};
    let gw = start(config(vec![sim("a", |_| {})])).await;
    let mut runner = TestRunner::new(PtConfig {
        cases: 64,
        ..PtConfig::default()
    });
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "\\{\"model\":\"sim-small\",\"messages\":\\[\\{\"role\":\"(user|x)\",\"content\":(1|\"a\"|null|\\[\\])\\}\\](,\"n\":(0|1|1e9|-1|\"x\"))?\\}"
            .prop_map(String::into_bytes),
    ];
    let mut bodies = Vec::new();
    for _ in 0..64 {
        bodies.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    for body in bodies {
        let resp = post_raw(&gw, "/v1/chat/completions", body.clone()).await;
        let status = resp.status().as_u16();
        assert!(
            status == 200 || status == 400,
            "{status} for {:?}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = resp.json().await.unwrap();
        if status == 400 {
            assert!(v["error"]["message"].is_string());
        }
    }
    let health = client()
        .get(format!("{}/healthz", gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    gw.shutdown().await;
}

/// The gateway never starts simulated workers itself: a config whose `[[sim_workers]]` were
/// not started by the caller is refused with an error that says what to do, rather than
/// served with a fleet silently missing them.
#[tokio::test]
async fn unstarted_sim_workers_are_refused_at_start() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = switchyard_server::start(
        config(vec![sim("a", |_| {})]),
        switchyard_server::Secrets::default(),
        listener,
    )
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("start_sim_workers"), "{err}");
}
