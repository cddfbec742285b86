//! A worker: its declared labels and its live state.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::breaker::{mono_ms, Health, HealthView, OutlierConfig, ProbeView, WorkerState};
use crate::hop::{HopClients, HopTrust, Hops};
use crate::runtime::{PromptFormat, RuntimeKind};
use crate::signal::ReleaseSignal;

/// A worker as the operator declares it in the config file, or as an agent registered it.
/// `Serialize` is for the shared store of registrations only (other replicas must reach the
/// worker, `api_key` included); what the APIs show is a view that leaves the key out.
#[derive(Clone, Deserialize, Serialize)]
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
    /// Capacity reserved for these tiers (e.g. `["business"]`: no noisy neighbours); empty =
    /// shared by every tier.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// `canary` puts the worker in the model's canary pool (see `[routing.canary]`).
    #[serde(default)]
    pub pool: Pool,
    /// How its TLS certificate is checked: `public` (web PKI, for a provider's endpoint) or
    /// `fleet` (behind `switchyard agent --listen`: the operator's CA, naming this worker).
    /// Left out of the stored document when `public`, so that a replica of an earlier version
    /// still reads what most registrations are.
    #[serde(default, skip_serializing_if = "HopTrust::is_public")]
    pub trust: HopTrust,
}

/// Which arm of a model's traffic split a worker serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    #[default]
    Main,
    Canary,
}

impl Pool {
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Main => "main",
            Pool::Canary => "canary",
        }
    }
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
            .field("tiers", &self.tiers)
            .field("pool", &self.pool)
            .field("trust", &self.trust)
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
        if self.trust == HopTrust::Fleet && url.scheme() != "https" {
            return Err(format!(
                "worker '{who}': trust = \"fleet\" needs an https:// url (the agent's TLS sidecar)"
            ));
        }
        if self.max_concurrency == 0 {
            return Err(format!(
                "worker '{who}': max_concurrency must be at least 1"
            ));
        }
        // The ceiling keeps every cost of goods inside i64 (see `metering::money`).
        if !(self.price_per_hour.is_finite() && (0.0..=1_000_000.0).contains(&self.price_per_hour))
        {
            return Err(format!(
                "worker '{who}': price_per_hour must be a number from 0 to 1000000 (USD)"
            ));
        }
        Ok(())
    }

    /// Whether a request of `tier` may use this worker.
    pub fn serves_tier(&self, tier: &str) -> bool {
        self.tiers.is_empty() || self.tiers.iter().any(|t| t == tier)
    }

    pub fn upstream_model(&self) -> &str {
        self.upstream_model.as_deref().unwrap_or(&self.model)
    }

    /// The URL of a path on this worker, without a doubled slash.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.url.trim_end_matches('/'), path)
    }
}

/// Names go into URL paths, logs and metrics: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok = |c: &u8| c.is_ascii_alphanumeric();
    (1..=128).contains(&b.len())
        && ok(&b[0])
        && b[1..]
            .iter()
            .all(|c| ok(c) || matches!(c, b'.' | b'_' | b'-'))
}

/// The paths the upstream adapters call on every request.
const INFERENCE_PATHS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/generate",
    "/generate_stream",
];

/// Where a worker came from: the config file, or `switchyard agent` over the registration API
/// (which must renew its lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerSource {
    Static,
    Registered,
}

/// A worker with its live state. Shared by every request through `Arc`; all state routing
/// reads is atomic, so choosing and releasing a worker never takes a lock.
#[derive(Debug)]
pub struct Worker {
    pub spec: WorkerSpec,
    pub source: WorkerSource,
    /// The inference endpoints' URLs, parsed once: parsing a URL costs more than the rest of
    /// building the upstream request.
    urls: Vec<(&'static str, http::Uri)>,
    health: Health,
    outstanding: AtomicU32,
    /// Registered workers only: when the lease runs out (monotonic ms, see `state::mono_ms`).
    lease_expires_ms: AtomicU64,
    /// Set when the worker leaves the registry, so that its health-check loop stops.
    removed: AtomicBool,
    /// The fleet's signal to queued requests, set when the fleet adopts the worker.
    released: OnceLock<Arc<ReleaseSignal>>,
    /// Other fields a registration reported (VRAM, quantization...), shown by the admin API.
    pub labels: BTreeMap<String, String>,
    /// The clients its calls go through (see [`crate::hop`]).
    hop: HopClients,
}

impl Worker {
    /// A static worker reached through the default hops (tests and tools).
    pub fn new(spec: WorkerSpec) -> Self {
        let hops = Hops::shared_default();
        // The default allows every hop but fleet trust (no CA): such a worker fails its
        // handshakes rather than the constructor.
        let hop = hops
            .clients(&spec)
            .unwrap_or_else(|_| hops.refusing_clients());
        Self::with(
            spec,
            WorkerSource::Static,
            OutlierConfig::default(),
            BTreeMap::new(),
            hop,
        )
    }

    pub fn with(
        spec: WorkerSpec,
        source: WorkerSource,
        policy: OutlierConfig,
        labels: BTreeMap<String, String>,
        hop: HopClients,
    ) -> Self {
        let urls = INFERENCE_PATHS
            .iter()
            .filter_map(|path| Some((*path, spec.endpoint(path).parse().ok()?)))
            .collect();
        Self {
            spec,
            source,
            urls,
            health: Health::new(policy),
            outstanding: AtomicU32::new(0),
            lease_expires_ms: AtomicU64::new(u64::MAX),
            removed: AtomicBool::new(false),
            released: OnceLock::new(),
            labels,
            hop,
        }
    }

    /// The clients this worker's calls go through.
    pub fn hop(&self) -> &HopClients {
        &self.hop
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

    pub fn state(&self) -> WorkerState {
        self.health.state()
    }

    /// In rotation: ready, or on probation (which takes one request at a time).
    pub fn is_healthy(&self) -> bool {
        matches!(self.state(), WorkerState::Ready | WorkerState::Probation)
    }

    /// Whether active health checks currently pass (live-traffic ejections ignored).
    pub fn passes_health_checks(&self) -> bool {
        !matches!(
            self.health.raw_state(),
            WorkerState::Starting | WorkerState::Unhealthy
        )
    }

    /// At its declared concurrency: more would queue inside the runtime, where no SLO can
    /// see it; the gateway queues instead (see the gateway's `route::queue`).
    pub fn is_saturated(&self) -> bool {
        self.outstanding() >= self.spec.max_concurrency
    }

    /// Whether a new request may go to it now.
    pub fn is_routable(&self) -> bool {
        self.health.routable(self.outstanding())
    }

    /// The verdict of active health checks.
    pub fn set_healthy(&self, healthy: bool) {
        if healthy {
            let before = self.state();
            self.health.health_passed(&self.spec.name);
            if self.state() != before {
                // Back in rotation (or in it for the first time): requests queued for a busy
                // fleet may use it now, without waiting for some other request to end.
                if let Some(signal) = self.released.get() {
                    signal.released();
                }
            }
        } else {
            self.health
                .health_failed(&self.spec.name, "health check failed");
        }
    }

    pub fn health_failed(&self, why: &str) {
        self.health.health_failed(&self.spec.name, why);
    }

    pub fn outstanding(&self) -> u32 {
        // SeqCst with `release` and `ReleaseSignal`: a waiter that registers and then looks
        // must see a slot freed by a releaser that did not see the waiter (see `signal`).
        self.outstanding.load(Ordering::SeqCst)
    }

    pub(crate) fn acquire(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a slot only if one is free (one on probation, `max_concurrency` otherwise), in
    /// one atomic step: two requests that both saw the last free slot cannot both take it.
    pub(crate) fn try_acquire(&self) -> bool {
        let limit = match self.state() {
            WorkerState::Probation => 1,
            _ => self.spec.max_concurrency,
        };
        self.outstanding
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    pub(crate) fn release(&self) {
        self.outstanding.fetch_sub(1, Ordering::SeqCst);
        if let Some(signal) = self.released.get() {
            signal.released();
        }
    }

    pub(crate) fn adopt(&self, signal: &Arc<ReleaseSignal>) {
        let _ = self.released.set(signal.clone());
    }

    /// Live traffic saw the worker answer properly.
    pub fn record_success(&self) {
        self.health.record_success(&self.spec.name);
    }

    /// Live traffic saw the worker fail (transport error, 5xx, timeout, stall; never a
    /// client's 4xx). After `threshold` failures in a row it is ejected (see [`crate::state`]).
    pub fn record_failure(&self, threshold: u32) {
        self.record_failure_because(threshold, "upstream failure");
    }

    pub fn record_failure_because(&self, threshold: u32, why: &str) {
        self.health.record_failure(&self.spec.name, threshold, why);
    }

    /// The worker's usage report for a request was refused (out of bounds or malformed): it
    /// counts as a failure toward ejection, and is kept for the alert and the admin view.
    pub fn usage_rejected(&self, threshold: u32, claim: &str) {
        self.health.note_usage_rejected(claim);
        self.health.record_failure(
            &self.spec.name,
            threshold,
            &format!("usage report refused: {claim}"),
        );
    }

    /// Time to first token of a request whose prompt was about `prompt_tokens` tokens (see
    /// [`crate::ttft`]: outlier detection compares prompts of a size).
    pub fn record_ttft(&self, ttft: Duration, prompt_tokens: u64) {
        self.health.record_ttft(ttft, prompt_tokens);
    }

    pub fn ttft_ewma_us(&self) -> Option<u64> {
        self.health.ttft_ewma_us()
    }

    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    pub fn set_draining(&self, draining: bool, why: &str) -> bool {
        self.health.set_draining(&self.spec.name, draining, why)
    }

    pub fn health_view(&self) -> HealthView {
        self.health.view()
    }

    /// Notes a synthetic probe's result (the verdict itself goes through
    /// `record_success`/`record_failure`).
    pub fn set_probe(&self, probe: ProbeView) {
        self.health.set_probe(probe);
    }

    pub(crate) fn renew_lease(&self, ttl: Duration) {
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.lease_expires_ms
            .store(mono_ms().saturating_add(ttl), Ordering::Relaxed);
    }

    pub(crate) fn lease_expired(&self) -> bool {
        self.source == WorkerSource::Registered
            && mono_ms() >= self.lease_expires_ms.load(Ordering::Relaxed)
    }

    /// Milliseconds left on a registered worker's lease.
    pub fn lease_left_ms(&self) -> Option<u64> {
        (self.source == WorkerSource::Registered).then(|| {
            self.lease_expires_ms
                .load(Ordering::Relaxed)
                .saturating_sub(mono_ms())
        })
    }

    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Ordering::Relaxed);
    }

    /// Whether the worker has left the registry (its health loop stops).
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }
}
