//! Active health checks: each worker's health path is polled; a worker enters rotation after
//! `healthy_after` passes in a row and leaves it after `unhealthy_after` failures in a row.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::registry::Fleet;
use crate::worker::Worker;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub healthy_after: u32,
    pub unhealthy_after: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval_ms: 5_000,
            timeout_ms: 2_000,
            healthy_after: 1,
            unhealthy_after: 2,
        }
    }
}

impl HealthConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_ms == 0 || self.timeout_ms == 0 {
            return Err("health.interval_ms and health.timeout_ms must be positive".into());
        }
        if self.healthy_after == 0 || self.unhealthy_after == 0 {
            return Err(
                "health.healthy_after and health.unhealthy_after must be at least 1".into(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    Pass,
    /// Why: a status, or the transport error with its causes (a refused certificate says
    /// which worker it names).
    Fail(String),
    TimedOut,
    /// The gateway could not make the check (out of file descriptors): it says nothing about
    /// the worker.
    NotMade,
}

/// Probes go through each worker's own client (see [`crate::hop`]): a fleet hop's check
/// proves the same certificate an inference call would.
pub struct HealthChecker {
    fleet: Arc<Fleet>,
    config: HealthConfig,
}

impl HealthChecker {
    pub fn new(fleet: Arc<Fleet>, config: HealthConfig) -> Self {
        Self { fleet, config }
    }

    /// Checks every worker once, concurrently; a pass marks it healthy at once. Called before
    /// the gateway starts listening so that the first request finds the ready workers.
    pub async fn check_all_once(&self) {
        let workers = self.fleet.workers();
        let checks = workers.iter().map(|w| async move {
            match self.probe(w).await {
                Probe::NotMade => {}
                verdict => w.set_healthy(verdict == Probe::Pass),
            }
        });
        futures::future::join_all(checks).await;
    }

    /// Runs the checks forever (until the task is aborted), one loop per worker so that one
    /// hung worker cannot delay the verdict on the others. Workers that join later get their
    /// loop within one interval; a removed worker's loop ends.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let this = Arc::new(self);
        tokio::spawn(async move {
            let mut watched: HashSet<usize> = HashSet::new();
            let mut ticker =
                tokio::time::interval(Duration::from_millis(this.config.interval_ms.min(1_000)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let workers = this.fleet.workers();
                // Keyed by address: a re-registered worker is a new `Worker` and gets a new loop.
                watched.retain(|key| workers.iter().any(|w| Arc::as_ptr(w) as usize == *key));
                for w in workers {
                    if watched.insert(Arc::as_ptr(&w) as usize) {
                        let this = this.clone();
                        tokio::spawn(async move { this.watch(w).await });
                    }
                }
            }
        })
    }

    async fn watch(&self, worker: Arc<Worker>) {
        let mut passes = 0u32;
        let mut failures = 0u32;
        let mut ticker = tokio::time::interval(Duration::from_millis(self.config.interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if worker.is_removed() {
                return;
            }
            let verdict = self.probe(&worker).await;
            // A probe that times out while the worker is serving our own requests says it is
            // busy, not dead (llama-cpp-python answers nothing while it generates); live traffic
            // already reports real failures, so such a probe counts neither way.
            if verdict == Probe::NotMade || (verdict == Probe::TimedOut && worker.outstanding() > 0)
            {
                continue;
            }
            if verdict == Probe::Pass {
                passes += 1;
                failures = 0;
                if passes >= self.config.healthy_after {
                    worker.set_healthy(true);
                }
            } else {
                failures += 1;
                passes = 0;
                if failures >= self.config.unhealthy_after {
                    let last = match &verdict {
                        Probe::Fail(why) => why.as_str(),
                        _ => "timed out",
                    };
                    worker.health_failed(&format!(
                        "{failures} health checks failed in a row (last: {last})"
                    ));
                }
            }
        }
    }

    async fn probe(&self, worker: &Worker) -> Probe {
        let url = worker.spec.endpoint(worker.spec.runtime.health_path());
        let mut req = worker
            .hop()
            .http
            .get(&url)
            .timeout(Duration::from_millis(self.config.timeout_ms));
        if let Some(key) = &worker.spec.api_key {
            req = req.bearer_auth(key);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => Probe::Pass,
            Ok(resp) => {
                tracing::debug!(worker = %worker.spec.name, status = %resp.status(), "health check failed");
                Probe::Fail(format!("HTTP {}", resp.status().as_u16()))
            }
            Err(e) if e.is_timeout() => Probe::TimedOut,
            // Out of descriptors here, not trouble there: no verdict either way.
            Err(e) if crate::hop::local_exhaustion(&e) => {
                tracing::warn!(worker = %worker.spec.name, error = %e, "health check not made: the gateway is out of file descriptors or socket memory");
                Probe::NotMade
            }
            Err(e) => {
                let why = with_causes(&e);
                tracing::debug!(worker = %worker.spec.name, error = %why, "health check failed");
                Probe::Fail(why)
            }
        }
    }
}

/// An error and its causes, which is where a refused certificate says why.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
