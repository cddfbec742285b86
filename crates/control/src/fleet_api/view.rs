//! What the admin and registration APIs show of workers, as typed responses. The runtime's
//! `api_key` is never part of them.

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_fleet::{HopTrust, RuntimeKind, Worker, WorkerSource, WorkerState};

use crate::admin::format_rfc3339;

/// One worker: what it is, its state and why, and its figures.
#[derive(Debug, Serialize)]
pub struct WorkerView {
    pub name: String,
    pub model: String,
    pub upstream_model: Option<String>,
    pub url: String,
    /// How the worker's certificate is checked: `public` or `fleet` (see
    /// `switchyard_fleet::hop`).
    pub trust: HopTrust,
    pub runtime: RuntimeKind,
    pub provider: String,
    pub region: String,
    pub gpu: String,
    pub price_per_hour: f64,
    pub max_concurrency: u32,
    pub source: WorkerSource,
    pub state: WorkerState,
    pub reason: String,
    pub since: String,
    pub outstanding: u32,
    pub ttft_ewma_ms: Option<f64>,
    pub ttft_samples: u32,
    pub ejections: u32,
    pub ejected_for_ms: Option<u64>,
    pub consecutive_failures: u32,
    pub usage_rejected: Option<UsageRejectedView>,
    pub lease_left_ms: Option<u64>,
    pub labels: BTreeMap<String, String>,
}

/// The worker's usage reports that were refused: how many, and the last one.
#[derive(Debug, Serialize)]
pub struct UsageRejectedView {
    pub count: u64,
    pub last_at: String,
    pub last_claim: String,
}

impl WorkerView {
    pub fn of(w: &Worker) -> Self {
        let health = w.health_view();
        let spec = &w.spec;
        Self {
            name: spec.name.clone(),
            model: spec.model.clone(),
            upstream_model: spec.upstream_model.clone(),
            url: spec.url.clone(),
            trust: spec.trust,
            runtime: spec.runtime,
            provider: spec.provider.clone(),
            region: spec.region.clone(),
            gpu: spec.gpu.clone(),
            price_per_hour: spec.price_per_hour,
            max_concurrency: spec.max_concurrency,
            source: w.source,
            state: health.state,
            reason: health.reason,
            since: format_rfc3339(health.since_unix_ms),
            outstanding: w.outstanding(),
            ttft_ewma_ms: health.ttft_ewma_ms,
            ttft_samples: health.ttft_samples,
            ejections: health.ejections,
            ejected_for_ms: health.ejected_for_ms,
            consecutive_failures: health.consecutive_failures,
            usage_rejected: health.usage_rejected.map(|r| UsageRejectedView {
                count: r.count,
                last_at: format_rfc3339(r.at_unix_ms),
                last_claim: r.claim,
            }),
            lease_left_ms: w.lease_left_ms(),
            labels: w.labels.clone(),
        }
    }
}

/// A registration accepted or renewed: the lease and how often to renew it.
#[derive(Debug, Serialize)]
pub struct RegisteredView {
    pub name: String,
    pub new: bool,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub state: WorkerState,
}

/// A lease renewed by a heartbeat.
#[derive(Debug, Serialize)]
pub struct LeaseView {
    pub name: String,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    pub state: WorkerState,
}

/// A worker draining at its agent's request, and what it still serves.
#[derive(Debug, Serialize)]
pub struct DrainingView {
    pub name: String,
    pub state: WorkerState,
    pub outstanding: u32,
}

/// A worker that left the fleet, and what it was still serving.
#[derive(Debug, Serialize)]
pub struct RemovedView {
    pub name: String,
    pub removed: bool,
    pub outstanding: u32,
}
