//! Whether a connection is still in use. It is idle once no request has been in flight on it
//! for `[server] idle_timeout_ms` (before its first request, `header_read_timeout_ms`): bytes
//! do not count, as HTTP/2 pings and a trickling client would keep anything alive. A request
//! counts as in flight until its response body is dropped, so a long silent answer (an
//! unstreamed completion the worker is still writing) keeps its connection. A client that
//! stops reading, so that the answer cannot be written for `idle_timeout_ms`, is stalled: its
//! connection is dropped (and the worker's request with it).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Why a connection should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing in flight for the idle time: closed gracefully.
    Idle,
    /// Its answer could not be written for the idle time: dropped.
    Stalled,
}

pub struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` when the last request ended (or the connection opened).
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// Whether a request has been made (before one, the header timeout is the idle time).
    served: AtomicBool,
    /// Milliseconds since `epoch`, plus one, since writes have been blocked; 0 = not blocked.
    blocked_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            blocked_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Release);
    }

    /// Resolves when the connection should go, and why.
    pub async fn watch(&self, idle: Duration, before_first_request: Duration) -> Verdict {
        loop {
            let now = Instant::now();
            let blocked = self.blocked_ms.load(Ordering::Acquire);
            let stalled_at = (blocked != 0).then(|| self.at(blocked - 1) + idle);
            if stalled_at.is_some_and(|at| now >= at) {
                return Verdict::Stalled;
            }
            let in_flight = self.in_flight.load(Ordering::Acquire);
            let limit = if self.served.load(Ordering::Acquire) {
                idle
            } else {
                before_first_request.min(idle)
            };
            let idle_at = self.at(self.last_ms.load(Ordering::Acquire)) + limit;
            if in_flight == 0 && now >= idle_at {
                return Verdict::Idle;
            }
            // In flight: the end of the request touches the clock, so checking again an idle
            // time from now is exact enough, and costs one wake-up per idle time.
            let mut next = if in_flight == 0 { idle_at } else { now + idle };
            if let Some(at) = stalled_at {
                next = next.min(at);
            }
            tokio::time::sleep_until(next.max(now + Duration::from_millis(10))).await;
        }
    }

    fn write_blocked(&self) {
        let since = self.now_ms().saturating_add(1);
        let _ = self
            .blocked_ms
            .compare_exchange(0, since, Ordering::AcqRel, Ordering::Acquire);
    }

    fn write_progressed(&self) {
        if self.blocked_ms.load(Ordering::Relaxed) != 0 {
            self.blocked_ms.store(0, Ordering::Release);
        }
    }
}

/// The connection's socket, noting when writes block (the client stopped reading) and when
/// they move again.
pub struct TrackedIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> TrackedIo<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }

    fn note(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Pending => self.activity.write_blocked(),
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.write_progressed(),
            Poll::Ready(_) => {}
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        self.note(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The app, counting each request in flight on this connection until its response body is
/// dropped.
#[derive(Clone)]
pub struct CountInFlight {
    app: Router,
    activity: Arc<Activity>,
}

impl CountInFlight {
    pub fn new(app: Router, activity: Arc<Activity>) -> Self {
        Self { app, activity }
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // The clock first: a watcher that sees nothing in flight sees this end with it.
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<B> tower::Service<Request<B>> for CountInFlight
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Response, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.activity.served.store(true, Ordering::Release);
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        let held = InFlight(self.activity.clone());
        let app = self.app.clone();
        let request = request.map(Body::new);
        Box::pin(async move {
            let response = tower::ServiceExt::oneshot(app, request).await?;
            let (parts, body) = response.into_parts();
            Ok(Response::from_parts(
                parts,
                Body::new(Guarded { body, _held: held }),
            ))
        })
    }
}

/// A response body holding its request's [`InFlight`] count until dropped.
struct Guarded {
    body: Body,
    _held: InFlight,
}

impl http_body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
