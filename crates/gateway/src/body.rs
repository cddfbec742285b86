//! Request bodies: read under the size limit (413) and against the clock (408), each in the
//! OpenAI shape rather than axum's plain-text rejections.
//!
//! [`guard`] puts every request's body on the clock before any handler runs, so no route can
//! be held open by a client that never finishes its body (a chunked body with no end, a byte a
//! minute): it must arrive whole within `[server] body_timeout_ms`, and after its first
//! [`RATE_GRACE`] at `body_min_bytes_per_s` on average. Handlers read it with
//! [`read_limited`] after authentication, so these answers carry the caller's rate figures
//! like any other.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::GatewayError;

/// How long a body may take before its average rate is judged: a client's first packets may
/// wait on a slow start or a TLS handshake.
pub const RATE_GRACE: Duration = Duration::from_secs(5);

/// What [`guard`] holds a body to.
#[derive(Debug, Clone, Copy)]
pub struct BodyClock {
    pub total: Duration,
    pub min_bytes_per_s: u64,
}

impl BodyClock {
    pub fn from_config(server: &switchyard_config::ServerConfig) -> Self {
        Self {
            total: Duration::from_millis(server.body_timeout_ms),
            min_bytes_per_s: server.body_min_bytes_per_s,
        }
    }
}

/// Middleware: the request's body, timed from now.
pub async fn guard(State(clock): State<BodyClock>, request: Request, next: Next) -> Response {
    next.run(request.map(|body| Body::new(TimedBody::new(body, clock))))
        .await
}

/// Why a timed body stopped: the message the 408 carries.
#[derive(Debug)]
pub struct BodyTimedOut(String);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyTimedOut {}

struct TimedBody {
    inner: Body,
    clock: BodyClock,
    began: Instant,
    received: u64,
    /// Wakes at the deadline, or when the rate is next judged. Set the first time the body
    /// is not ready: a body that arrived with its headers (most do) never needs one.
    alarm: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    fn new(inner: Body, clock: BodyClock) -> Self {
        Self {
            inner,
            clock,
            began: Instant::now(),
            received: 0,
            alarm: None,
        }
    }

    fn next_alarm(began: Instant, clock: BodyClock, now: Instant) -> Instant {
        let judge = (began + RATE_GRACE).max(now + Duration::from_secs(1));
        (began + clock.total).min(judge)
    }

    /// The reason to stop now, if there is one.
    fn verdict(&self, now: Instant) -> Option<BodyTimedOut> {
        let elapsed = now - self.began;
        if elapsed >= self.clock.total {
            return Some(BodyTimedOut(format!(
                "The request body did not arrive within {} ms ({} bytes received).",
                self.clock.total.as_millis(),
                self.received
            )));
        }
        if elapsed >= RATE_GRACE
            && (self.received as f64) < self.clock.min_bytes_per_s as f64 * elapsed.as_secs_f64()
        {
            return Some(BodyTimedOut(format!(
                "The request body arrives too slowly: {} bytes in {:.1} s, under {} bytes/s.",
                self.received,
                elapsed.as_secs_f64(),
                self.clock.min_bytes_per_s
            )));
        }
        None
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        loop {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        self.received += data.len() as u64;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(other) => return Poll::Ready(other),
                Poll::Pending => {}
            }
            let (began, clock) = (self.began, self.clock);
            let alarm = self.alarm.get_or_insert_with(|| {
                Box::pin(tokio::time::sleep_until(Self::next_alarm(
                    began,
                    clock,
                    Instant::now(),
                )))
            });
            if alarm.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if let Some(stop) = self.verdict(now) {
                return Poll::Ready(Some(Err(axum::Error::new(stop))));
            }
            let next = Self::next_alarm(began, clock, now);
            if let Some(alarm) = self.alarm.as_mut() {
                alarm.as_mut().reset(next);
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request's body as bytes, under `limit` (413) and the [`guard`]'s clock (408).
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    // Refuse at once when the client declares a body that is too large.
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(GatewayError::BodyTooLarge { size: len, limit });
        }
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return GatewayError::BodyTooLarge {
                    size: limit as u64 + 1,
                    limit,
                };
            }
            if let Some(timed_out) = s.downcast_ref::<BodyTimedOut>() {
                return GatewayError::BodyTimeout(timed_out.0.clone());
            }
            source = s.source();
        }
        GatewayError::InvalidRequest {
            message: format!("Could not read the request body: {e}"),
            param: None,
        }
    })
}
