//! Timing and counting of streamed responses whose chunks split events, lines, `\r\n` pairs
//! and UTF-8 characters anywhere.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{chunk, config, end, serve, sleep_ms, sse_head, text_event};

const ROLE: &str =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n";
const USAGE: &str =
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

#[tokio::test]
async fn ttft_and_gaps_follow_the_chunk_that_completes_each_event() {
    // Event 1 ("hé") is split inside `é` (0xC3 0xA9) and between `\r` and `\n`; its second
    // half comes 150 ms later, so it is complete, and timed, only then. Events 2 and 3 come
    // together, 200 ms after that. The role-only frame and the usage frame carry no text.
    let first = text_event("hé").replace("\n\n", "\r\n\r\n").into_bytes();
    let cut = first.iter().position(|&b| b == 0xC3).unwrap() + 1;
    let cr = first.len() - 3; // "...}\r" | "\n\r\n"
    let script: common::Script = Arc::new(move |_| {
        vec![
            sse_head(),
            chunk(ROLE.as_bytes()),
            chunk(&first[..cut]),
            sleep_ms(150),
            chunk(&first[cut..cr]),
            chunk(&first[cr..]),
            sleep_ms(200),
            chunk(format!("{}{}", text_event(" b"), text_event(" c")).as_bytes()),
            chunk(USAGE.as_bytes()),
            chunk(DONE.as_bytes()),
            end(),
        ]
    });
    let url = serve(script, false).await;
    let r = switchyard_loadgen::run(&config(&url, 1), None)
        .await
        .unwrap();
    assert_eq!((r.requests.ok, r.requests.failed), (1, 0), "{r:?}");
    let l = &r.latency_ms;
    // Nothing with text can arrive before the server's 150 ms pause ends.
    assert_eq!(l.ttft.count, 1);
    assert!(l.ttft.min >= 149.0, "{l:?}");
    // Three text events, two gaps: one of about 200 ms (at least the pause, give or take the
    // first event's read), one of about nothing (same chunk).
    assert_eq!(l.itl.count, 2, "{l:?}");
    assert!(l.itl.max >= 150.0, "{l:?}");
    assert!(l.itl.min < 50.0, "{l:?}");
    // To the end: both pauses at least.
    assert!(l.ttlt.min >= 349.0, "{l:?}");
    assert!(l.ttlt.min >= l.ttft.max, "{l:?}");
    // Tokens from `usage`, not from the three events.
    assert_eq!((r.tokens.ok_prompt, r.tokens.ok_completion), (7, 3));
    assert_eq!((r.tokens.with_usage, r.tokens.counted), (1, 0));
}

#[tokio::test]
async fn one_byte_per_chunk_counts_the_same() {
    // The same stream, every byte its own HTTP chunk; no usage this time, so completion
    // tokens are counted one per text event: 4.
    let body = format!(
        "{ROLE}{}{}: keep-alive\n\n{}{}{DONE}",
        text_event("α"),
        text_event("β"),
        text_event("γ"),
        text_event("δ")
    );
    let script: common::Script = Arc::new(move |_| {
        let mut steps = vec![sse_head()];
        steps.extend(body.as_bytes().chunks(1).map(chunk));
        steps.push(end());
        steps
    });
    let url = serve(script, false).await;
    let r = switchyard_loadgen::run(&config(&url, 3), None)
        .await
        .unwrap();
    assert_eq!(r.requests.ok, 3, "{r:?}");
    assert_eq!(r.latency_ms.itl.count, 3 * 3);
    assert_eq!(r.tokens.ok_completion, 3 * 4);
    assert_eq!((r.tokens.with_usage, r.tokens.counted), (0, 3));
}

#[tokio::test]
async fn open_loop_charges_the_server_for_its_queue() {
    // A server with one slot, 200 ms a request; 5 requests scheduled 50 ms apart. The 5th is
    // due at 200 ms but cannot finish before 5 × 200 = 1,000 ms: its latency from its
    // scheduled start is at least 800 ms, though the server spent only 200 ms on it. (A
    // generator that held back its next start until a response came would report about
    // 200 ms for every request.)
    let script: common::Script = Arc::new(|_| {
        vec![
            sse_head(),
            sleep_ms(200),
            chunk(text_event("x").as_bytes()),
            chunk(DONE.as_bytes()),
            end(),
        ]
    });
    let url = serve(script, true).await;
    let cfg = switchyard_loadgen::BenchConfig {
        load: switchyard_loadgen::Load::Open { rate: 20.0 },
        ..config(&url, 5)
    };
    let r = switchyard_loadgen::run(&cfg, None).await.unwrap();
    assert_eq!(r.requests.ok, 5, "{r:?}");
    assert!(r.latency_ms.ttlt.max >= 795.0, "{:?}", r.latency_ms.ttlt);
    assert!(r.latency_ms.ttft.max >= 795.0, "{:?}", r.latency_ms.ttft);
    assert!(r.elapsed_s >= 1.0, "{}", r.elapsed_s);
    assert_eq!(r.load.mode, "open");
}

#[tokio::test]
async fn open_loop_times_from_the_schedule_even_when_sends_start_late() {
    // 3 requests due at 0, 100 and 200 ms to a server that answers at once. The first
    // outcome's progress callback blocks this (single-threaded) runtime for 300 ms, so the
    // 2nd and 3rd are sent late, at about 300 ms: their latencies count from when they were
    // due (≥ 200 ms and ≥ 100 ms), not from when they were sent (a few ms).
    let script: common::Script = Arc::new(|_| {
        vec![
            sse_head(),
            chunk(text_event("x").as_bytes()),
            chunk(DONE.as_bytes()),
            end(),
        ]
    });
    let url = serve(script, false).await;
    let cfg = switchyard_loadgen::BenchConfig {
        load: switchyard_loadgen::Load::Open { rate: 10.0 },
        ..config(&url, 3)
    };
    let blocked = std::sync::atomic::AtomicBool::new(false);
    let progress: switchyard_loadgen::Progress = Arc::new(move |_| {
        if !blocked.swap(true, std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    });
    let r = switchyard_loadgen::run(&cfg, Some(progress)).await.unwrap();
    assert_eq!(r.requests.ok, 3, "{r:?}");
    assert!(r.latency_ms.ttft.max >= 195.0, "{:?}", r.latency_ms.ttft);
    assert!(r.latency_ms.ttlt.max >= 195.0, "{:?}", r.latency_ms.ttlt);
}
