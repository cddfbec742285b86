//! `[routing]`: how a worker is chosen, sticky conversations, the wait queue, canaries and
//! model fallbacks.

use std::collections::BTreeMap;

use serde::Deserialize;

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
    /// then it is shed with 503 and Retry-After, unless it is expected to be served before
    /// `queue_max_slo_fraction`.
    pub queue_slo_fraction: f64,
    /// The longest a request may wait, as a share of its tier's TTFT SLO, when the queue's
    /// pace says it will be served by then (a 503 costs the availability SLO; a slow first
    /// token only the latency percentile). Equal to `queue_slo_fraction`: no extension.
    pub queue_max_slo_fraction: f64,
    /// Requests waiting per model; beyond, the lowest priority is shed.
    pub max_queue: usize,
    /// `[[routing.canary]]`: share of a model's requests for its canary pool.
    pub canary: Vec<CanarySplit>,
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
            queue_max_slo_fraction: 1.0,
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
#[serde(deny_unknown_fields)]
pub struct CanarySplit {
    pub model: String,
    /// Share of the model's requests for the canary pool, 0.0 to 1.0.
    pub weight: f64,
    #[serde(default)]
    pub mode: CanaryMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CanaryMode {
    /// The share is served by the canary.
    #[default]
    Split,
    /// The share is copied to the canary; the client is served by the main pool.
    Shadow,
}

impl RoutingConfig {
    /// Whether routing is adaptive (retries, hedges, resumes, passive ejection) rather than
    /// the naive baseline.
    pub fn adaptive(&self) -> bool {
        self.policy == RoutingPolicy::Adaptive
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.cost_slack.is_finite() && (1.0..=10.0).contains(&self.cost_slack)) {
            return Err("routing.cost_slack must be between 1.0 and 10.0".into());
        }
        let fraction = self.queue_slo_fraction;
        if !(fraction.is_finite() && (0.0..=10.0).contains(&fraction)) {
            return Err("routing.queue_slo_fraction must be between 0 and 10".into());
        }
        let max = self.queue_max_slo_fraction;
        if !(max.is_finite() && (fraction..=10.0).contains(&max)) {
            return Err(
                "routing.queue_max_slo_fraction must be between routing.queue_slo_fraction and 10"
                    .into(),
            );
        }
        for c in &self.canary {
            if !(c.weight.is_finite() && (0.0..=1.0).contains(&c.weight)) {
                return Err(format!(
                    "routing.canary for model '{}': weight must be between 0.0 and 1.0",
                    c.model
                ));
            }
        }
        Ok(())
    }
}
