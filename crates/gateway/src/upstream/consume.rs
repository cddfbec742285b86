//! Reading a worker's answer to the end with no client to relay it to: synthetic probes and
//! shadow copies, which only measure it.

use std::time::{Duration, Instant};

use futures::StreamExt;

use super::Reply;

/// Reads a worker's answer to the end, as a client would, and checks it is complete. Returns
/// the time to the first frame.
pub async fn consume(reply: Reply, began: Instant) -> Result<Option<Duration>, String> {
    let Reply { first, mut relay } = reply;
    let ttft = began.elapsed();
    let mut done = false;
    let mut frames = futures::stream::once(async { Ok(first) })
        .chain(&mut *relay)
        .boxed();
    while let Some(frame) = frames.next().await {
        let frame: bytes::Bytes = frame.map_err(|e: std::io::Error| e.to_string())?;
        if frame.windows(6).any(|w| w == b"[DONE]") {
            done = true;
        } else if frame.windows(9).any(|w| w == b"\"error\":{") {
            return Err(String::from_utf8_lossy(&frame).trim().to_string());
        }
    }
    if !done {
        return Err("the stream ended without [DONE]".into());
    }
    Ok(Some(ttft))
}
