//! `[server]`: where the gateway listens, how large a body it reads, how it shuts down.

use std::net::SocketAddr;

use serde::Deserialize;

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_grace_ms: 30_000,
            shutdown_delay_ms: 0,
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

    pub fn validate(&self) -> Result<(), String> {
        self.listen_addr()?;
        if self.max_body_bytes < 1024 {
            return Err("server.max_body_bytes must be at least 1024".into());
        }
        Ok(())
    }
}
