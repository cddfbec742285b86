//! A worker: its declared labels and its live state.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use serde::Deserialize;

use crate::runtime::{PromptFormat, RuntimeKind};

/// A worker as the operator declares it in the config file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSpec {
    pub name: String,
    /// Base URL of the runtime, e.g. `http://10.0.0.5:8000` (no `/v1`).
    pub url: String,
    pub runtime: RuntimeKind,
    /// The model name clients ask for.
    pub model: String,
    /// The name the runtime knows the model by, when it differs (llama.cpp reports file paths).
    #[serde(default)]
    pub upstream_model: Option<String>,
    #[serde(default = "unlabelled")]
    pub provider: String,
    #[serde(default = "unlabelled")]
    pub region: String,
    #[serde(default = "unlabelled")]
    pub gpu: String,
    #[serde(default)]
    pub price_per_hour: f64,
    /// Sequences the worker runs at once; its hourly price is shared among them when a
    /// request's cost of goods is computed.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: u32,
    /// Bearer token the runtime expects, if any. Never logged.
    #[serde(default)]
    pub api_key: Option<String>,
    /// For `tgi-native` only: how chat messages are rendered into one prompt.
    #[serde(default)]
    pub prompt_format: PromptFormat,
}

fn default_max_concurrency() -> u32 {
    8
}

fn unlabelled() -> String {
    "unlabelled".to_string()
}

impl fmt::Debug for WorkerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerSpec")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("runtime", &self.runtime)
            .field("model", &self.model)
            .field("upstream_model", &self.upstream_model)
            .field("provider", &self.provider)
            .field("region", &self.region)
            .field("gpu", &self.gpu)
            .field("price_per_hour", &self.price_per_hour)
            .field("max_concurrency", &self.max_concurrency)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl WorkerSpec {
    /// Checks what serde cannot: a usable URL, a finite non-negative price.
    pub fn validate(&self) -> Result<(), String> {
        let who = &self.name;
        if self.name.trim().is_empty() {
            return Err("workers[].name must not be empty".into());
        }
        if self.model.trim().is_empty() {
            return Err(format!("worker '{who}': model must not be empty"));
        }
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("worker '{who}': url '{}' is not a URL: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "worker '{who}': url '{}' must be http:// or https:// with a host",
                self.url
            ));
        }
        if self.max_concurrency == 0 {
            return Err(format!(
                "worker '{who}': max_concurrency must be at least 1"
            ));
        }
        if !(self.price_per_hour.is_finite() && self.price_per_hour >= 0.0) {
            return Err(format!(
                "worker '{who}': price_per_hour must be a non-negative number"
            ));
        }
        Ok(())
    }

    pub fn upstream_model(&self) -> &str {
        self.upstream_model.as_deref().unwrap_or(&self.model)
    }

    /// The URL of a path on this worker, without a doubled slash.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.url.trim_end_matches('/'), path)
    }
}

/// The paths the upstream adapters call on every request.
const INFERENCE_PATHS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/generate",
    "/generate_stream",
];

/// A worker with its live state. Shared by every request through `Arc`; all state is atomic so
/// that choosing and releasing a worker never takes a lock.
#[derive(Debug)]
pub struct Worker {
    pub spec: WorkerSpec,
    /// The inference endpoints' URLs, parsed once: parsing a URL costs more than the rest of
    /// building the upstream request.
    urls: Vec<(&'static str, http::Uri)>,
    healthy: AtomicBool,
    outstanding: AtomicU32,
    consecutive_failures: AtomicU32,
}

impl Worker {
    pub fn new(spec: WorkerSpec) -> Self {
        let urls = INFERENCE_PATHS
            .iter()
            .filter_map(|path| Some((*path, spec.endpoint(path).parse().ok()?)))
            .collect();
        Self {
            spec,
            urls,
            // Not ready until a health check says so: never route to a node not yet up.
            healthy: AtomicBool::new(false),
            outstanding: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The URL of `path` on this worker; parsed once for the inference paths. `None` only
    /// for a spec that skipped [`WorkerSpec::validate`].
    pub fn uri(&self, path: &str) -> Option<http::Uri> {
        match self.urls.iter().find(|(p, _)| *p == path) {
            Some((_, uri)) => Some(uri.clone()),
            None => self.spec.endpoint(path).parse().ok(),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, healthy: bool) {
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            tracing::info!(worker = %self.spec.name, healthy, "worker health changed");
        }
        if healthy {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub(crate) fn acquire(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn release(&self) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
    }

    /// Live traffic saw the worker answer properly.
    pub fn record_success(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Live traffic saw the worker fail (transport error, 5xx, timeout; never a client's 4xx).
    /// After `threshold` failures in a row it leaves rotation until a health check passes.
    pub fn record_failure(&self, threshold: u32) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= threshold && self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(worker = %self.spec.name, failures, "worker ejected after consecutive failures");
        }
    }
}
