//! The public listener: accepts connections under the caps, serves each with hyper (HTTP/1.1
//! and HTTP/2) under the connection timeouts, and drains them on shutdown.
//!
//! `axum::serve` gives none of this: it sets no timer, so hyper's header read timeout is off,
//! and it has no connection caps, so a slow client holds a connection (and a file descriptor)
//! for as long as it likes, and enough of them lock everyone out.

mod caps;
mod idle;
mod refuse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use switchyard_gateway::Config;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use caps::{Caps, Refused};
use idle::{Activity, TrackedIo};

/// The connection settings of `[server]`, resolved.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub http2_max_concurrent_streams: u32,
}

impl ConnectionLimits {
    pub fn from_config(config: &Config) -> Self {
        let s = &config.server;
        Self {
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
            .max_buf_size(self.max_header_bytes.max(8 * 1024))
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

/// Serves `app` on `listener` until `stop` resolves; then stops accepting, asks every
/// connection to finish its requests and close, and returns when all have. Dropping the
/// returned future (the grace period ran out) drops every connection.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let caps = Arc::new(Caps::new(
        limits.max_connections,
        limits.max_connections_per_ip,
    ));
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
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors or similar: not the client's fault, and not a
                        // reason to stop serving the connections already open.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match caps.admit(peer.ip()) {
                    Ok(held) => {
                        let (app, builder, limits, closing) =
                            (app.clone(), builder.clone(), limits.clone(), closing_rx.clone());
                        connections.spawn(async move {
                            serve_one(stream, peer, app, &builder, &limits, closing).await;
                            drop(held);
                        });
                    }
                    Err(refused) => refuse::spawn(stream, refused),
                }
            }
        }
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn serve_one(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    limits: &ConnectionLimits,
    mut closing: watch::Receiver<bool>,
) {
    // Streamed chunks are small writes: without TCP_NODELAY, Nagle's algorithm would hold
    // each back until the client acknowledged the previous one (40 ms with delayed ACKs).
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let activity = Arc::new(Activity::new());
    let service = TowerToHyperService::new(idle::CountInFlight::new(app, activity.clone()));
    let io = TokioIo::new(TrackedIo::new(stream, activity.clone()));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut asked_to_close = false;
    loop {
        tokio::select! {
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
            _ = activity.idle_for(limits.idle_timeout), if !asked_to_close => {
                tracing::debug!(%peer, "closing an idle connection");
                asked_to_close = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

impl From<&Refused> for switchyard_gateway::error::GatewayError {
    fn from(r: &Refused) -> Self {
        switchyard_gateway::error::GatewayError::TooManyConnections {
            per_client: matches!(r, Refused::PerClient),
        }
    }
}
