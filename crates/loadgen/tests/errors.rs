//! Bad servers: every failure is counted by its kind, and none panics the generator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{chunk, config, end, serve, sleep_ms, sse_head, text_event, whole, Step};
use switchyard_loadgen::BenchConfig;

/// Runs one request per script, in order, and returns the error counts.
async fn errors_of(
    cfg: impl Fn(&str, u64) -> BenchConfig,
    scripts: Vec<Vec<Step>>,
) -> BTreeMap<String, u64> {
    let n = scripts.len() as u64;
    let scripts = std::sync::Mutex::new(scripts.into_iter().map(Some).collect::<Vec<_>>());
    let script: common::Script = Arc::new(move |i| {
        scripts
            .lock()
            .unwrap()
            .get_mut(i)
            .and_then(Option::take)
            .unwrap_or_default()
    });
    let url = serve(script, false).await;
    let r = switchyard_loadgen::run(&cfg(&url, n), None).await.unwrap();
    assert_eq!(
        (r.requests.sent, r.requests.ok, r.requests.failed),
        (n, 0, n),
        "{r:?}"
    );
    // Failed requests have no latencies.
    assert_eq!(
        r.latency_ms.ttft.count + r.latency_ms.ttlt.count,
        0,
        "{r:?}"
    );
    r.requests.errors
}

fn kinds(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test]
async fn streamed_failures_by_kind() {
    let text = text_event("x");
    let scripts = vec![
        // An HTTP error.
        vec![whole(
            "503 Service Unavailable",
            "application/json",
            r#"{"error":{"message":"busy"}}"#,
        )],
        // A 200 whose event is not JSON.
        vec![sse_head(), chunk(b"data: <html>oops</html>\n\n"), end()],
        // An error event mid-stream.
        vec![
            sse_head(),
            chunk(text.as_bytes()),
            chunk(b"data: {\"error\":{\"message\":\"worker died\"}}\n\n"),
            end(),
        ],
        // Cut off: the connection closes inside the chunked body.
        vec![
            sse_head(),
            chunk(text.as_bytes()),
            Step::Raw(b"40\r\ndata: {\"cho".to_vec()),
        ],
        // Ends cleanly, but without `data: [DONE]`.
        vec![sse_head(), chunk(text.as_bytes()), end()],
        // A JSON error document with status 200 instead of a stream.
        vec![whole(
            "200 OK",
            "application/json",
            r#"{"error":{"message":"no"}}"#,
        )],
        // A whole completion instead of the stream asked for.
        vec![whole(
            "200 OK",
            "application/json",
            r#"{"choices":[{"message":{"content":"hi"}}]}"#,
        )],
    ];
    let errors = errors_of(config, scripts).await;
    assert_eq!(
        errors,
        kinds(&[
            ("http_503", 1),
            ("bad_event", 1),
            ("stream_error", 1),
            ("stream_cut", 1),
            ("stream_incomplete", 1),
            ("response_error", 1),
            ("not_a_stream", 1),
        ])
    );
}

#[tokio::test]
async fn whole_response_failures_by_kind() {
    let not_streamed = |url: &str, n: u64| BenchConfig {
        stream: false,
        timeout: Duration::from_millis(500),
        ..config(url, n)
    };
    let scripts = vec![
        vec![whole("200 OK", "application/json", "not json at all")],
        vec![whole("200 OK", "application/json", r#"{"error":{"message":"no"}}"#)],
        // Content-Length promises 100 bytes; 9 come, then the connection closes.
        vec![Step::Raw(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"choices".to_vec())],
        // Headers, then nothing until the deadline.
        vec![Step::Raw(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n".to_vec()), sleep_ms(2_000)],
        // An error status whose body then hangs is still that error, not a timeout.
        vec![Step::Raw(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 10\r\n\r\n".to_vec()), sleep_ms(2_000)],
    ];
    let errors = errors_of(not_streamed, scripts).await;
    assert_eq!(
        errors,
        kinds(&[
            ("bad_json", 1),
            ("response_error", 1),
            ("body_cut", 1),
            ("timeout", 1),
            ("http_502", 1)
        ])
    );
}

#[tokio::test]
async fn nobody_listening_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = switchyard_loadgen::run(&config(&format!("http://127.0.0.1:{port}"), 2), None)
        .await
        .unwrap();
    assert_eq!(r.requests.failed, 2);
    assert_eq!(r.requests.errors, kinds(&[("connect", 2)]));
    assert_eq!(r.throughput.total_tokens_per_s, 0.0);
}
