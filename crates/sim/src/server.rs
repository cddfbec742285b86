//! Networking: the router, our own accept loop and the [`SimHandle`].
//!
//! We run the accept loop ourselves (hyper-util, not `axum::serve`) because the
//! simulator must be able to die like a preempted node: `kill()` closes the listening
//! socket synchronously (new connections are refused from that instant) and drops every
//! open connection, mid-response or not. Each connection also carries a [`ConnAbort`]
//! token in its requests' extensions, so a handler can abort its own connection without
//! sending a single byte (the `cut_stream` fault on a non-streamed response).

use crate::config::{FaultConfig, SimConfig};
use crate::state::SimState;
use crate::stats::SimStats;
use crate::{control, openai, tgi};
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long `shutdown()` lets in-flight requests finish before aborting the rest
/// (hung and stalled requests would otherwise never let it return).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Request bodies up to this size are accepted (long-prompt tests).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Aborts the connection a request arrived on.
#[derive(Debug, Clone)]
pub(crate) struct ConnAbort(CancellationToken);

type ListenerSlot = Arc<Mutex<Option<TcpListener>>>;

/// A running simulated worker. Dropping the handle kills the worker.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    listener: ListenerSlot,
    stop: CancellationToken,
    kill: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// The address the worker listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the fault settings; new requests see them at once.
    pub fn set_faults(&self, f: FaultConfig) {
        self.state.set_faults(f);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.state.counters.snapshot()
    }

    /// Waits until the counters satisfy `cond` (woken by every request start and end and every
    /// health check, never by polling), at most `within`; returns whether they did. Tests wait
    /// on this instead of sleeping for what they expect to have happened.
    pub async fn wait_until(&self, cond: impl Fn(&SimStats) -> bool, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.state.counters.changed.notified();
            tokio::pin!(changed);
            // Registered before the check: a change between the check and the wait wakes it.
            changed.as_mut().enable();
            if cond(&self.stats()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return cond(&self.stats());
            }
        }
    }

    /// Holds every generation request, once counted in flight, before it is admitted: nothing
    /// is answered until [`SimHandle::release`]. A gate for tests that need requests to be
    /// in flight at a known moment.
    pub fn hold(&self) {
        self.state.gate.send_replace(true);
    }

    /// Lets held requests (and every later one) go on.
    pub fn release(&self) {
        self.state.gate.send_replace(false);
    }

    /// Dies at once: stops accepting (connections are refused from now on) and aborts
    /// every open connection and in-flight request or stream, like a preempted node.
    pub fn kill(&self) {
        close_listener(&self.listener);
        self.kill.cancel();
    }

    /// Stops accepting, lets in-flight requests finish (up to a grace period, after
    /// which the rest are aborted), then returns.
    pub async fn shutdown(mut self) {
        close_listener(&self.listener);
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            // The accept task only ends by itself; a panic there has nothing to report.
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.kill();
    }
}

fn close_listener(slot: &ListenerSlot) {
    // Dropping the listener closes the socket right here, synchronously.
    drop(slot.lock().unwrap_or_else(PoisonError::into_inner).take());
}

/// Serves a simulated worker on an already bound listener.
pub async fn spawn(listener: TcpListener, cfg: SimConfig) -> std::io::Result<SimHandle> {
    cfg.validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(SimState::new(cfg));
    let app = router(Arc::clone(&state));
    let slot: ListenerSlot = Arc::new(Mutex::new(Some(listener)));
    let stop = CancellationToken::new();
    let kill = CancellationToken::new();
    let task = tokio::spawn(accept_loop(
        Arc::clone(&slot),
        app,
        stop.clone(),
        kill.clone(),
    ));
    tracing::info!(%addr, model = %state.cfg.model, "switchyard-sim worker listening");
    Ok(SimHandle {
        addr,
        state,
        listener: slot,
        stop,
        kill,
        task: Some(task),
    })
}

/// Binds `addr` (e.g. `127.0.0.1:0`) and serves a simulated worker on it.
pub async fn spawn_on(addr: &str, cfg: SimConfig) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(addr).await?;
    spawn(listener, cfg).await
}

fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/health", get(control::health))
        .route("/v1/models", get(control::models))
        .route("/info", get(control::info))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/generate", post(tgi::generate))
        .route("/generate_stream", post(tgi::generate_stream))
        .route("/", post(tgi::compat))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/sim/stats", get(control::stats))
        .route(
            "/sim/faults",
            get(control::get_faults).put(control::put_faults),
        )
        .route("/sim/last_request", get(control::last_request))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(mark_simulated))
        .with_state(state)
}

/// Every response says it came from a simulator.
async fn mark_simulated(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert("x-switchyard-sim", HeaderValue::from_static("1"));
    resp
}

async fn accept_loop(
    slot: ListenerSlot,
    app: Router,
    stop: CancellationToken,
    kill: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = kill.cancelled() => return,
            () = stop.cancelled() => break,
            r = accept(&slot) => r,
        };
        match accepted {
            Some(Ok((stream, _peer))) => {
                // Tokens are small writes: without TCP_NODELAY, Nagle's algorithm holds each
                // one back until the previous is acknowledged (40 ms with delayed ACKs).
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(
                    stream,
                    app.clone(),
                    graceful.watcher(),
                    kill.child_token(),
                ));
            }
            Some(Err(e)) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "switchyard-sim accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            None => break,
        }
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = kill.cancelled() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => kill.cancel(),
    }
}

/// Accepts from the listener in the slot without holding the lock across the await;
/// None once the slot has been emptied by kill/shutdown.
async fn accept(slot: &ListenerSlot) -> Option<std::io::Result<(TcpStream, SocketAddr)>> {
    poll_fn(|cx| {
        let guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            None => Poll::Ready(None),
            Some(l) => l.poll_accept(cx).map(Some),
        }
    })
    .await
}

/// Serves one connection until it ends, is gracefully shut down (by the watcher), or is
/// dropped at once (by its abort token, a child of the kill token).
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
    abort: CancellationToken,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let token = abort.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnAbort(token.clone()));
        app.clone().oneshot(req)
    });
    let conn = watcher.watch(builder.serve_connection(TokioIo::new(stream), svc));
    tokio::select! {
        // Errors here are the client's or the fault injection's doing; nothing to report.
        _ = conn => {}
        // Dropping the connection closes the socket mid-whatever, like a dead node.
        () = abort.cancelled() => {}
    }
}

/// Aborts the request's connection without sending anything. Without a connection
/// token (not served by our accept loop) the next best thing: headers, then a body
/// that fails at once.
pub(crate) async fn abort_connection(abort: Option<Extension<ConnAbort>>) -> Response {
    if let Some(Extension(ConnAbort(token))) = abort {
        token.cancel();
        // The connection task drops this future; never answer in the meantime.
        std::future::pending::<()>().await;
    }
    let failing = futures::stream::once(async {
        Err::<bytes::Bytes, _>(std::io::Error::other("switchyard-sim: connection cut"))
    });
    Response::new(Body::from_stream(failing))
}

/// A 200 `text/event-stream` response that proxies must not buffer.
pub(crate) fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}
