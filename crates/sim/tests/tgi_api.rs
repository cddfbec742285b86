//! TGI's native API as a TGI client sees it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fast, start, words, SseReader};
use serde_json::{json, Value};
use switchyard_sim::SimConfig;

#[tokio::test]
async fn generate_with_details_and_prefill() {
    let (h, c) = start(fast()).await;
    let r = c
        .post(format!("{}/generate", h.url()))
        .json(
            &json!({"inputs": "What is Deep Learning?",   // 22 chars -> 6 tokens
                      "parameters": {"max_new_tokens": 5, "temperature": 0.5, "top_p": 0.9,
                                     "seed": 11, "details": true, "decoder_input_details": true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-sim"], "1");
    assert_eq!(r.headers()["x-prompt-tokens"], "6");
    assert_eq!(r.headers()["x-generated-tokens"], "5");
    let v: Value = r.json().await.unwrap();
    let text = v["generated_text"].as_str().unwrap();
    assert_eq!(words(text), 5);
    let d = &v["details"];
    assert_eq!(d["finish_reason"], "length");
    assert_eq!(d["generated_tokens"], 5);
    assert_eq!(d["seed"], 11);
    let prefill = d["prefill"].as_array().unwrap();
    assert_eq!(prefill.len(), 6, "one prefill entry per prompt token");
    assert_eq!(prefill[0]["logprob"], Value::Null);
    assert_eq!(
        prefill
            .iter()
            .map(|p| p["text"].as_str().unwrap())
            .collect::<String>(),
        "What is Deep Learning?"
    );
    let tokens = d["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 5);
    assert_eq!(
        tokens
            .iter()
            .map(|t| t["text"].as_str().unwrap())
            .collect::<String>(),
        text
    );
    assert!(tokens
        .iter()
        .all(|t| t["special"] == false && t["id"].is_u64() && t["logprob"].is_f64()));

    // Without details: just the text, as TGI answers.
    let v: Value = c
        .post(format!("{}/generate", h.url()))
        .json(&json!({"inputs": "hi", "parameters": {"max_new_tokens": 2}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
    assert_eq!(words(v["generated_text"].as_str().unwrap()), 2);

    // details without decoder_input_details: empty prefill.
    let v: Value = c
        .post(format!("{}/generate", h.url()))
        .json(&json!({"inputs": "hi", "parameters": {"max_new_tokens": 2, "details": true}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["details"]["prefill"], json!([]));
}

#[tokio::test]
async fn generate_stops_at_eos_and_stop_sequence() {
    let (h, c) = start(SimConfig {
        natural_tokens: 3,
        ..fast()
    })
    .await;
    let url = format!("{}/generate", h.url());
    let v: Value = c
        .post(&url)
        .json(&json!({"inputs": "x", "parameters": {"max_new_tokens": 10, "details": true, "seed": 5}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["details"]["finish_reason"], "eos_token");
    assert_eq!(v["details"]["generated_tokens"], 3);
    let text = v["generated_text"].as_str().unwrap().to_owned();
    let second = text
        .split(' ')
        .filter(|w| !w.is_empty())
        .nth(1)
        .unwrap()
        .to_owned();
    let v: Value = c
        .post(&url)
        .json(
            &json!({"inputs": "x", "parameters": {"max_new_tokens": 10, "details": true,
                                                     "seed": 5, "stop": [second.clone()]}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["details"]["finish_reason"], "stop_sequence");
    // TGI keeps the stop sequence in the text.
    assert!(v["generated_text"].as_str().unwrap().ends_with(&second));
}

#[tokio::test]
async fn generate_stream_events_as_tgi_sends_them() {
    let (h, c) = start(SimConfig {
        decode_ms_per_token: 10.0,
        ..fast()
    })
    .await;
    let r = c
        .post(format!("{}/generate_stream", h.url()))
        .json(&json!({"inputs": "abcdefgh", "parameters": {"max_new_tokens": 6, "details": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut reader = SseReader::new(r);
    let mut frames = vec![reader.next().await.unwrap().unwrap()];
    // Paced, not buffered: the first token arrives while the rest is being generated.
    assert!(h.stats().completion_tokens_generated < 6);
    frames.extend(reader.all().await);
    assert_eq!(
        frames.len(),
        6,
        "one event per token and no [DONE]: {frames:#?}"
    );
    assert!(frames.iter().all(|f| f.raw.starts_with("data:{")));
    let mut text = String::new();
    for (i, f) in frames.iter().enumerate() {
        let v = f.json();
        assert_eq!(v["index"], i as u64 + 1);
        assert_eq!(v["token"]["special"], false);
        assert!(v["token"]["id"].is_u64());
        text.push_str(v["token"]["text"].as_str().unwrap());
        if i < 5 {
            assert_eq!(v["generated_text"], Value::Null);
            assert_eq!(v["details"], Value::Null);
        }
    }
    let last = frames[5].json();
    assert_eq!(last["generated_text"], text.as_str());
    assert_eq!(
        last["details"],
        json!({"finish_reason": "length", "generated_tokens": 6, "input_length": 2, "seed": null})
    );
    let s = common::wait_stats(&h, |s| s.in_flight == 0).await;
    assert_eq!(
        (s.completed, s.completion_tokens_generated, s.prompt_tokens),
        (1, 6, 2)
    );

    // Without `details`, the last event carries only the text (as TGI does).
    let r = c
        .post(format!("{}/generate_stream", h.url()))
        .json(&json!({"inputs": "abcdefgh", "parameters": {"max_new_tokens": 2}}))
        .send()
        .await
        .unwrap();
    let frames = SseReader::new(r).all().await;
    let last = frames.last().unwrap().json();
    assert!(last["generated_text"].is_string());
    assert_eq!(last["details"], Value::Null);

    // The compat route streams when asked.
    let r = c
        .post(format!("{}/", h.url()))
        .json(&json!({"inputs": "abcdefgh", "parameters": {"max_new_tokens": 2}, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(SseReader::new(r).all().await.len(), 2);
}

#[tokio::test]
async fn tgi_errors_are_tgi_shaped() {
    let (h, c) = start(fast()).await;
    let r = c
        .post(format!("{}/generate", h.url()))
        .json(&json!({"parameters": {"max_new_tokens": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].is_string());
    assert_eq!(v["error_type"], "validation");

    let r = c
        .post(format!("{}/generate", h.url()))
        .json(&json!({"inputs": "x", "parameters": {"max_new_tokens": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    // Streaming prefill details is refused inside the stream, as TGI does.
    let r = c
        .post(format!("{}/generate_stream", h.url()))
        .json(&json!({"inputs": "x", "parameters": {"decoder_input_details": true}}))
        .send()
        .await
        .unwrap();
    let frames = SseReader::new(r).all().await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].json()["error_type"], "validation");

    let info: Value = c
        .get(format!("{}/info", h.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["model_id"], "sim-small");
}
