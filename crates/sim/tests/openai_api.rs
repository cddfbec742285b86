//! The OpenAI-compatible surface as a client sees it: shapes, usage arithmetic,
//! streaming event order and pacing, n, stop strings, errors, control endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fast, start, words, SseReader};
use serde_json::{json, Value};
use switchyard_sim::{SimConfig, UsageInStream};

#[tokio::test]
async fn health_models_and_sim_header() {
    let (h, c) = start(fast()).await;
    let r = c.get(format!("{}/health", h.url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-sim"], "1");
    let m: Value = c
        .get(format!("{}/v1/models", h.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "sim-small");
    assert_eq!(m["data"][0]["object"], "model");
    assert_eq!(
        m["data"][0]["owned_by"],
        "switchyard-sim (simulated worker)"
    );
    assert!(m["data"][0]["created"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn chat_non_stream_shape_and_usage() {
    let (h, c) = start(fast()).await;
    let body = json!({
        "model": "sim-small",
        "messages": [
            {"role": "system", "content": "be brief"},          // 8 chars -> 2 + 3
            {"role": "user", "content": "hello there, sim"}     // 16 chars -> 4 + 3
        ],
        "max_tokens": 5,
        "temperature": 0.7, "top_p": 0.9, "seed": 42, "logprobs": false,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto",
        "some_vendor_field": {"x": 1}
    });
    let r = c
        .post(format!("{}/v1/chat/completions", h.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-sim"], "1");
    let v: Value = r.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-sim-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "sim-small");
    assert_eq!(v["system_fingerprint"], "switchyard-sim");
    assert!(v["created"].as_u64().unwrap() > 0);
    let ch = &v["choices"][0];
    assert_eq!(ch["index"], 0);
    assert_eq!(ch["message"]["role"], "assistant");
    assert_eq!(ch["logprobs"], Value::Null);
    assert_eq!(ch["finish_reason"], "length");
    let content = ch["message"]["content"].as_str().unwrap();
    assert_eq!(words(content), 5);
    assert!(content.starts_with(' '));
    assert_eq!(v["usage"]["prompt_tokens"], 12);
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["usage"]["total_tokens"], 17);

    // Same seed, same text.
    let again: Value = c
        .post(format!("{}/v1/chat/completions", h.url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["choices"][0]["message"]["content"], content);

    let s = h.stats();
    assert_eq!(s.requests, 2);
    assert_eq!(s.completed, 2);
    assert_eq!(s.prompt_tokens, 24);
    assert_eq!(s.completion_tokens_generated, 10);
}

#[tokio::test]
async fn completion_non_stream_natural_stop_and_max_completion_tokens() {
    let cfg = SimConfig {
        natural_tokens: 4,
        ..fast()
    };
    let (h, c) = start(cfg).await;
    let v: Value = c
        .post(format!("{}/v1/completions", h.url()))
        .json(&json!({"model": "sim-small", "prompt": "abcdefghi", "max_completion_tokens": 50}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-sim-"));
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
    assert_eq!(words(v["choices"][0]["text"].as_str().unwrap()), 4);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 7);
    // No max tokens given and a long natural reply: default_max_tokens applies.
    let (h2, c2) = start(SimConfig {
        default_max_tokens: 3,
        ..fast()
    })
    .await;
    let v: Value = c2
        .post(format!("{}/v1/completions", h2.url()))
        .json(&json!({"prompt": [1, 2, 3, 4, 5]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    drop(h);
}

#[tokio::test]
async fn n_gives_that_many_choices() {
    let (h, c) = start(fast()).await;
    let v: Value = c
        .post(format!("{}/v1/chat/completions", h.url()))
        .json(&json!({"messages": [{"role": "user", "content": "hi"}], "n": 2, "max_tokens": 6}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[1]["index"], 1);
    assert_ne!(
        choices[0]["message"]["content"],
        choices[1]["message"]["content"]
    );
    assert_eq!(v["usage"]["completion_tokens"], 12);
    assert_eq!(v["usage"]["prompt_tokens"], 4);

    let r = c
        .post(format!("{}/v1/chat/completions", h.url()))
        .json(&json!({"messages": [{"role": "user", "content": "hi"}], "n": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn stop_string_ends_the_reply_before_it() {
    let (h, c) = start(fast()).await;
    let url = format!("{}/v1/completions", h.url());
    let base = json!({"prompt": "go", "max_tokens": 12, "seed": 7});
    let v: Value = c
        .post(&url)
        .json(&base)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let full = v["choices"][0]["text"].as_str().unwrap().to_owned();
    let all: Vec<&str> = full.split(' ').filter(|w| !w.is_empty()).collect();
    let stop_word = all[3];
    let first = all.iter().position(|w| *w == stop_word).unwrap();

    let mut req = base.clone();
    req["stop"] = json!(["never-appears", format!(" {stop_word}")]);
    let v: Value = c
        .post(&url)
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ch = &v["choices"][0];
    assert_eq!(ch["finish_reason"], "stop");
    assert_eq!(ch["stop_reason"], format!(" {stop_word}"));
    let text = ch["text"].as_str().unwrap();
    assert_eq!(
        text,
        all[..first]
            .iter()
            .map(|w| format!(" {w}"))
            .collect::<String>()
    );
    // The token that completed the stop string was generated and is billed.
    assert_eq!(v["usage"]["completion_tokens"], first as u64 + 1);

    // A single string works as well.
    req["stop"] = json!(format!(" {stop_word}"));
    let v2: Value = c
        .post(&url)
        .json(&req)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v2["choices"][0]["text"], text);
}

#[tokio::test]
async fn chat_stream_is_vllm_shaped_paced_and_ends_with_usage_and_done() {
    let cfg = SimConfig {
        decode_ms_per_token: 10.0,
        ..fast()
    };
    let (h, c) = start(cfg).await;
    let start = tokio::time::Instant::now();
    let r = c
        .post(format!("{}/v1/chat/completions", h.url()))
        .json(&json!({
            "model": "sim-small",
            "messages": [{"role": "user", "content": "abcdefgh"}],
            "max_tokens": 20, "stream": true,
            "stream_options": {"include_usage": true}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["x-switchyard-sim"], "1");
    let mut reader = SseReader::new(r);
    let mut frames = vec![reader.next().await.unwrap().unwrap()];
    frames.push(reader.next().await.unwrap().unwrap());
    // Streamed as decoded: the first token reached us while the worker was still
    // generating the rest (a buffered response would only arrive once all 20 exist).
    let generated_at_first_token = h.stats().completion_tokens_generated;
    assert!(
        generated_at_first_token < 20,
        "{generated_at_first_token} generated before the first token arrived"
    );
    frames.extend(reader.all().await);
    assert!(frames.iter().all(|f| f.raw.starts_with("data: ")));
    assert_eq!(frames.len(), 1 + 20 + 1 + 1 + 1, "{frames:#?}");
    // Paced: 19 inter-token gaps of 10 ms after a 2 ms prefill, never faster.
    assert!(frames[20].at - start >= std::time::Duration::from_millis(192));

    let role = frames[0].json();
    assert_eq!(role["object"], "chat.completion.chunk");
    assert_eq!(
        role["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let id = role["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("chatcmpl-sim-"));

    let mut text = String::new();
    for f in &frames[1..21] {
        let v = f.json();
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["model"], "sim-small");
        assert!(v["created"].as_u64().is_some());
        let piece = v["choices"][0]["delta"]["content"].as_str().unwrap();
        assert_eq!(words(piece), 1, "one token per event");
        assert_eq!(v["choices"][0]["finish_reason"], Value::Null);
        text.push_str(piece);
    }
    let fin = frames[21].json();
    assert_eq!(fin["choices"][0]["delta"], json!({}));
    assert_eq!(fin["choices"][0]["finish_reason"], "length");
    let usage = frames[22].json();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 5);
    assert_eq!(usage["usage"]["completion_tokens"], 20);
    assert_eq!(usage["usage"]["total_tokens"], 25);
    assert!(frames[23].is_done());
    assert_eq!(words(&text), 20);

    let s = common::wait_stats(&h, |s| s.in_flight == 0).await;
    assert_eq!(s.completed, 1);
    assert_eq!(s.completion_tokens_generated, 20);
}

#[tokio::test]
async fn completion_stream_without_usage_unless_asked() {
    let (h, c) = start(fast()).await;
    let url = format!("{}/v1/completions", h.url());
    let r = c
        .post(&url)
        .json(&json!({"prompt": "x", "max_tokens": 3, "stream": true}))
        .send()
        .await
        .unwrap();
    let frames = SseReader::new(r).all().await;
    assert_eq!(frames.len(), 3 + 1 + 1);
    for f in &frames[..3] {
        let v = f.json();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(words(v["choices"][0]["text"].as_str().unwrap()), 1);
    }
    assert_eq!(frames[3].json()["choices"][0]["finish_reason"], "length");
    assert_eq!(frames[3].json()["choices"][0]["text"], "");
    assert!(frames
        .iter()
        .all(|f| f.is_done() || f.json().get("usage").is_none()));
    assert!(frames[4].is_done());
    drop(h);

    // An old runtime never sends usage; another always does.
    for (mode, asked, expect) in [
        (UsageInStream::Never, true, false),
        (UsageInStream::Always, false, true),
    ] {
        let (h, c) = start(SimConfig {
            usage_in_stream: mode,
            ..fast()
        })
        .await;
        let r = c
            .post(format!("{}/v1/completions", h.url()))
            .json(&json!({"prompt": "x", "max_tokens": 2, "stream": true,
                          "stream_options": {"include_usage": asked}}))
            .send()
            .await
            .unwrap();
        let frames = SseReader::new(r).all().await;
        let has_usage = frames
            .iter()
            .any(|f| !f.is_done() && f.json().get("usage").is_some());
        assert_eq!(has_usage, expect, "{mode:?}");
        assert!(frames.last().unwrap().is_done());
    }
}

#[tokio::test]
async fn stream_n2_interleaves_choices() {
    let (h, c) = start(fast()).await;
    let r = c
        .post(format!("{}/v1/chat/completions", h.url()))
        .json(
            &json!({"messages": [{"role": "user", "content": "hi"}], "n": 2,
                      "max_tokens": 3, "stream": true}),
        )
        .send()
        .await
        .unwrap();
    let frames = SseReader::new(r).all().await;
    // 2 role chunks, 2×3 tokens, 2 finish chunks, [DONE].
    assert_eq!(frames.len(), 2 + 6 + 2 + 1);
    let mut per_choice = [0, 0];
    for f in frames.iter().filter(|f| !f.is_done()) {
        let v = f.json();
        let i = v["choices"][0]["index"].as_u64().unwrap() as usize;
        if v["choices"][0]["delta"]["content"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
        {
            per_choice[i] += 1;
        }
    }
    assert_eq!(per_choice, [3, 3]);
}

#[tokio::test]
async fn keepalive_comments_and_split_writes_keep_content_intact() {
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 12,
                      "stream": true, "seed": 3});
    let plain = {
        let (h, c) = start(fast()).await;
        let r = c
            .post(format!("{}/v1/chat/completions", h.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        SseReader::new(r).all().await
    };
    let (h, c) = start(SimConfig {
        keepalive_comments: true,
        split_writes: true,
        decode_ms_per_token: 5.0,
        ..fast()
    })
    .await;
    let r = c
        .post(format!("{}/v1/chat/completions", h.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(r);
    let quirky = reader.all().await;
    let comments: Vec<_> = quirky.iter().filter(|f| f.data.is_none()).collect();
    assert!(comments.len() >= 2, "{quirky:#?}");
    assert!(comments.iter().all(|f| f.raw == ": ping\n\n"));
    assert!(
        quirky[0].data.is_none(),
        "a ping comes before the first event"
    );
    let content = |frames: &[common::Frame]| -> Vec<String> {
        frames
            .iter()
            .filter_map(|f| f.data.clone())
            .map(|d| {
                if d == "[DONE]" {
                    return d;
                }
                let v: Value = serde_json::from_str(&d).unwrap();
                format!(
                    "{}|{}",
                    v["choices"][0]["delta"], v["choices"][0]["finish_reason"]
                )
            })
            .collect()
    };
    assert_eq!(content(&plain), content(&quirky));
    // Events really arrived in pieces.
    assert!(
        reader.chunks.iter().any(|c| !c.ends_with(b"\n\n")),
        "no event was split across reads"
    );
}

#[tokio::test]
async fn openai_errors() {
    let (h, c) = start(fast()).await;
    let url = format!("{}/v1/chat/completions", h.url());
    let check = |v: &Value, status: u16, r: &reqwest::StatusCode| {
        assert_eq!(r.as_u16(), status, "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(v["error"].get("type").is_some());
        assert!(v["error"].get("param").is_some());
        assert!(v["error"].get("code").is_some());
    };

    let r = c
        .post(&url)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let st = r.status();
    let v: Value = r.json().await.unwrap();
    check(&v, 400, &st);
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let r = c
        .post(&url)
        .json(&json!({"model": "sim-small"}))
        .send()
        .await
        .unwrap();
    let st = r.status();
    let v: Value = r.json().await.unwrap();
    check(&v, 400, &st);
    assert_eq!(v["error"]["param"], "messages");

    let r = c
        .post(format!("{}/v1/completions", h.url()))
        .json(&json!({"max_tokens": 3}))
        .send()
        .await
        .unwrap();
    let st = r.status();
    let v: Value = r.json().await.unwrap();
    check(&v, 400, &st);
    assert_eq!(v["error"]["param"], "prompt");

    let r = c
        .post(&url)
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    let st = r.status();
    let v: Value = r.json().await.unwrap();
    check(&v, 404, &st);
    assert_eq!(v["error"]["code"], "model_not_found");

    let s = h.stats();
    assert_eq!(
        (s.requests, s.failed, s.completed, s.in_flight),
        (4, 4, 0, 0)
    );
}

#[tokio::test]
async fn last_request_echoes_unknown_fields_and_headers() {
    let (h, c) = start(fast()).await;
    let body = json!({
        "model": "sim-small",
        "messages": [{"role": "user", "content": "hi", "x_msg_extra": [1, 2]}],
        "max_tokens": 2,
        "zeta_unknown": {"nested": [true, null, 1.5]},
        "alpha_unknown": "kept"
    });
    let r = c
        .post(format!("{}/v1/chat/completions", h.url()))
        .header("x-request-id", "req-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let last: Value = c
        .get(format!("{}/sim/last_request", h.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(last["body"], body);
    // Key order is preserved too, as received.
    let keys: Vec<&String> = last["body"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "model",
            "messages",
            "max_tokens",
            "zeta_unknown",
            "alpha_unknown"
        ]
    );
    assert_eq!(last["headers"]["x-request-id"], "req-123");
    assert_eq!(last["path"], "/v1/chat/completions");
}
