//! Helpers shared by the integration tests: start a worker on port 0, read SSE bodies
//! with arrival times, wait for a counter condition.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;
use switchyard_sim::{SimConfig, SimHandle, SimStats};
use tokio::time::Instant;

/// Fast timings so the suite runs in seconds.
pub fn fast() -> SimConfig {
    SimConfig {
        prefill_base_ms: 2.0,
        prefill_per_token_ms: 0.0,
        decode_ms_per_token: 2.0,
        ..SimConfig::default()
    }
}

pub async fn start(cfg: SimConfig) -> (SimHandle, reqwest::Client) {
    let h = switchyard_sim::spawn_on("127.0.0.1:0", cfg).await.unwrap();
    (h, client())
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// One SSE frame as received.
#[derive(Debug, Clone)]
pub struct Frame {
    pub at: Instant,
    /// `data` payload, or None for a comment.
    pub data: Option<String>,
    pub raw: String,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().unwrap()).unwrap()
    }
    pub fn is_done(&self) -> bool {
        self.data.as_deref() == Some("[DONE]")
    }
}

/// Incremental SSE reader over a response body.
pub struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    buf: Vec<u8>,
    /// Sizes of the network chunks received, to see split writes.
    pub chunks: Vec<Bytes>,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        Self {
            body: resp.bytes_stream().boxed(),
            buf: Vec::new(),
            chunks: Vec::new(),
        }
    }

    /// The next complete frame; Ok(None) at a clean end of body; Err if the body broke.
    pub async fn next(&mut self) -> Result<Option<Frame>, reqwest::Error> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..pos + 2).collect();
                let raw = String::from_utf8(raw).unwrap();
                let line = raw.trim_end_matches('\n');
                let data = line
                    .strip_prefix("data:")
                    .map(|d| d.strip_prefix(' ').unwrap_or(d).to_owned());
                return Ok(Some(Frame {
                    at: Instant::now(),
                    data,
                    raw,
                }));
            }
            match self.body.next().await {
                Some(Ok(b)) => {
                    self.buf.extend_from_slice(&b);
                    self.chunks.push(b);
                }
                Some(Err(e)) => return Err(e),
                None => {
                    assert!(self.buf.is_empty(), "trailing bytes: {:?}", self.buf);
                    return Ok(None);
                }
            }
        }
    }

    /// All frames until the body ends cleanly (panics if it breaks).
    pub async fn all(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(f) = self.next().await.unwrap() {
            out.push(f);
        }
        out
    }

    /// The next data frame, skipping comments.
    pub async fn next_data(&mut self) -> Result<Option<Frame>, reqwest::Error> {
        loop {
            match self.next().await? {
                Some(f) if f.data.is_none() => continue,
                other => return Ok(other),
            }
        }
    }
}

/// Waits until the worker's counters satisfy `cond` (see `SimHandle::wait_until`); fails
/// after 5 s.
pub async fn wait_stats(h: &SimHandle, cond: impl Fn(&SimStats) -> bool) -> SimStats {
    assert!(
        h.wait_until(&cond, Duration::from_secs(5)).await,
        "condition never held; last stats {:?}",
        h.stats()
    );
    h.stats()
}

/// Words of a simulated reply (one per token).
pub fn words(text: &str) -> usize {
    text.split(' ').filter(|w| !w.is_empty()).count()
}
