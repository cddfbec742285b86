//! Configuration: TOML → raw structs (`deny_unknown_fields`, so a misspelt key is named in the
//! error) → [`Config::validate`], which checks what types cannot. Nothing here is logged
//! whole, because worker entries may carry secrets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use switchyard_fleet::{HealthConfig, OutlierConfig, PromptFormat, RuntimeKind, WorkerSpec};
use switchyard_metering::money::{valid_price, MAX_PRICE_USD, MAX_TIER_MAX_TOKENS};
use switchyard_metering::{CapPolicy, Limits};
use switchyard_sim::SimConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub health: HealthConfig,
    /// Passive outlier detection: ejection, backoff, probation.
    #[serde(default)]
    pub outlier: OutlierConfig,
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Synthetic probes: a known prompt to every worker, checked against TTFT/TTLT limits.
    #[serde(default)]
    pub probes: crate::synthetic::ProbeConfig,
    #[serde(default)]
    pub state: StateConfig,
    /// Tiers by name. Defining `[tiers.X]` replaces the built-in hobby/pro/business set.
    #[serde(default = "default_tiers")]
    pub tiers: BTreeMap<String, Limits>,
    /// The tenant the dev key printed at start belongs to (created if missing).
    #[serde(default)]
    pub dev_tenant: DevTenantConfig,
    /// Real workers: vLLM, SGLang, TGI, llama.cpp servers.
    #[serde(default)]
    pub workers: Vec<WorkerSpec>,
    /// Simulated workers the gateway starts in-process on loopback (demo, tests, benchmarks).
    #[serde(default)]
    pub sim_workers: Vec<SimWorkerConfig>,
    /// Workers that register themselves (`switchyard agent`). The section's presence also says
    /// that a config without static workers is intended: they will join over the API.
    #[serde(default)]
    pub fleet: Option<FleetConfig>,
    /// `[metrics]`: access to `/metrics` and scraping of workers' own metrics.
    #[serde(default)]
    pub metrics: crate::metrics::config::MetricsConfig,
    /// `[alerts]`: SLO burn-rate, probe and rotation alerts, their webhook, incidents.
    #[serde(default)]
    pub alerts: crate::alerting::config::AlertsConfig,
    /// `[content_log]`: the sweep of expired opt-in content logs.
    #[serde(default)]
    pub content_log: crate::content_log::config::ContentLogConfig,
}

/// Leases of self-registered workers. The registration API itself is on only when the
/// gateway is given a fleet token (`SWITCHYARD_FLEET_TOKEN`), never from this file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// A registered worker that has not renewed its lease for this long leaves the fleet.
    pub lease_ms: u64,
    /// How often agents are told to renew; several heartbeats fit in one lease, so one lost
    /// heartbeat does not cost a worker its place.
    pub heartbeat_ms: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            lease_ms: 15_000,
            heartbeat_ms: 5_000,
        }
    }
}

impl FleetConfig {
    fn validate(&self) -> Result<(), String> {
        if self.heartbeat_ms == 0 {
            return Err("fleet.heartbeat_ms must be positive".into());
        }
        if self.heartbeat_ms >= self.lease_ms {
            return Err(format!(
                "fleet.heartbeat_ms ({}) must be less than fleet.lease_ms ({}): a worker must be able to renew before its lease runs out",
                self.heartbeat_ms, self.lease_ms
            ));
        }
        Ok(())
    }
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// SQLite file with tenants, keys and the usage ledger; ":memory:" for a throwaway one.
    pub path: PathBuf,
    /// Usage records waiting to be written; past this, settling waits in background tasks.
    pub ledger_queue: usize,
    /// Records per ledger transaction.
    pub ledger_batch: usize,
    /// At shutdown, how long the ledger may take to store what is queued; what is still
    /// unwritten then is printed to stderr (one JSON line per record) and the process exits.
    pub ledger_flush_ms: u64,
    /// How often a running request's progress (its worker, the tokens relayed) is written, so
    /// that a crash bills what was relayed up to then.
    pub checkpoint_ms: u64,
    /// How often this process records that it is alive (the SLA's observed minutes); a process
    /// silent for three of these is dead, and its open requests are settled as interrupted.
    pub heartbeat_ms: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("switchyard.db"),
            ledger_queue: 65_536,
            ledger_batch: 512,
            ledger_flush_ms: 10_000,
            checkpoint_ms: 2_000,
            heartbeat_ms: 15_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevTenantConfig {
    pub id: String,
    pub tier: String,
}

impl Default for DevTenantConfig {
    fn default() -> Self {
        Self {
            id: "dev".into(),
            tier: "pro".into(),
        }
    }
}

/// The source document's three tiers: Hobby (small model, shared, 99.5%, p95 TTFT 2.5 s,
/// $1.99/1M), Pro (99.9%, 1.5 s, $3.20/1M), Business (dedicated, 99.95%, volume pricing).
pub fn default_tiers() -> BTreeMap<String, Limits> {
    let hobby = Limits {
        max_tokens: 1024,
        max_prompt_tokens: 8192,
        cap_policy: CapPolicy::Clamp,
        requests_per_minute: 60,
        tokens_per_minute: 100_000,
        max_concurrent: 4,
        monthly_tokens: 10_000_000,
        price_input_per_million: 1.99,
        price_output_per_million: 1.99,
        slo_availability_bp: 9950,
        slo_ttft_p95_ms: 2500,
        default_max_tokens: 256,
        ..Limits::default()
    };
    let pro = Limits {
        max_tokens: 4096,
        max_prompt_tokens: 32_768,
        requests_per_minute: 600,
        tokens_per_minute: 1_000_000,
        max_concurrent: 32,
        monthly_tokens: 0,
        price_input_per_million: 3.20,
        price_output_per_million: 3.20,
        slo_availability_bp: 9990,
        slo_ttft_p95_ms: 1500,
        hedge_after_ms: 1000,
        default_max_tokens: 512,
        ..Limits::default()
    };
    let business = Limits {
        max_tokens: 8192,
        max_prompt_tokens: 131_072,
        requests_per_minute: 3000,
        tokens_per_minute: 5_000_000,
        max_concurrent: 128,
        monthly_tokens: 0,
        price_input_per_million: 2.50,
        price_output_per_million: 2.50,
        slo_availability_bp: 9995,
        slo_ttft_p95_ms: 1200,
        hedge_after_ms: 700,
        default_max_tokens: 1024,
        ..Limits::default()
    };
    BTreeMap::from([
        ("hobby".to_string(), hobby),
        ("pro".to_string(), pro),
        ("business".to_string(), business),
    ])
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    pub policy: RoutingPolicy,
    /// This gateway's region: workers there are preferred.
    pub region: Option<String>,
    /// Expected waits within this factor of the best count as equal, and the cheaper worker
    /// wins (1.0 = latency only).
    pub cost_slack: f64,
    /// A conversation's turns go to the same worker while it stays eligible; forgotten after
    /// this long idle. 0 = off.
    pub sticky_idle_s: u64,
    pub sticky_capacity: u64,
    /// A saturated fleet: a request may wait for a worker this share of its tier's TTFT SLO,
    /// then it is shed with 503 and Retry-After.
    pub queue_slo_fraction: f64,
    /// Requests waiting per model; beyond, the lowest priority is shed.
    pub max_queue: usize,
    /// `[[routing.canary]]`: share of a model's requests for its canary pool.
    pub canary: Vec<crate::route::canary::CanarySplit>,
    /// `[routing.fallback]`: model → models that may answer for it when it is down or
    /// saturated, for tiers with `fallback = true`.
    pub fallback: BTreeMap<String, Vec<String>>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            policy: RoutingPolicy::default(),
            region: None,
            cost_slack: 1.25,
            sticky_idle_s: 600,
            sticky_capacity: 100_000,
            queue_slo_fraction: 0.5,
            max_queue: 256,
            canary: Vec::new(),
            fallback: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingPolicy {
    /// Expected wait ((outstanding + 1) × TTFT EWMA), other providers first on retry, hedging,
    /// passive ejection: what an SLA needs.
    #[default]
    Adaptive,
    /// A naive load balancer, for comparison only (`bench/chaos`): next worker in turn among
    /// those passing active health checks; no retry, no hedge, no passive ejection.
    RoundRobin,
}

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
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimWorkerConfig {
    pub name: String,
    #[serde(default = "sim_label")]
    pub provider: String,
    #[serde(default = "sim_label")]
    pub region: String,
    #[serde(default)]
    pub price_per_hour: f64,
    /// `vllm` (OpenAI API) or `tgi-native`: the sim speaks both.
    #[serde(default = "sim_runtime")]
    pub runtime: RuntimeKind,
    #[serde(default)]
    pub tiers: Vec<String>,
    #[serde(default)]
    pub pool: switchyard_fleet::Pool,
    #[serde(default = "sim_concurrency")]
    pub max_concurrency: u32,
    #[serde(default)]
    pub sim: SimConfig,
}

fn sim_label() -> String {
    "sim".into()
}

/// A simulated worker's KV cache, not this limit, is what bounds it; the limit only keeps the
/// gateway's queue in charge under a load test.
fn sim_concurrency() -> u32 {
    32
}

fn sim_runtime() -> RuntimeKind {
    RuntimeKind::Vllm
}

impl SimWorkerConfig {
    /// The worker entry for a sim listening at `url`.
    pub fn to_worker_spec(&self, url: String) -> WorkerSpec {
        WorkerSpec {
            name: self.name.clone(),
            url,
            runtime: self.runtime,
            model: self.sim.model.clone(),
            upstream_model: None,
            provider: self.provider.clone(),
            region: self.region.clone(),
            gpu: "simulated".into(),
            price_per_hour: self.price_per_hour,
            max_concurrency: self.max_concurrency,
            api_key: None,
            prompt_format: PromptFormat::default(),
            tiers: self.tiers.clone(),
            pool: self.pool,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text)
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// What `switchyard serve` runs with no config file: a local fleet of simulated workers,
    /// three for `sim-small` on two simulated providers and one slower `sim-large`.
    pub fn embedded_default() -> Self {
        let sim = |name: &str, provider: &str, model: &str, itl_ms: f64| SimWorkerConfig {
            name: name.into(),
            provider: provider.into(),
            region: "local".into(),
            price_per_hour: 0.0,
            runtime: RuntimeKind::Vllm,
            tiers: Vec::new(),
            pool: Default::default(),
            max_concurrency: 8,
            sim: SimConfig {
                model: model.into(),
                decode_ms_per_token: itl_ms,
                ..SimConfig::default()
            },
        };
        Self {
            server: ServerConfig::default(),
            upstream: UpstreamConfig::default(),
            health: HealthConfig::default(),
            outlier: OutlierConfig::default(),
            routing: RoutingConfig::default(),
            probes: crate::synthetic::ProbeConfig::default(),
            state: StateConfig::default(),
            tiers: default_tiers(),
            dev_tenant: DevTenantConfig::default(),
            workers: Vec::new(),
            fleet: None,
            metrics: Default::default(),
            alerts: Default::default(),
            content_log: Default::default(),
            sim_workers: vec![
                sim("sim-a-1", "sim-provider-a", "sim-small", 10.0),
                sim("sim-a-2", "sim-provider-a", "sim-small", 10.0),
                sim("sim-b-1", "sim-provider-b", "sim-small", 12.0),
                sim("sim-b-2", "sim-provider-b", "sim-large", 25.0),
            ],
        }
    }

    /// Lease settings for registered workers (the defaults when there is no `[fleet]`).
    pub fn fleet_settings(&self) -> FleetConfig {
        self.fleet.clone().unwrap_or_default()
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|e| {
            ConfigError::Invalid(format!(
                "server.listen '{}' is not an address like 127.0.0.1:8080: {e}",
                self.server.listen
            ))
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        self.listen_addr()?;
        if self.server.max_body_bytes < 1024 {
            return invalid("server.max_body_bytes must be at least 1024".into());
        }
        let u = &self.upstream;
        for (key, v) in [
            ("connect_timeout_ms", u.connect_timeout_ms),
            ("first_token_timeout_ms", u.first_token_timeout_ms),
            ("stall_timeout_ms", u.stall_timeout_ms),
            ("request_timeout_ms", u.request_timeout_ms),
        ] {
            if v == 0 {
                return invalid(format!("upstream.{key} must be positive"));
            }
        }
        if !(1..=10).contains(&u.max_attempts) {
            return invalid("upstream.max_attempts must be between 1 and 10".into());
        }
        if u.eject_after_failures == 0 {
            return invalid("upstream.eject_after_failures must be at least 1".into());
        }
        self.health.validate().map_err(ConfigError::Invalid)?;
        self.outlier.validate().map_err(ConfigError::Invalid)?;
        self.probes.validate().map_err(ConfigError::Invalid)?;
        self.metrics.validate().map_err(ConfigError::Invalid)?;
        self.alerts.validate().map_err(ConfigError::Invalid)?;
        self.content_log.validate().map_err(ConfigError::Invalid)?;
        let r = &self.routing;
        if !(r.cost_slack.is_finite() && (1.0..=10.0).contains(&r.cost_slack)) {
            return invalid("routing.cost_slack must be between 1.0 and 10.0".into());
        }
        if !(r.queue_slo_fraction.is_finite() && (0.0..=10.0).contains(&r.queue_slo_fraction)) {
            return invalid("routing.queue_slo_fraction must be between 0 and 10".into());
        }
        for c in &r.canary {
            if !(c.weight.is_finite() && (0.0..=1.0).contains(&c.weight)) {
                return invalid(format!(
                    "routing.canary for model '{}': weight must be between 0.0 and 1.0",
                    c.model
                ));
            }
        }
        if !(u.hedge_budget_ratio.is_finite() && (0.0..=1.0).contains(&u.hedge_budget_ratio)) {
            return invalid("upstream.hedge_budget_ratio must be between 0 and 1".into());
        }
        if !(u.retry_budget_ratio.is_finite() && (0.0..=10.0).contains(&u.retry_budget_ratio)) {
            return invalid("upstream.retry_budget_ratio must be between 0 and 10".into());
        }
        if self.state.ledger_queue == 0 || self.state.ledger_batch == 0 {
            return invalid("state.ledger_queue and state.ledger_batch must be positive".into());
        }
        if self.state.checkpoint_ms < 100 {
            return invalid("state.checkpoint_ms must be at least 100".into());
        }
        // A minute must get a heartbeat even if one write fails.
        if !(100..=20_000).contains(&self.state.heartbeat_ms) {
            return invalid("state.heartbeat_ms must be between 100 and 20000".into());
        }
        if self.tiers.is_empty() {
            return invalid("at least one tier must be defined".into());
        }
        for (name, t) in &self.tiers {
            let prices = [t.price_input_per_million, t.price_output_per_million];
            if !prices.into_iter().all(valid_price) {
                return invalid(format!(
                    "tiers.{name}: prices must be numbers from 0 to {MAX_PRICE_USD} (USD per 1M tokens)"
                ));
            }
            if t.max_tokens > MAX_TIER_MAX_TOKENS {
                return invalid(format!(
                    "tiers.{name}: max_tokens must be at most {MAX_TIER_MAX_TOKENS}"
                ));
            }
            if t.max_tokens == 0 || t.default_max_tokens == 0 || t.max_concurrent == 0 {
                return invalid(format!(
                    "tiers.{name}: max_tokens, default_max_tokens and max_concurrent must be at least 1"
                ));
            }
        }
        if !self.tiers.contains_key(&self.dev_tenant.tier) {
            return invalid(format!(
                "dev_tenant.tier '{}' is not a defined tier ({})",
                self.dev_tenant.tier,
                self.tiers.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if self.workers.is_empty() && self.sim_workers.is_empty() && self.fleet.is_none() {
            return invalid(
                "no workers: add [[workers]] or [[sim_workers]] entries, or a [fleet] section for workers that register themselves"
                    .into(),
            );
        }
        self.fleet_settings()
            .validate()
            .map_err(ConfigError::Invalid)?;
        for w in &self.workers {
            w.validate().map_err(ConfigError::Invalid)?;
        }
        for s in &self.sim_workers {
            if !matches!(s.runtime, RuntimeKind::Vllm | RuntimeKind::TgiNative) {
                return invalid(format!(
                    "sim worker '{}': runtime must be vllm or tgi-native",
                    s.name
                ));
            }
        }
        let mut names: Vec<&str> = self
            .workers
            .iter()
            .map(|w| w.name.as_str())
            .chain(self.sim_workers.iter().map(|s| s.name.as_str()))
            .collect();
        names.sort_unstable();
        if let Some(dup) = names.windows(2).find(|p| p[0] == p[1]) {
            return invalid(format!("duplicate worker name '{}'", dup[0]));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const WORKER: &str = r#"
        [[workers]]
        name = "w1"
        url = "http://127.0.0.1:8000"
        runtime = "llamacpp"
        model = "gemma"
    "#;

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let c = Config::from_toml(WORKER).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.workers[0].runtime, RuntimeKind::Llamacpp);
        assert_eq!(c.upstream.max_attempts, 3);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml(&format!("{WORKER}\nrutime = 1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rutime"), "{err}");
        let err = Config::from_toml(&WORKER.replace("model =", "modle ="))
            .unwrap_err()
            .to_string();
        assert!(err.contains("modle"), "{err}");
        let err = Config::from_toml(&format!("[upstream]\nmax_attempt = 2\n{WORKER}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_attempt"), "{err}");
    }

    #[test]
    fn bad_values_are_explained() {
        let cases = [
            (WORKER.replace("llamacpp", "llama"), "llama"),
            (WORKER.replace("http://127.0.0.1:8000", "not a url"), "w1"),
            (
                format!("[server]\nlisten = \"nowhere\"\n{WORKER}"),
                "server.listen",
            ),
            (
                format!("[upstream]\nmax_attempts = 0\n{WORKER}"),
                "max_attempts",
            ),
            (format!("{WORKER}{WORKER}"), "duplicate worker name 'w1'"),
            (String::new(), "no workers"),
            (
                "[fleet]\nlease_ms = 5000\nheartbeat_ms = 5000".into(),
                "fleet.heartbeat_ms (5000) must be less than fleet.lease_ms (5000)",
            ),
        ];
        for (text, needle) in cases {
            let err = Config::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
        }
    }

    #[test]
    fn a_fleet_section_alone_is_a_valid_config() {
        let c = Config::from_toml("[fleet]\n").unwrap();
        assert!(c.workers.is_empty());
        assert_eq!(c.fleet_settings().lease_ms, 15_000);
    }

    #[test]
    fn the_embedded_default_is_valid() {
        Config::embedded_default().validate().unwrap();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod readme_tests {
    use super::*;

    /// The configuration shown in the README parses and validates as it is written.
    #[test]
    fn the_readme_example_is_a_valid_config() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("```toml\n").unwrap() + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let config = Config::from_toml(&readme[start..end]).unwrap();
        assert_eq!(config.workers[0].runtime, RuntimeKind::Llamacpp);
        assert_eq!(config.workers[0].prompt_format, PromptFormat::Gemma);
        assert_eq!(config.tiers["pro"].cap_policy, CapPolicy::Clamp);
    }
}
