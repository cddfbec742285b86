//! A scripted HTTP/1.1 server on a raw socket: each connection gets a list of steps (bytes to
//! write, pauses), so a test decides exactly where chunks split, how long gaps last, and how a
//! response ends (cleanly, cut off, or never).

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use switchyard_loadgen::{Arrivals, BenchConfig, Endpoint, Load};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub enum Step {
    /// Written as is, then flushed.
    Raw(Vec<u8>),
    Sleep(Duration),
}

/// The head of a streamed 200 response, chunked; the connection closes after the script.
pub fn sse_head() -> Step {
    Step::Raw(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            .to_vec(),
    )
}

/// One HTTP chunk of body bytes (which may split SSE lines and UTF-8 anywhere).
pub fn chunk(bytes: &[u8]) -> Step {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    Step::Raw(out)
}

/// The last chunk: the body ends cleanly.
pub fn end() -> Step {
    Step::Raw(b"0\r\n\r\n".to_vec())
}

pub fn sleep_ms(ms: u64) -> Step {
    Step::Sleep(Duration::from_millis(ms))
}

/// A complete response with a Content-Length body.
pub fn whole(status: &str, content_type: &str, body: &str) -> Step {
    Step::Raw(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// `data: {json}\n\n` of a chat chunk with this content.
pub fn text_event(content: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}}]})
    )
}

pub type Script = Arc<dyn Fn(usize) -> Vec<Step> + Send + Sync>;

/// Serves `script(i)` on the i-th connection. `serial`: one connection at a time (the next is
/// accepted only when the previous one is done), like a server with a single slot.
pub async fn serve(script: Script, serial: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut i = 0;
        while let Ok((socket, _)) = listener.accept().await {
            let steps = script(i);
            i += 1;
            if serial {
                play(socket, steps).await;
            } else {
                tokio::spawn(play(socket, steps));
            }
        }
    });
    url
}

async fn play(mut socket: TcpStream, steps: Vec<Step>) {
    read_request(&mut socket).await;
    for step in steps {
        match step {
            Step::Raw(bytes) => {
                if socket.write_all(&bytes).await.is_err() || socket.flush().await.is_err() {
                    return;
                }
            }
            Step::Sleep(d) => tokio::time::sleep(d).await,
        }
    }
}

/// Reads the request's head and its Content-Length body.
async fn read_request(socket: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match socket.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// One streamed chat request at a time, to `url`.
pub fn config(url: &str, requests: u64) -> BenchConfig {
    BenchConfig {
        url: url.into(),
        api_key: None,
        model: "m".into(),
        endpoint: Endpoint::Chat,
        load: Load::Closed { concurrency: 1 },
        requests: Some(requests),
        duration: None,
        input: switchyard_loadgen::Input::Fixed("hi".into()),
        warmup: 0,
        slo: None,
        max_tokens: 8,
        stream: true,
        ignore_eos: false,
        timeout: Duration::from_secs(10),
        max_tokens_min: None,
        arrivals: Arrivals::Uniform,
        seed: 1,
        start_at: None,
        records: None,
    }
}
