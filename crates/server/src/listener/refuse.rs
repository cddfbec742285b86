//! A connection refused at the door gets an HTTP/1.1 answer in the OpenAI error shape (429 past
//! the per-address cap, 503 past the total), then is closed. Refusing costs little: at most
//! `MAX_REFUSING` are answered at once, the rest are closed unanswered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchyard_gateway::error::GatewayError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::caps::Refused;

const MAX_REFUSING: usize = 1_024;
static REFUSING: AtomicUsize = AtomicUsize::new(0);

/// On a TLS listener (`plain` false) the connection is closed unanswered: an answer would need
/// a handshake, the very work a full gateway should not take on.
pub fn spawn(mut stream: TcpStream, refused: Refused, listener: &'static str, plain: bool) {
    switchyard_gateway::metrics::connection_refused(listener, refused.reason());
    if !plain {
        return;
    }
    if REFUSING.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        REFUSING.fetch_sub(1, Ordering::AcqRel);
        return; // dropped: closed at once
    }
    tokio::spawn(async move {
        // The request head first (briefly), so that a client that writes its request before
        // reading reads the answer as the answer to it rather than as an unexpected message.
        let mut head = Vec::with_capacity(1024);
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            let mut buf = [0u8; 1024];
            while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            stream.write_all(&answer(refused)).await?;
            stream.shutdown().await?;
            // Read what the client sent, so that closing does not reset the connection before
            // it has read the answer.
            let mut sink = [0u8; 4096];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
        REFUSING.fetch_sub(1, Ordering::AcqRel);
    });
}

fn answer(refused: Refused) -> Vec<u8> {
    let error = GatewayError::from(&refused);
    let body = error.body().to_json();
    let status = error.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nx-request-id: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        uuid::Uuid::new_v4(),
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}
