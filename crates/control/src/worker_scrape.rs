//! Reads the runtimes' own `/metrics` (vLLM, SGLang, TGI) in the background and re-exports a
//! few gauges per worker on the gateway's `/metrics`: KV-cache use, running and waiting
//! requests. One round every `[metrics] worker_scrape_interval_ms`, every worker at once, each
//! bounded by `worker_scrape_timeout_ms` and a body size cap, so a hung or huge worker costs one
//! missing sample, never a stuck loop. Nothing here is on the request path: the latest round is
//! swapped in whole and read only when `/metrics` is scraped.

mod parse;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use switchyard_fleet::{Fleet, Worker};
use switchyard_gateway::upstream::adapter::for_runtime;
use tokio::task::JoinHandle;

use switchyard_gateway::metrics::worker_figures::{RuntimeGauges, Scraped, WorkerMetrics};

pub use parse::parse;

/// vLLM with many models and histograms answers a few hundred KB; past this something is wrong.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Starts the scrape loop; `interval` zero means off (the task ends at once).
pub fn spawn(
    fleet: Arc<Fleet>,
    store: Arc<WorkerMetrics>,
    interval: Duration,
    timeout: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if interval.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let round = scrape_all(&fleet, timeout).await;
            store.publish(round);
        }
    })
}

async fn scrape_all(fleet: &Fleet, timeout: Duration) -> Vec<Scraped> {
    let workers: Vec<Arc<Worker>> = fleet
        .workers()
        .into_iter()
        .filter(|w| for_runtime(w.spec.runtime).capabilities().exposes_metrics)
        .collect();
    let scrapes = workers.iter().map(|w| async move {
        let gauges = match tokio::time::timeout(timeout, scrape(w)).await {
            Ok(Ok(g)) => Some(g),
            Ok(Err(e)) => {
                tracing::debug!(worker = %w.spec.name, error = %e, "worker metrics scrape failed");
                None
            }
            Err(_) => {
                tracing::debug!(worker = %w.spec.name, "worker metrics scrape timed out");
                None
            }
        };
        Scraped {
            worker: w.spec.name.clone(),
            model: w.spec.model.clone(),
            gauges,
        }
    });
    futures::future::join_all(scrapes).await
}

/// Through the worker's own client: a fleet hop's certificate is checked as for inference.
async fn scrape(worker: &Worker) -> Result<RuntimeGauges, String> {
    let mut request = worker.hop().http.get(worker.spec.endpoint("/metrics"));
    if let Some(key) = &worker.spec.api_key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("body over {MAX_BODY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(parse(&String::from_utf8_lossy(&body)))
}
