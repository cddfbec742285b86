//! The listener against clients that hold its connections: trickled headers, bodies that
//! never end or crawl, too many connections from one address, idle keep-alive connections;
//! and what those clients are told (the OpenAI error shape, an `x-request-id`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_server::RunningGateway;
use switchyard_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The head of an authenticated chat request as the wire carries it; `framing` is its
/// `content-length` or `transfer-encoding` line.
fn chat_head(framing: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\n{framing}\r\n\r\n"
    )
}

/// A whole authenticated chat request carrying `body`.
fn chat_request(body: &Value) -> String {
    let body = body.to_string();
    format!(
        "{}{body}",
        chat_head(&format!("content-length: {}", body.len()))
    )
}

/// Reads until the peer closes or `within` passes; the bytes, and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// An HTTP/1.1 answer read off a socket: status, headers (lowercased names) and JSON body.
fn parse(raw: &[u8]) -> (u16, Vec<(String, String)>, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (
        status,
        headers,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The fastest of five `/healthz` round trips (one slow one on a loaded machine says little).
async fn best_healthz(gw: &RunningGateway) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let began = Instant::now();
        let resp = client()
            .get(format!("{}/healthz", gw.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        best = best.min(began.elapsed());
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_trickled_headers_are_cut_off_while_others_are_served() {
    let mut c = config(vec![sim("a", |_| {})]);
    c.server.header_read_timeout_ms = 1_000;
    c.server.max_connections_per_ip = 0;
    let gw = start(c).await;
    let began = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        // A request line and one header, and then nothing: the headers never end.
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let best = best_healthz(&gw).await;
    // The bound: a blocked accept loop shows as a second or more.
    assert!(
        best < Duration::from_millis(100),
        "a normal request took {best:?} beside 300 slow ones"
    );
    let mut closed = 0;
    for s in &mut slow {
        let left = Duration::from_secs(4).saturating_sub(began.elapsed());
        if read_until_closed(s, left).await.1 {
            closed += 1;
        }
    }
    assert_eq!(
        closed,
        300,
        "connections still open {:?} after they began",
        began.elapsed()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_or_crawls_gets_408_in_the_openai_shape() {
    let mut c = config(vec![sim("a", |_| {})]);
    c.server.body_timeout_ms = 1_000;
    let gw = start(c).await;

    // Chunked, one chunk, and never the last one.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = chat_head("transfer-encoding: chunked") + "5\r\n{\"mod\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let began = Instant::now();
    let (raw, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let (status, headers, body) = parse(&raw);
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&raw));
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(body["error"]["code"], "request_timeout");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(header(&headers, "x-request-id").is_some_and(|v| !v.is_empty()));

    // A body that crawls: a generous total, but 1,000 bytes/s asked and 2 a second given.
    gw.shutdown().await;
    let mut c = config(vec![sim("a", |_| {})]);
    c.server.body_timeout_ms = 60_000;
    c.server.body_min_bytes_per_s = 1_000;
    let gw = start(c).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = chat_head("content-length: 100000");
    s.write_all(head.as_bytes()).await.unwrap();
    let began = Instant::now();
    let writer = tokio::spawn(async move {
        loop {
            if s.write_all(b"  ").await.is_err() {
                return s;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            if began.elapsed() > Duration::from_secs(12) {
                return s;
            }
        }
    });
    let mut s = writer.await.unwrap();
    let (raw, _) = read_until_closed(&mut s, Duration::from_secs(2)).await;
    let (status, _, body) = parse(&raw);
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&raw));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too slowly"),
        "{body}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_address_cap_are_refused_in_the_openai_shape() {
    let mut c = config(vec![sim("a", |_| {})]);
    c.server.max_connections_per_ip = 4;
    let gw = start(c).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // The listener counts a connection when it accepts it: give it the four first.
    let refused = eventually_async(Duration::from_secs(5), || async {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let (raw, _) = read_until_closed(&mut s, Duration::from_secs(3)).await;
        parse(&raw).0 == 429
    })
    .await;
    assert!(
        refused,
        "a fifth connection from one address was not refused"
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (raw, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    let (status, headers, body) = parse(&raw);
    assert_eq!(status, 429);
    assert!(closed, "a refused connection is closed");
    assert_eq!(body["error"]["code"], "too_many_connections");
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert!(header(&headers, "x-request-id").is_some_and(|v| !v.is_empty()));
    // An HTTP client reads it as the answer to its request.
    let resp = client()
        .get(format!("{}/healthz", gw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections");

    // One of the four leaves: a new connection is served again.
    held.pop();
    let served = eventually_async(Duration::from_secs(5), || async {
        client()
            .get(format!("{}/healthz", gw.url()))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(served, "the freed place was not given back");
    drop(held);
    // A client that sends its request first reads the refusal as the answer to it.
    let refused_seen = eventually_async(Duration::from_secs(5), || async {
        let Ok(resp) = client().get(format!("{}/metrics", gw.url())).send().await else {
            return false;
        };
        resp.text().await.is_ok_and(|m| {
            m.lines().any(|l| {
                l.starts_with(
                    "switchyard_connections_refused_total{listener=\"public\",reason=\"per_client\"}",
                )
            })
        })
    })
    .await;
    assert!(refused_seen, "the refusals were not counted");
    gw.shutdown().await;
}

/// One HTTP/1.1 answer with a `content-length` read off `stream` (which stays open).
async fn read_response(stream: &mut TcpStream) -> (u16, Vec<(String, String)>, Value) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let (status, headers, _) = parse(&got[..end + 4]);
            let len: usize = header(&headers, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while got.len() < end + 4 + len {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed mid-answer");
                got.extend_from_slice(&buf[..n]);
            }
            let body = serde_json::from_slice(&got[end + 4..end + 4 + len]).unwrap_or(Value::Null);
            return (status, headers, body);
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before an answer");
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_but_a_long_silent_answer_is_not() {
    // Each answer of 20 tokens takes about 2 s and is sent whole at the end: silent meanwhile.
    let mut c = config(vec![sim("a", |s| s.decode_ms_per_token = 100.0)]);
    c.server.idle_timeout_ms = 500;
    c.server.header_read_timeout_ms = 30_000;
    let gw = start(c).await;

    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let began = Instant::now();
    let (raw, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(parse(&raw).0, 200);
    assert!(closed, "an idle keep-alive connection stayed open");
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        began.elapsed()
    );

    // A 2 s silent answer, then a second request on the same connection: it was not idle.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let request = chat_request(&chat("sim-small", json!({"max_tokens": 20})));
    s.write_all(request.as_bytes()).await.unwrap();
    let (status, headers, answer) = read_response(&mut s).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["usage"]["completion_tokens"], 20);
    assert_ne!(header(&headers, "connection"), Some("close"));
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_go_after_the_header_timeout_even_over_http2() {
    let mut c = config(vec![sim("a", |_| {})]);
    c.server.header_read_timeout_ms = 1_000;
    c.server.idle_timeout_ms = 60_000;
    let gw = start(c).await;
    // Nothing at all; and HTTP/2's preface and settings, then nothing (its pings answered by
    // the client's stack would otherwise keep it forever).
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let mut h2 = TcpStream::connect(gw.addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let began = Instant::now();
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(8))
            .await
            .1
    );
    assert!(read_until_closed(&mut h2, Duration::from_secs(8)).await.1);
    // The 1 s header timeout, and for HTTP/2 at most 2 s more for a graceful close.
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        began.elapsed()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_gateway_refuses_with_503_in_the_openai_shape() {
    let mut c = config(vec![sim("a", |_| {})]);
    c.server.max_connections = 3;
    c.server.max_connections_per_ip = 0;
    let gw = start(c).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    let full = eventually_async(Duration::from_secs(5), || async {
        let Ok(resp) = client().get(format!("{}/healthz", gw.url())).send().await else {
            return false;
        };
        if resp.status() != 503 {
            return false;
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        body["error"]["code"] == "too_many_connections"
    })
    .await;
    assert!(full, "a fourth connection was not refused with 503");
    drop(held);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_connection() {
    // A long stream written as fast as it is made; the client reads nothing, so once the
    // socket buffers are full the answer cannot be written.
    let mut c = config(vec![sim("a", |s| {
        s.decode_ms_per_token = 0.0;
        s.kv_capacity_tokens = 10_000_000;
        s.natural_tokens = 1_000_000;
    })]);
    let pro = c.tiers.get_mut("pro").unwrap();
    pro.max_tokens = 1 << 20;
    pro.tokens_per_minute = 1 << 40;
    pro.monthly_tokens = 0;
    c.server.idle_timeout_ms = 1_000;
    let gw = start(c).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(gw.addr).await.unwrap();
    let request = chat_request(&chat(
        "sim-small",
        json!({"max_tokens": 1_000_000, "stream": true}),
    ));
    s.write_all(request.as_bytes()).await.unwrap();
    // Wait for the gateway to let go of it: only the scrape's own connection left open.
    let let_go = eventually_async(Duration::from_secs(15), || async {
        scrape_metrics(&gw)
            .await
            .lines()
            .find_map(|l| l.strip_prefix("switchyard_connections_open{listener=\"public\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|open| open <= 1.0)
    })
    .await;
    assert!(let_go, "a connection whose client stopped reading was kept");
    // Dropped: what was buffered drains, then the end. Not dropped: reading resumes a stream
    // of a million tokens, which does not end within the 10 s.
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "a connection whose client stopped reading was kept");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_and_the_gateway_still_serves() {
    let gw = start(config(vec![sim("a", |_| {})])).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let big = "a".repeat(200 * 1024);
    let request = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    let _ = s.write_all(request.as_bytes()).await;
    let (raw, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert_eq!(
        parse(&raw).0,
        431,
        "{}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)])
    );
    assert!(best_healthz(&gw).await < Duration::from_secs(1));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served_and_held_to_the_stream_limit() {
    let mut c = config(vec![sim("a", |s| s.decode_ms_per_token = 50.0)]);
    c.server.http2_max_concurrent_streams = 2;
    let gw = start(c).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(format!("{}/v1/chat/completions", gw.url()))
        .bearer_auth(KEY)
        .json(&chat("sim-small", json!({"max_tokens": 2})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    // Six requests on the one connection, at most two at a time: all answered, and the
    // six take at least three rounds of one answer (~1 s each).
    let began = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (h2, url) = (h2.clone(), gw.url());
        all.spawn(async move {
            h2.post(format!("{url}/v1/chat/completions"))
                .bearer_auth(KEY)
                .json(&chat("sim-small", json!({"max_tokens": 20})))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = all.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert!(
        began.elapsed() >= Duration::from_millis(2_500),
        "six 1 s answers two at a time took {:?}",
        began.elapsed()
    );
    gw.shutdown().await;
}
