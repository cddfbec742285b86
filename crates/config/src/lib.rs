//! Switchyard's configuration, parsed in one leaf: TOML → one section type per feature
//! (`deny_unknown_fields`, so a misspelt key is named in the error) → [`Config::validate`],
//! which checks what types cannot. Features take their own section; nothing here imports a
//! feature. Nothing here is logged whole, because worker entries may carry secrets.

pub mod admin;
pub mod alerts;
pub mod content_log;
pub mod filters;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod probes;
pub mod routing;
pub mod server;
pub mod sim;
pub mod state;
pub mod tiers;
pub mod tls;
pub mod upstream;
pub mod workers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use switchyard_fleet::{HealthConfig, OutlierConfig, RuntimeKind, WorkerSpec};
use switchyard_metering::Limits;

pub use admin::{AdminConfig, AdminListen};
pub use alerts::AlertsConfig;
pub use content_log::ContentLogConfig;
pub use filters::{FiltersConfig, ModerationPolicy, PatternLists};
pub use limits::{LimitsConfig, RedisDownPolicy};
pub use metrics::MetricsConfig;
pub use models::ModelRequirements;
pub use probes::ProbeConfig;
pub use routing::{CanaryMode, CanarySplit, RoutingConfig, RoutingPolicy};
pub use server::ServerConfig;
pub use sim::{FaultConfig, SimConfig, UsageInStream};
pub use state::{DevTenantConfig, StateBackend, StateConfig};
pub use tiers::default_tiers;
pub use tls::TlsFiles;
pub use upstream::UpstreamConfig;
pub use workers::{FleetConfig, SimWorkerConfig, SIMULATED_GPU};

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
    /// `[admin]`: the control plane's own listener (admin and fleet registration APIs).
    #[serde(default)]
    pub admin: AdminConfig,
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
    pub probes: ProbeConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
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
    pub metrics: MetricsConfig,
    /// `[alerts]`: SLO burn-rate, probe and rotation alerts, their webhook, incidents.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// `[content_log]`: the sweep of expired opt-in content logs.
    #[serde(default)]
    pub content_log: ContentLogConfig,
    /// `[filters]`: input and output blocklists (abuse controls).
    #[serde(default)]
    pub filters: FiltersConfig,
    /// `[models.NAME]`: what a registering worker must be to serve a model.
    #[serde(default)]
    pub models: BTreeMap<String, ModelRequirements>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, |_| {})
    }

    /// [`Config::load`] with `overrides` (from the environment, the command line) applied
    /// before validation: a file may then leave to the environment what it depends on, such
    /// as `[state] schema` with the Postgres URL in `SWITCHYARD_DATABASE_URL`.
    pub fn load_with(
        path: &Path,
        overrides: impl FnOnce(&mut Config),
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config: Config =
            toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        overrides(&mut config);
        config.validate()?;
        Ok(config)
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
            admin: AdminConfig::default(),
            upstream: UpstreamConfig::default(),
            health: HealthConfig::default(),
            outlier: OutlierConfig::default(),
            routing: RoutingConfig::default(),
            probes: ProbeConfig::default(),
            state: StateConfig::default(),
            limits: LimitsConfig::default(),
            tiers: default_tiers(),
            dev_tenant: DevTenantConfig::default(),
            workers: Vec::new(),
            fleet: None,
            metrics: Default::default(),
            alerts: Default::default(),
            content_log: Default::default(),
            filters: Default::default(),
            models: Default::default(),
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
        self.server.listen_addr().map_err(ConfigError::Invalid)
    }

    /// Each section checks its own values; what spans sections (the dev tenant's tier, a fleet
    /// with no worker at all, worker names unique across static and simulated) is checked here.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sections: [(&str, Result<(), String>); 16] = [
            ("models", models::validate(&self.models)),
            ("filters", self.filters.validate(&self.tiers)),
            ("server", self.server.validate()),
            ("admin", self.admin.validate(self.server.listen_addr().ok())),
            ("upstream", self.upstream.validate()),
            ("health", self.health.validate()),
            ("outlier", self.outlier.validate()),
            ("probes", self.probes.validate()),
            ("metrics", self.metrics.validate()),
            ("alerts", self.alerts.validate()),
            ("content_log", self.content_log.validate()),
            ("routing", self.routing.validate()),
            ("state", self.state.validate()),
            ("limits", self.limits.validate()),
            ("tiers", tiers::validate(&self.tiers)),
            ("fleet", self.fleet_settings().validate()),
        ];
        for (_, checked) in sections {
            checked.map_err(ConfigError::Invalid)?;
        }
        let invalid = |m: String| Err(ConfigError::Invalid(m));
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
        for w in &self.workers {
            w.validate().map_err(ConfigError::Invalid)?;
            if let Some(why) = self.upstream.plaintext_hops.refuses(&w.name, &w.url) {
                return invalid(why);
            }
            if w.trust == switchyard_fleet::HopTrust::Fleet && self.upstream.tls_worker_ca.is_none()
            {
                return invalid(format!(
                    "worker '{}' has trust = \"fleet\": set upstream.tls_worker_ca, the CA its certificate is from",
                    w.name
                ));
            }
        }
        for s in &self.sim_workers {
            s.validate().map_err(ConfigError::Invalid)?;
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
            ),            (
                WORKER.replace("127.0.0.1", "10.0.0.5"),
                "plaintext_hops = \"loopback\"",
            ),
            (
                format!("[upstream]\nplaintext_hops = \"none\"\n{WORKER}"),
                "plain-HTTP hops to 'http://127.0.0.1:8000'",
            ),
            (
                format!(
                    "{}trust = \"fleet\"\n",
                    WORKER.replace("http://127.0.0.1", "https://127.0.0.1")
                ),
                "set upstream.tls_worker_ca",
            ),
            (
                format!("[upstream]\ntls_worker_ca = \"ca.pem\"\n{WORKER}"),
                "tls_worker_ca needs upstream.tls_client_cert",
            ),
            (
                format!("[upstream]\ntls_client_cert = \"gw.pem\"\ntls_client_key = \"gw.key\"\n{WORKER}"),
                "set upstream.tls_worker_ca too",
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
    use switchyard_fleet::PromptFormat;
    use switchyard_metering::CapPolicy;

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
