//! `[upstream]`: timeouts, attempts, resumes and the retry and hedge budgets of calls to
//! workers.

use std::path::PathBuf;

use serde::Deserialize;
pub use switchyard_fleet::PlaintextHops;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub connect_timeout_ms: u64,
    /// A streamed request whose first event has not arrived by then goes to another worker.
    pub first_token_timeout_ms: u64,
    /// A stream with no bytes for this long is ended with an error event.
    pub stall_timeout_ms: u64,
    /// The whole of a non-streamed request.
    pub request_timeout_ms: u64,
    /// Workers tried per request (1 = no retry). Retries happen only before the first byte.
    pub max_attempts: u32,
    /// Times a stream that broke after its first token may go on on another worker (see
    /// `upstream::resume`); 0 = a broken stream ends with an error event.
    pub max_resumes: u32,
    /// Consecutive live-traffic failures that take a worker out of rotation.
    pub eject_after_failures: u32,
    /// Retries and hedges allowed per request on average (0.2 = one per five requests)...
    pub retry_budget_ratio: f64,
    /// ...plus this many per second however little traffic there is.
    pub retry_budget_min_per_sec: u32,
    /// Hedges allowed per hedgeable (streamed) request on average.
    pub hedge_budget_ratio: f64,
    /// Which plain-HTTP worker URLs are allowed: `none`, `loopback` (the default: a runtime
    /// on this machine), `private` (RFC 1918, CGNAT and IPv6 unique-local addresses, for a
    /// network the operator encrypts, e.g. WireGuard) or `any`.
    pub plaintext_hops: PlaintextHops,
    /// PEM: the CA that workers behind `switchyard agent --listen` have their certificates
    /// from. Set, every registered https:// worker must present one naming it.
    pub tls_worker_ca: Option<PathBuf>,
    /// PEM: the certificate the gateway presents to those workers (with its chain), and its
    /// key.
    pub tls_client_cert: Option<PathBuf>,
    pub tls_client_key: Option<PathBuf>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 2_000,
            first_token_timeout_ms: 30_000,
            stall_timeout_ms: 30_000,
            request_timeout_ms: 300_000,
            max_attempts: 3,
            max_resumes: 1,
            eject_after_failures: 3,
            retry_budget_ratio: 0.2,
            retry_budget_min_per_sec: 10,
            hedge_budget_ratio: 0.1,
            plaintext_hops: PlaintextHops::default(),
            tls_worker_ca: None,
            tls_client_cert: None,
            tls_client_key: None,
        }
    }
}

impl UpstreamConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("first_token_timeout_ms", self.first_token_timeout_ms),
            ("stall_timeout_ms", self.stall_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if v == 0 {
                return Err(format!("upstream.{key} must be positive"));
            }
        }
        if !(1..=10).contains(&self.max_attempts) {
            return Err("upstream.max_attempts must be between 1 and 10".into());
        }
        if self.eject_after_failures == 0 {
            return Err("upstream.eject_after_failures must be at least 1".into());
        }
        let hedge = self.hedge_budget_ratio;
        if !(hedge.is_finite() && (0.0..=1.0).contains(&hedge)) {
            return Err("upstream.hedge_budget_ratio must be between 0 and 1".into());
        }
        match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(_), None) => {
                return Err(
                    "upstream.tls_client_cert is set without upstream.tls_client_key".into(),
                )
            }
            (None, Some(_)) => {
                return Err(
                    "upstream.tls_client_key is set without upstream.tls_client_cert".into(),
                )
            }
            (Some(_), Some(_)) if self.tls_worker_ca.is_none() => {
                return Err("upstream.tls_client_cert is presented to workers behind \
                            `switchyard agent --listen` only: set upstream.tls_worker_ca too"
                    .into())
            }
            (None, None) if self.tls_worker_ca.is_some() => {
                return Err("upstream.tls_worker_ca needs upstream.tls_client_cert and \
                            tls_client_key: agents' sidecars open to a gateway's client \
                            certificate only (`switchyard ca issue --gateway`)"
                    .into())
            }
            _ => {}
        }
        let retry = self.retry_budget_ratio;
        if !(retry.is_finite() && (0.0..=10.0).contains(&retry)) {
            return Err("upstream.retry_budget_ratio must be between 0 and 10".into());
        }
        Ok(())
    }
}
