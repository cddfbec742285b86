//! A listener (the public one, or the admin port's): accepts connections under the caps, serves each with hyper (HTTP/1.1
//! and HTTP/2) under the connection timeouts, and drains them on shutdown.
//!
//! `axum::serve` gives none of this: it sets no timer, so hyper's header read timeout is off,
//! and it has no connection caps, so a slow client holds a connection (and a file descriptor)
//! for as long as it likes, and enough of them lock everyone out.

mod caps;
mod idle;
mod refuse;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use switchyard_gateway::Config;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use caps::{Caps, Refused};
use idle::{Activity, TrackedIo, Verdict};
use tls::Tls;

/// The names listeners go by in metrics.
pub const PUBLIC: &str = "public";
pub const ADMIN: &str = "admin";

/// How long an idle connection asked to close gets to do so before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The connection settings of `[server]`, resolved.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// The listener's name in logs and metrics: `public` or `admin`.
    pub listener: &'static str,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub http2_max_concurrent_streams: u32,
}

impl ConnectionLimits {
    /// `[server]`'s settings hold on both listeners; `listener` names which one this is.
    pub fn from_config(config: &Config, listener: &'static str) -> Self {
        let s = &config.server;
        Self {
            listener,
            header_read_timeout: Duration::from_millis(s.header_read_timeout_ms),
            max_header_bytes: s.max_header_bytes,
            idle_timeout: Duration::from_millis(s.idle_timeout_ms),
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
            http2_max_concurrent_streams: s.http2_max_concurrent_streams,
        }
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(self.max_header_bytes)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.http2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            // A peer that stops answering pings is gone: its streams are not waited on.
            .keep_alive_interval(Some(Duration::from_secs(20)))
            .keep_alive_timeout(Duration::from_secs(20));
        builder
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `stop` resolves; then stops
/// accepting, asks every connection to finish its requests and close, and returns when all
/// have. Dropping the returned future (the grace period ran out) drops every connection.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<Tls>>,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    if limits.listener == PUBLIC {
        warn_if_descriptors_are_short(limits.max_connections);
    }
    let caps = Arc::new(Caps::new(
        limits.listener,
        limits.max_connections,
        limits.max_connections_per_ip,
    ));
    let mut accept_trouble = AcceptTrouble::default();
    let builder = Arc::new(limits.builder());
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = connections.join_next() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => {
                        accept_trouble.over();
                        accepted
                    }
                    Err(e) => {
                        accept_trouble.wait(&e).await;
                        continue;
                    }
                };
                match caps.admit(peer.ip()) {
                    Ok(held) => {
                        let (app, builder, limits, closing) =
                            (app.clone(), builder.clone(), limits.clone(), closing_rx.clone());
                        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
                        connections.spawn(async move {
                            // Streamed chunks are small writes: without TCP_NODELAY, Nagle's
                            // algorithm would hold each back until the client acknowledged the
                            // previous one (40 ms with delayed ACKs).
                            if let Err(e) = stream.set_nodelay(true) {
                                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                            }
                            match acceptor {
                                None => serve_one(stream, peer, app, &builder, &limits, closing).await,
                                Some(acceptor) => {
                                    // The handshake is on the header clock: a client that
                                    // trickles it holds a connection like a slow header would.
                                    let handshake = tokio::time::timeout(
                                        limits.header_read_timeout,
                                        acceptor.accept(stream),
                                    );
                                    match handshake.await {
                                        Ok(Ok(stream)) => {
                                            serve_one(stream, peer, app, &builder, &limits, closing).await
                                        }
                                        Ok(Err(e)) => {
                                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                            switchyard_gateway::metrics::tls_handshake_failed(limits.listener);
                                        }
                                        Err(_) => {
                                            tracing::debug!(%peer, "TLS handshake timed out");
                                            switchyard_gateway::metrics::tls_handshake_failed(limits.listener);
                                        }
                                    }
                                }
                            }
                            drop(held);
                        });
                    }
                    Err(refused) => refuse::spawn(stream, refused, limits.listener, tls.is_none()),
                }
            }
        }
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_one<S>(
    stream: S,
    peer: SocketAddr,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    limits: &ConnectionLimits,
    mut closing: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = TowerToHyperService::new(idle::CountInFlight::new(app, activity.clone()));
    let io = TokioIo::new(TrackedIo::new(stream, activity.clone()));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut asked_to_close = false;
    // Set when an idle connection is asked to close: HTTP/2's graceful close waits for the
    // client to acknowledge a ping, which a client that holds connections need never do.
    let mut drop_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = async { tokio::time::sleep_until(drop_at.unwrap_or_else(tokio::time::Instant::now)).await }, if drop_at.is_some() => {
                tracing::debug!(%peer, "dropping an idle connection that did not close");
                return;
            }
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = closing.changed(), if !asked_to_close => {
                asked_to_close = true;
                conn.as_mut().graceful_shutdown();
            }
            verdict = activity.watch(limits.idle_timeout, limits.header_read_timeout), if !asked_to_close => {
                match verdict {
                    Verdict::Idle => {
                        tracing::debug!(%peer, "closing an idle connection");
                        asked_to_close = true;
                        drop_at = Some(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
                        conn.as_mut().graceful_shutdown();
                    }
                    Verdict::Stalled => {
                        // Its answer cannot be written: a graceful close would wait on it.
                        tracing::debug!(%peer, "dropping a connection whose client stopped reading");
                        return;
                    }
                }
            }
        }
    }
}

/// Accept errors: one connection's (reset before it was accepted) are skipped at once; the
/// process's own (out of descriptors) back off, up to a second, and are logged once a second,
/// while the connections already open are served on.
#[derive(Default)]
struct AcceptTrouble {
    backoff: Duration,
    last_logged: Option<tokio::time::Instant>,
}

impl AcceptTrouble {
    fn over(&mut self) {
        self.backoff = Duration::ZERO;
    }

    async fn wait(&mut self, e: &std::io::Error) {
        use std::io::ErrorKind::*;
        if matches!(
            e.kind(),
            ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
        ) {
            tracing::debug!(error = %e, "a connection went before it was accepted");
            return;
        }
        let now = tokio::time::Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now - at >= Duration::from_secs(1))
        {
            self.last_logged = Some(now);
            tracing::warn!(error = %e, "cannot accept connections (out of file descriptors?): serving those open, retrying");
        }
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::time::sleep(self.backoff).await;
    }
}

/// Each open stream holds two descriptors (client and worker): a `max_connections` the
/// open-file limit cannot hold means clients wait in the accept queue instead of getting 503.
fn warn_if_descriptors_are_short(max_connections: usize) {
    let Some(limit) = open_file_limit() else {
        return;
    };
    let needed = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(256);
    if limit < needed {
        tracing::warn!(
            open_file_limit = limit,
            max_connections,
            needed,
            "the open-file limit is below what server.max_connections needs (two per stream, plus the process's own): raise it (ulimit -n, LimitNOFILE) or lower server.max_connections"
        );
    }
}

/// The soft open-file limit (Linux: `/proc/self/limits`).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl From<&Refused> for switchyard_gateway::error::GatewayError {
    fn from(r: &Refused) -> Self {
        switchyard_gateway::error::GatewayError::TooManyConnections {
            per_client: matches!(r, Refused::PerClient),
        }
    }
}
