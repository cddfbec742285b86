//! Where workers come from: `[[sim_workers]]` (simulated, started by the CLI) and `[fleet]`
//! (self-registered, with leases). `[[workers]]` entries are `switchyard_fleet::WorkerSpec`.

use serde::Deserialize;
use switchyard_fleet::{PromptFormat, RuntimeKind, WorkerSpec};

use crate::sim::SimConfig;

/// The `gpu` of a started simulated worker's `[[workers]]` entry: it says what it is.
pub const SIMULATED_GPU: &str = "simulated";

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
    pub fn validate(&self) -> Result<(), String> {
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
            gpu: SIMULATED_GPU.into(),
            price_per_hour: self.price_per_hour,
            max_concurrency: self.max_concurrency,
            api_key: None,
            prompt_format: PromptFormat::default(),
            tiers: self.tiers.clone(),
            pool: self.pool,
            trust: Default::default(),
        }
    }
}

impl SimWorkerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.runtime, RuntimeKind::Vllm | RuntimeKind::TgiNative) {
            return Err(format!(
                "sim worker '{}': runtime must be vllm or tgi-native",
                self.name
            ));
        }
        self.sim
            .validate()
            .map_err(|e| format!("sim worker '{}': {e}", self.name))
    }
}
