//! `[server]`: where the gateway listens, how large a body it reads, how long it waits for a
//! slow client, how many connections it holds, how it shuts down.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::tls::TlsFiles;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Request bodies above this are refused with 413 before they are read whole.
    pub max_body_bytes: usize,
    /// On shutdown, how long in-flight requests get to finish.
    pub shutdown_grace_ms: u64,
    /// On shutdown, how long to keep serving with `/readyz` at 503 before the listener closes,
    /// so that a load balancer polling it stops sending first.
    pub shutdown_delay_ms: u64,
    /// A request's line and headers must arrive within this (HTTP/1); a client that trickles
    /// them (slowloris) is disconnected. It also bounds how long a keep-alive connection may
    /// wait between requests, as hyper starts it when the connection waits for one.
    pub header_read_timeout_ms: u64,
    /// Request line plus headers larger than this are refused with 431 (HTTP/1; it also bounds
    /// hyper's write buffer); for HTTP/2, the header list size advertised to clients.
    pub max_header_bytes: usize,
    /// A request body must arrive whole within this; past it the request gets 408.
    pub body_timeout_ms: u64,
    /// After its first 5 s, a body must arrive at this many bytes/s on average, or 408.
    pub body_min_bytes_per_s: u64,
    /// A connection with no request in flight for this long is closed (HTTP/2: sent GOAWAY);
    /// before its first request, `header_read_timeout_ms` is its idle time. A client that
    /// stops reading an answer for this long has its connection dropped.
    pub idle_timeout_ms: u64,
    /// Connections held at once; past it a new one gets 503 and is closed. Each stream holds
    /// two descriptors (client and worker): keep this under half the open-file limit.
    pub max_connections: usize,
    /// Connections held at once from one client address; past it a new one gets 429. 0 = no
    /// cap (behind a load balancer every connection comes from its address).
    pub max_connections_per_ip: usize,
    /// HTTP/2: requests in flight at once on one connection.
    pub http2_max_concurrent_streams: u32,
    /// TLS: the certificate (PEM, with its chain) and key the public port serves. Both or
    /// neither; without them the port speaks plain HTTP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// TLS: clients must present a certificate that chains to these CAs (PEM).
    pub tls_client_ca: Option<PathBuf>,
    /// How often the TLS files are checked for a change (SIGHUP reloads at once).
    pub tls_reload_interval_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_grace_ms: 30_000,
            shutdown_delay_ms: 0,
            header_read_timeout_ms: 10_000,
            max_header_bytes: 64 * 1024,
            body_timeout_ms: 60_000,
            body_min_bytes_per_s: 1_024,
            idle_timeout_ms: 75_000,
            max_connections: 8_192,
            max_connections_per_ip: 256,
            http2_max_concurrent_streams: 256,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_reload_interval_ms: 10_000,
        }
    }
}

impl ServerConfig {
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|e| {
            format!(
                "server.listen '{}' is not an address like 127.0.0.1:8080: {e}",
                self.listen
            )
        })
    }

    /// The public port's TLS files, if it serves TLS.
    pub fn tls(&self) -> Result<Option<TlsFiles>, String> {
        TlsFiles::from_section(
            "server",
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_client_ca.as_deref(),
        )
    }

    pub fn validate(&self) -> Result<(), String> {
        self.listen_addr()?;
        self.tls()?;
        if !(100..=3_600_000).contains(&self.tls_reload_interval_ms) {
            return Err("server.tls_reload_interval_ms must be between 100 and 3600000".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("server.max_body_bytes must be at least 1024".into());
        }
        if !(100..=600_000).contains(&self.header_read_timeout_ms) {
            return Err("server.header_read_timeout_ms must be between 100 and 600000".into());
        }
        if !(8 * 1024..=1024 * 1024).contains(&self.max_header_bytes) {
            return Err("server.max_header_bytes must be between 8192 and 1048576".into());
        }
        if !(100..=3_600_000).contains(&self.body_timeout_ms) {
            return Err("server.body_timeout_ms must be between 100 and 3600000".into());
        }
        if !(100..=3_600_000).contains(&self.idle_timeout_ms) {
            return Err("server.idle_timeout_ms must be between 100 and 3600000".into());
        }
        if self.max_connections == 0 {
            return Err("server.max_connections must be at least 1".into());
        }
        if self.max_connections_per_ip > self.max_connections {
            return Err(
                "server.max_connections_per_ip cannot exceed server.max_connections".into(),
            );
        }
        if self.http2_max_concurrent_streams == 0 {
            return Err("server.http2_max_concurrent_streams must be at least 1".into());
        }
        Ok(())
    }
}
