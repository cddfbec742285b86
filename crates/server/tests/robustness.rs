//! A black-box robustness run: 10,000 random and malformed requests through a running
//! gateway, from bytes that are not HTTP at all to valid HTTP with mangled methods, paths,
//! headers and JSON bodies, to the public port and the admin port. None may panic the gateway (a caught panic would answer 500
//! `internal_error`), every error it shapes is in the OpenAI error shape, and afterwards it
//! still serves. The generator is seeded (printed on failure) so a failure can be replayed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use switchyard_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUESTS: usize = 10_000;
const AT_ONCE: usize = 16;

/// One request as bytes on the wire, and whether it is HTTP the client then waits on (rather
/// than bytes it sends and hangs up after).
fn request(rng: &mut StdRng) -> (Vec<u8>, bool) {
    let kind = rng.random_range(0..10);
    (request_of(rng, kind), kind >= 2)
}

fn request_of(rng: &mut StdRng, kind: u32) -> Vec<u8> {
    match kind {
        // Not HTTP: random bytes.
        0 => (0..rng.random_range(0..512))
            .map(|_| rng.random())
            .collect(),
        // Broken request lines and headers.
        1 => {
            let lines = [
                "GET / HTTP/1.1\r\n\r\n",
                "GET\r\n\r\n",
                "GET / HTTP/9.9\r\nhost: x\r\n\r\n",
                "GET /\u{0} HTTP/1.1\r\nhost: x\r\n\r\n",
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n",
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\nhello",
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999\r\n\r\n",
                "GET / HTTP/1.1\r\nbad header\r\n\r\n",
                "GET / HTTP/1.1\r\nx: \u{1}\u{7f}\r\n\r\n",
                "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\ngarbage",
                "GET http://evil.example/ HTTP/1.1\r\nhost: evil.example\r\n\r\n",
                "CONNECT evil.example:443 HTTP/1.1\r\nhost: evil.example:443\r\n\r\n",
            ];
            lines[rng.random_range(0..lines.len())].as_bytes().to_vec()
        }
        // Valid HTTP with mangled parts.
        _ => {
            let methods = [
                "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO",
            ];
            let paths = [
                "/v1/chat/completions",
                "/v1/completions",
                "/v1/models",
                "/v1/models/sim-small",
                "/healthz",
                "/readyz",
                "/metrics",
                "/status",
                "/status.json",
                "/admin/v1/tenants",
                "/fleet/v1/workers",
                "/v1/chat/completions/../../etc/passwd",
                "/%00%ff%2e%2e",
                "/v1//chat///completions",
            ];
            let method = methods[rng.random_range(0..methods.len())];
            let mut path = paths[rng.random_range(0..paths.len())].to_string();
            if rng.random_bool(0.1) {
                path.push_str(&"x".repeat(rng.random_range(0..20_000)));
            }
            if rng.random_bool(0.2) {
                path.push_str("?a=%ZZ&b=\u{e9}&c");
            }
            let body = body(rng);
            let mut head = format!(
                "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n",
                body.len()
            );
            match rng.random_range(0..4) {
                0 => {}
                1 => head.push_str(&format!("authorization: Bearer {KEY}\r\n")),
                2 => head.push_str("authorization: Bearer sk-wrong\r\n"),
                _ => head.push_str("authorization: Basic Zm9vOmJhcg==\r\n"),
            }
            if rng.random_bool(0.5) {
                let types = [
                    "application/json",
                    "text/plain",
                    "multipart/form-data; boundary=x",
                    "application/json; charset=utf-16",
                    "\u{1}",
                ];
                head.push_str(&format!(
                    "content-type: {}\r\n",
                    types[rng.random_range(0..types.len())]
                ));
            }
            if rng.random_bool(0.1) {
                head.push_str(&format!(
                    "x-request-id: {}\r\n",
                    "r".repeat(rng.random_range(0..300))
                ));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&body);
            bytes
        }
    }
}

/// A body: a chat request with a few of its fields mangled, or something that is not one.
fn body(rng: &mut StdRng) -> Vec<u8> {
    let mut v = chat("sim-small", json!({"max_tokens": 4}));
    if rng.random_bool(0.1) {
        v["messages"][0]["content"] = json!("y".repeat(rng.random_range(0..20_000)));
    }
    let weird = [
        json!(null),
        json!(-1),
        json!(1e308),
        json!(u64::MAX),
        json!("x"),
        json!([]),
        json!({}),
        json!(true),
        json!("\u{0}\u{202e}"),
        serde_json::from_str::<Value>(&format!("{}1{}", "[".repeat(64), "]".repeat(64))).unwrap(),
    ];
    let fields = [
        "model",
        "messages",
        "max_tokens",
        "stream",
        "n",
        "temperature",
        "stop",
        "tools",
        "stream_options",
        "logprobs",
        "user",
        "seed",
    ];
    for _ in 0..rng.random_range(0..4) {
        let field = fields[rng.random_range(0..fields.len())];
        v[field] = weird[rng.random_range(0..weird.len())].clone();
    }
    match rng.random_range(0..10) {
        0 => Vec::new(),
        1 => (0..rng.random_range(0..256))
            .map(|_| rng.random())
            .collect(),
        2 => {
            let mut s = v.to_string().into_bytes();
            let cut = rng.random_range(0..s.len());
            s.truncate(cut);
            s
        }
        _ => v.to_string().into_bytes(),
    }
}

/// What came back: `None` when the gateway closed without an answer (fine for garbage).
async fn send(
    addr: std::net::SocketAddr,
    bytes: Vec<u8>,
    wait: bool,
) -> Option<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let _ = s.write_all(&bytes).await;
    if !wait {
        // Hung up after sending (hyper takes a half-closed connection as a client gone).
        let _ = s.shutdown().await;
    }
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw)).await;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head, raw[end + 4..].to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_requests_get_openai_errors_and_the_gateway_still_serves() {
    let mut c = config(vec![sim("a", |s| s.decode_ms_per_token = 0.0)]);
    c.server.max_connections_per_ip = 0;
    c.server.header_read_timeout_ms = 2_000;
    c.server.body_timeout_ms = 2_000;
    let gw = start(c).await;
    let seed: u64 = std::env::var("SWITCHYARD_ROBUSTNESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let rng = Arc::new(std::sync::Mutex::new(StdRng::seed_from_u64(seed)));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..AT_ONCE {
        // A quarter of the senders aim at the admin port, which agents on strangers'
        // machines reach too.
        let addr = match task % 4 {
            3 => gw.admin_addr.unwrap(),
            _ => gw.addr,
        };
        let rng = rng.clone();
        tasks.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..REQUESTS / AT_ONCE {
                let (bytes, wait) = request(&mut rng.lock().unwrap());
                let answer = send(addr, bytes.clone(), wait).await;
                seen.push((bytes, answer));
            }
            seen
        });
    }
    let (mut answered, mut closed, mut shaped) = (0, 0, 0);
    while let Some(done) = tasks.join_next().await {
        for (sent, answer) in done.unwrap() {
            let shown = String::from_utf8_lossy(&sent[..sent.len().min(300)]).to_string();
            let Some((status, head, body)) = answer else {
                closed += 1;
                continue;
            };
            answered += 1;
            assert_ne!(
                status, 500,
                "seed {seed}: a panic or internal error for {shown:?}: {head}"
            );
            assert!(
                (200..600).contains(&status),
                "seed {seed}: status {status} for {shown:?}"
            );
            if status < 400 || body.is_empty() {
                // hyper's own answers before any request exists (400, 431) carry no body.
                continue;
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "seed {seed}: {status} with a body that is not JSON ({e}) for {shown:?}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                )
            });
            let e = &v["error"];
            assert!(
                e["message"].is_string() && e["type"].is_string(),
                "seed {seed}: {status} not in the OpenAI error shape for {shown:?}: {v}"
            );
            assert!(
                head.to_ascii_lowercase().contains("x-request-id:"),
                "seed {seed}: {status} without x-request-id for {shown:?}: {head}"
            );
            shaped += 1;
        }
    }
    assert_eq!(answered + closed, REQUESTS);
    // Most mangled requests reach a handler and get a shaped error (about 63%); the rest are
    // answered (a valid request), refused by hyper before any request exists, or closed.
    assert!(
        shaped > REQUESTS * 2 / 5,
        "seed {seed}: only {shaped} shaped errors"
    );
    // Still serving, normally.
    let resp = post(
        &gw,
        "/v1/chat/completions",
        &chat("sim-small", json!({"max_tokens": 3})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 3);
    admin_get(&gw, "/admin/v1/tenants").await;
    eprintln!("seed {seed}: {answered} answered ({shaped} shaped errors), {closed} closed without an answer");
    gw.shutdown().await;
}
