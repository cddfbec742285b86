//! KV cache admission as a client sees it: queued then served, queue full → 503,
//! queue timeout → 503, larger than the cache → 400.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fast, start, wait_stats, SseReader};
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_sim::{FaultConfig, SimConfig};

fn small_cache(max_queue: usize, queue_timeout_ms: u64) -> SimConfig {
    SimConfig {
        kv_capacity_tokens: 100,
        max_queue,
        queue_timeout_ms,
        ..fast()
    }
}

/// A streamed request that reserves 61 KV tokens (1 prompt + 60) and then stalls,
/// holding them until the returned reader is dropped.
async fn hog(h: &switchyard_sim::SimHandle, c: &reqwest::Client) -> SseReader {
    h.set_faults(FaultConfig {
        stall_stream: 1.0,
        cut_after_tokens: 1,
        ..FaultConfig::default()
    });
    let r = c
        .post(format!("{}/v1/completions", h.url()))
        .json(&json!({"prompt": "abcd", "max_tokens": 60, "stream": true}))
        .send()
        .await
        .unwrap();
    h.set_faults(FaultConfig::default());
    let mut reader = SseReader::new(r);
    assert!(reader.next_data().await.unwrap().is_some());
    reader
}

#[tokio::test]
async fn full_cache_queues_then_serves_and_full_queue_refuses() {
    let (h, c) = start(small_cache(1, 30_000)).await;
    let hog = hog(&h, &c).await;

    // Does not fit next to the hog: waits in the queue.
    let url = format!("{}/v1/completions", h.url());
    let queued = tokio::spawn({
        let (c, url) = (c.clone(), url.clone());
        async move {
            c.post(&url)
                .json(&json!({"prompt": "abcd", "max_tokens": 60}))
                .send()
                .await
                .unwrap()
        }
    });
    wait_stats(&h, |s| s.queued == 1).await;

    // The queue (max 1) is full: refused at once, OpenAI-shaped, with Retry-After.
    let r = c
        .post(&url)
        .json(&json!({"prompt": "abcd", "max_tokens": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "queue_full");

    // The hog's client leaves: its KV is freed and the queued request is served.
    drop(hog);
    let r = queued.await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 60);
    let s = wait_stats(&h, |s| s.in_flight == 0).await;
    assert_eq!(s.queued, 0);
    assert_eq!(s.completed, 1);
    assert_eq!(s.failed, 2, "the hog and the refused request");
}

#[tokio::test]
async fn queue_timeout_is_503() {
    let (h, c) = start(small_cache(4, 50)).await;
    let _hog = hog(&h, &c).await;
    let r = c
        .post(format!("{}/v1/chat/completions", h.url()))
        .json(&json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "queue_timeout");
    assert_eq!(h.stats().queued, 0);
}

#[tokio::test]
async fn larger_than_the_cache_is_a_context_length_error() {
    let (h, c) = start(small_cache(4, 1000)).await;
    let r = c
        .post(format!("{}/v1/completions", h.url()))
        .json(&json!({"prompt": "abcd", "max_tokens": 50, "n": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum context length is 100 tokens"));

    let r = c
        .post(format!("{}/generate", h.url()))
        .json(&json!({"inputs": "abcd", "parameters": {"max_new_tokens": 200}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn concurrency_slows_decoding() {
    let cfg = SimConfig {
        decode_ms_per_token: 4.0,
        decode_slowdown_per_seq: 0.5,
        ..fast()
    };
    let (h, c) = start(cfg).await;
    let url = format!("{}/v1/completions", h.url());
    let timed = |c: reqwest::Client| {
        let url = url.clone();
        async move {
            let start = tokio::time::Instant::now();
            let r = c
                .post(&url)
                .json(&json!({"prompt": "x", "max_tokens": 20, "stream": true}))
                .send()
                .await
                .unwrap();
            SseReader::new(r).all().await;
            start.elapsed()
        }
    };
    let alone = timed(c.clone()).await;

    // Eight other sequences decoding (one stalled request with n = 8): every token now
    // takes 4 ms × (1 + 0.5 × 8) = 20 ms, so 19 gaps take at least 380 ms.
    h.set_faults(FaultConfig {
        stall_stream: 1.0,
        cut_after_tokens: 1,
        ..FaultConfig::default()
    });
    let r = c
        .post(&url)
        .json(&json!({"prompt": "x", "max_tokens": 20, "n": 8, "stream": true}))
        .send()
        .await
        .unwrap();
    h.set_faults(FaultConfig::default());
    let mut crowd = SseReader::new(r);
    assert!(crowd.next().await.unwrap().is_some());
    let crowded = timed(c.clone()).await;
    assert!(
        crowded >= std::time::Duration::from_millis(380),
        "{crowded:?}"
    );
    assert!(alone < crowded, "alone {alone:?}, crowded {crowded:?}");
}

/// A held worker counts requests in flight and answers none until released; `wait_until`
/// wakes on the counters' changes, not on a timer.
#[tokio::test]
async fn a_held_worker_answers_nothing_until_released() {
    let h = switchyard_sim::spawn_on(
        "127.0.0.1:0",
        SimConfig {
            decode_ms_per_token: 1.0,
            prefill_base_ms: 1.0,
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    h.hold();
    let url = format!("{}/v1/chat/completions", h.url());
    let body = serde_json::json!({"model": "sim-small", "max_tokens": 2,
        "messages": [{"role": "user", "content": "hi"}]});
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let call = client.post(&url).json(&body).send();
            tokio::spawn(call)
        })
        .collect();
    assert!(
        h.wait_until(|s| s.in_flight == 3, Duration::from_secs(5))
            .await
    );
    // Held: nothing completes while the gate is shut.
    assert!(
        !h.wait_until(|s| s.completed > 0, Duration::from_millis(200))
            .await
    );
    h.release();
    for r in requests {
        assert_eq!(r.await.unwrap().unwrap().status(), 200);
    }
    assert!(
        h.wait_until(
            |s| s.completed == 3 && s.in_flight == 0,
            Duration::from_secs(5)
        )
        .await
    );
    h.shutdown().await;
}
