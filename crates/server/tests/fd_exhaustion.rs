//! A gateway out of file descriptors blames no worker: a request whose worker connection
//! cannot be opened (EMFILE) gets 503 `temporarily_unavailable` with `Retry-After`, the worker
//! stays in rotation (no ejection, no failed health check), and everything is served again
//! once descriptors are free. The limit is lowered in this test's own process: this file holds
//! one test, so it runs alone in its binary whichever runner starts it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchyard_fleet::WorkerState;
use switchyard_testkit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one HTTP/1.1 request on `conn` and reads its answer whole (it is small).
async fn exchange(conn: &mut TcpStream, request: &str) -> String {
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the gateway closed the connection");
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_string)
                    })
                    .and_then(|l| l.trim().parse::<usize>().ok());
                if length.is_some_and(|l| body.len() >= l) {
                    return text.into_owned();
                }
            }
        }
    });
    read.await.expect("no whole answer within 10 s")
}

fn set_soft_limit(limit: u64) {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    rlimit::Resource::NOFILE.set(limit.min(hard), hard).unwrap();
}

fn soft_limit() -> u64 {
    rlimit::Resource::NOFILE.get().unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_is_not_blamed_on_the_worker() {
    let mut c = config(vec![sim("a", |s| s.model = "sim-small".into())]);
    c.health.interval_ms = 50;
    let gw = start(c).await;
    let worker = gw.state.fleet.worker("a").unwrap();
    assert_eq!(worker.state(), WorkerState::Ready);

    // A connection the gateway has accepted and served, before the door closes.
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let ok = exchange(&mut conn, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");

    let body =
        r#"{"model":"sim-small","messages":[{"role":"user","content":"hi"}],"max_tokens":3}"#;
    let chat = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let before = soft_limit();
    // Every descriptor taken: the gateway cannot open a connection to the worker, nor its
    // health checks theirs, for as long as this lasts (those already open stay usable). The
    // limit comes down first so that filling it is quick.
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    set_soft_limit(highest + 64);
    let mut held = Vec::new();
    let exhausted = loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => held.push(file),
            Err(e) => break e,
        }
    };
    assert_eq!(exhausted.raw_os_error(), Some(24), "{exhausted}"); // EMFILE
    let refused = exchange(&mut conn, &chat).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // ten health intervals
    drop(held);
    set_soft_limit(before);

    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.contains("\"code\":\"temporarily_unavailable\""),
        "{refused}"
    );
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: "),
        "{refused}"
    );
    let health = worker.health_view();
    assert_eq!(worker.state(), WorkerState::Ready, "{}", health.reason);
    assert_eq!(health.ejections, 0);
    assert_eq!(health.consecutive_failures, 0);
    assert_eq!(gw.sims[0].stats().requests, 0, "nothing reached the worker");

    // Descriptors free again: served.
    let served = exchange(&mut conn, &chat).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    gw.shutdown().await;
}
