//! The agent's side of the gateway's registration API (`/fleet/v1`).

use std::time::Duration;

use serde_json::Value;

use crate::error::CliError;

/// Why a call to the gateway failed: the network (keep trying) or an answer (it depends).
#[derive(Debug)]
pub enum ApiError {
    Network(String),
    Status { status: u16, message: String },
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Network(e) => write!(f, "{e}"),
            ApiError::Status { status, message } => write!(f, "HTTP {status}: {message}"),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Network(_) => None,
        }
    }
}

/// What a registration or heartbeat answers.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
}

impl Lease {
    fn from(v: &Value) -> Self {
        Self {
            lease_ms: v["lease_ms"].as_u64().unwrap_or(15_000),
            heartbeat_ms: v["heartbeat_ms"].as_u64().unwrap_or(5_000).max(100),
        }
    }
}

/// reqwest's errors nest their cause; the innermost one says what happened.
pub fn cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_string();
    }
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

pub struct FleetApi {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl FleetApi {
    pub fn new(
        gateway: &str,
        token: String,
        tls: &crate::tls_client::TlsClientArgs,
    ) -> Result<Self, CliError> {
        let base = gateway.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| format!("--gateway '{gateway}' is not a URL: {e}"))?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Every call is small; a gateway that does not answer in this time is treated
            // like a network failure and tried again.
            .timeout(Duration::from_secs(10));
        if crate::admin_client::is_loopback(&parsed) {
            builder = builder.no_proxy();
        }
        let builder = tls.apply(builder)?;
        let http = builder
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self { base, token, http })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let url = format!("{}/fleet/v1{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| {
            ApiError::Network(format!("cannot reach the gateway at {url}: {}", cause(&e)))
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| ApiError::Network(format!("reading the gateway's answer: {e}")))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.trim().chars().take(300).collect());
        Err(ApiError::Status { status, message })
    }

    pub async fn register(&self, body: &Value) -> Result<(Lease, bool), ApiError> {
        let v = self
            .call(reqwest::Method::POST, "/workers", Some(body))
            .await?;
        Ok((Lease::from(&v), v["new"].as_bool().unwrap_or(true)))
    }

    pub async fn heartbeat(&self, name: &str) -> Result<Lease, ApiError> {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/workers/{name}/heartbeat"),
                None,
            )
            .await?;
        Ok(Lease::from(&v))
    }

    /// Returns the requests the worker is still serving.
    pub async fn drain(&self, name: &str) -> Result<u64, ApiError> {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/workers/{name}/drain"),
                None,
            )
            .await?;
        Ok(v["outstanding"].as_u64().unwrap_or(0))
    }

    pub async fn outstanding(&self, name: &str) -> Result<u64, ApiError> {
        let v = self
            .call(reqwest::Method::GET, &format!("/workers/{name}"), None)
            .await?;
        Ok(v["outstanding"].as_u64().unwrap_or(0))
    }

    pub async fn remove(&self, name: &str) -> Result<(), ApiError> {
        self.call(reqwest::Method::DELETE, &format!("/workers/{name}"), None)
            .await
            .map(|_| ())
    }
}
