//! Each injected fault as a client sees it, and the billing counters around them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{client, fast, start, wait_stats, SseReader};
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_sim::{FaultConfig, SimConfig};

fn chat(stream: bool, max_tokens: u32) -> Value {
    json!({"messages": [{"role": "user", "content": "abcd"}], "max_tokens": max_tokens,
           "stream": stream})
}

#[tokio::test]
async fn refuse_is_an_immediate_503() {
    let (h, c) = start(SimConfig {
        prefill_base_ms: 5_000.0,
        faults: FaultConfig {
            refuse: 1.0,
            ..FaultConfig::default()
        },
        ..fast()
    })
    .await;
    let r = c
        .post(format!("{}/v1/chat/completions", h.url()))
        .json(&chat(false, 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "overloaded");
    let r = c
        .post(format!("{}/generate", h.url()))
        .json(&json!({"inputs": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_type"], "overloaded");
    let s = h.stats();
    assert_eq!(
        (s.failed, s.prompt_tokens, s.completion_tokens_generated),
        (2, 0, 0)
    );
}

#[tokio::test]
async fn error_500_comes_after_prefill_for_both_modes() {
    let (h, c) = start(fast()).await;
    h.set_faults(FaultConfig {
        error_500: 1.0,
        ..FaultConfig::default()
    });
    for stream in [false, true] {
        let r = c
            .post(format!("{}/v1/chat/completions", h.url()))
            .json(&chat(stream, 5))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "server_error");
    }
    assert_eq!(h.stats().completion_tokens_generated, 0);
}

#[tokio::test]
async fn hang_never_answers_until_the_client_gives_up() {
    let (h, _) = start(fast()).await;
    h.set_faults(FaultConfig {
        hang: 1.0,
        ..FaultConfig::default()
    });
    let c = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = c
        .post(format!("{}/v1/chat/completions", h.url()))
        .json(&chat(false, 5))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // The hung request is dropped once its client has gone.
    let s = wait_stats(&h, |s| s.in_flight == 0).await;
    assert_eq!((s.requests, s.failed), (1, 1));
}

#[tokio::test]
async fn cut_stream_breaks_the_body_before_done() {
    let (h, c) = start(SimConfig {
        faults: FaultConfig {
            cut_stream: 1.0,
            cut_after_tokens: 4,
            ..FaultConfig::default()
        },
        ..fast()
    })
    .await;
    let r = c
        .post(format!("{}/v1/chat/completions", h.url()))
        .json(
            &json!({"messages": [{"role": "user", "content": "abcd"}], "max_tokens": 50,
                      "stream": true, "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut reader = SseReader::new(r);
    let mut tokens = 0;
    let err = loop {
        match reader.next().await {
            Ok(Some(f)) => {
                assert!(!f.is_done(), "a cut stream must not end with [DONE]");
                let v = f.json();
                assert_eq!(v["choices"][0]["finish_reason"], Value::Null);
                if v["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
                {
                    tokens += 1;
                }
            }
            Ok(None) => panic!("body ended cleanly; expected an error"),
            Err(e) => break e,
        }
    };
    assert!(
        err.is_body() || err.is_decode() || err.is_request(),
        "{err:?}"
    );
    assert_eq!(tokens, 4, "{err:?} chunks {:?}", reader.chunks);
    let s = wait_stats(&h, |s| s.in_flight == 0).await;
    assert_eq!((s.failed, s.completion_tokens_generated), (1, 4));

    // TGI streams are cut the same way.
    let r = c
        .post(format!("{}/generate_stream", h.url()))
        .json(&json!({"inputs": "x", "parameters": {"max_new_tokens": 50}}))
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(r);
    let mut n = 0;
    while let Ok(Some(_)) = reader.next().await {
        n += 1;
    }
    assert_eq!(n, 4);
}

#[tokio::test]
async fn cut_non_stream_aborts_before_any_byte() {
    let (h, c) = start(SimConfig {
        faults: FaultConfig {
            cut_stream: 1.0,
            cut_after_tokens: 2,
            ..FaultConfig::default()
        },
        ..fast()
    })
    .await;
    let err = c
        .post(format!("{}/v1/completions", h.url()))
        .json(&json!({"prompt": "x", "max_tokens": 10}))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    let s = wait_stats(&h, |s| s.in_flight == 0).await;
    assert_eq!((s.failed, s.completion_tokens_generated), (1, 0));
    // The worker itself lives on.
    h.set_faults(FaultConfig::default());
    let r = client()
        .get(format!("{}/health", h.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn stall_keeps_the_connection_open_without_sending() {
    let (h, c) = start(SimConfig {
        faults: FaultConfig {
            stall_stream: 1.0,
            cut_after_tokens: 3,
            ..FaultConfig::default()
        },
        ..fast()
    })
    .await;
    let r = c
        .post(format!("{}/v1/completions", h.url()))
        .json(&json!({"prompt": "x", "max_tokens": 50, "stream": true}))
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(r);
    for _ in 0..3 {
        assert!(reader.next().await.unwrap().is_some());
    }
    // Nothing more comes, and the connection is neither closed nor broken.
    let more = tokio::time::timeout(Duration::from_millis(150), reader.next()).await;
    assert!(more.is_err(), "stalled stream produced {more:?}");
    assert_eq!(h.stats().in_flight, 1);
    drop(reader);
    let s = wait_stats(&h, |s| s.in_flight == 0).await;
    assert_eq!((s.failed, s.completion_tokens_generated), (1, 3));
}

#[tokio::test]
async fn slow_factor_multiplies_timings() {
    let (h, c) = start(SimConfig {
        prefill_base_ms: 1.0,
        decode_ms_per_token: 3.0,
        ..fast()
    })
    .await;
    // Whole request time: load on the test machine can only add to it, and the worker's
    // deadlines make 10 × (1 + 10 × 3) ms a hard lower bound for the slowed request.
    let timed = |c: reqwest::Client, url: String| async move {
        let start = tokio::time::Instant::now();
        let r = c
            .post(url)
            .json(&json!({"prompt": "x", "max_tokens": 11, "stream": true}))
            .send()
            .await
            .unwrap();
        SseReader::new(r).all().await;
        start.elapsed()
    };
    let url = format!("{}/v1/completions", h.url());
    let normal = timed(c.clone(), url.clone()).await;
    h.set_faults(FaultConfig {
        slow_factor: 10.0,
        ..FaultConfig::default()
    });
    let slow = timed(c.clone(), url).await;
    assert!(slow >= Duration::from_millis(310), "slow {slow:?}");
    assert!(normal < slow, "normal {normal:?}, slow {slow:?}");
}

#[tokio::test]
async fn kill_refuses_new_connections_and_breaks_open_streams() {
    let (h, c) = start(fast()).await;
    let url = h.url();
    let r = c
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat(true, 5_000))
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(r);
    assert!(reader.next().await.unwrap().is_some());
    assert!(reader.next().await.unwrap().is_some());

    h.kill();

    // The open stream breaks (no clean end, no [DONE]).
    let broke = loop {
        match reader.next().await {
            Ok(Some(f)) => assert!(!f.is_done()),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(broke, "stream ended cleanly after kill");
    // And nothing answers any more.
    let err = client()
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let s = wait_stats(&h, |s| s.in_flight == 0).await;
    assert_eq!(s.failed, 1);
}

#[tokio::test]
async fn cancelled_stream_counts_the_tokens_it_was_sent_and_frees_its_kv() {
    let (h, c) = start(SimConfig {
        kv_capacity_tokens: 1_000,
        max_queue: 0,
        decode_ms_per_token: 5.0,
        ..fast()
    })
    .await;
    let r = c
        .post(format!("{}/v1/completions", h.url()))
        .json(&json!({"prompt": "abcd", "max_tokens": 900, "stream": true}))
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(r);
    let mut received = 0u64;
    while received < 5 {
        let f = reader.next().await.unwrap().unwrap();
        if f.json()["choices"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        {
            received += 1;
        }
    }
    drop(reader);
    let s = wait_stats(&h, |s| s.in_flight == 0).await;
    assert_eq!(s.failed, 1);
    // Every token the client read was counted; the few more it had not read yet were
    // already written to the socket (so they count too), and generation stopped long
    // before its 900 tokens.
    assert!(
        (received..received + 40).contains(&s.completion_tokens_generated),
        "received {received}, counted {}",
        s.completion_tokens_generated
    );
    // Its KV space is free again: a request needing nearly all of it is admitted.
    let r = c
        .post(format!("{}/v1/completions", h.url()))
        .json(&json!({"prompt": "abcd", "max_tokens": 990}))
        .send()
        .await;
    drop(r);
    let s2 = h.stats();
    assert_eq!(
        s2.completion_tokens_generated - s.completion_tokens_generated,
        64
    );
}

#[tokio::test]
async fn faults_can_be_set_over_http() {
    let (h, c) = start(fast()).await;
    let r = c
        .put(format!("{}/sim/faults", h.url()))
        .json(&json!({"refuse": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{}/v1/completions", h.url()))
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let r = c
        .put(format!("{}/sim/faults", h.url()))
        .json(&json!({"refuse": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .put(format!("{}/sim/faults", h.url()))
        .json(&json!({"refuse_typo": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .put(format!("{}/sim/faults", h.url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let stats: Value = c
        .get(format!("{}/sim/stats", h.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["failed"], 1);
    for key in [
        "in_flight",
        "queued",
        "completed",
        "prompt_tokens",
        "completion_tokens_generated",
    ] {
        assert!(stats[key].is_u64(), "{key}");
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_work() {
    let (h, c) = start(fast()).await;
    let url = h.url();
    let r = c
        .post(format!("{url}/v1/completions"))
        .json(&json!({"prompt": "x", "max_tokens": 20, "stream": true}))
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(r);
    assert!(reader.next().await.unwrap().is_some());
    let done = tokio::spawn(h.shutdown());
    let frames = reader.all().await;
    assert!(frames.last().unwrap().is_done());
    done.await.unwrap();
    assert!(client()
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap_err()
        .is_connect());
}
