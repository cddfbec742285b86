//! Reads the runtimes' own `/metrics` (vLLM, SGLang, TGI) in the background and re-exports a
//! few gauges per worker on the gateway's `/metrics`: KV-cache use, running and waiting
//! requests. One round every `[metrics] worker_scrape_interval_ms`, every worker at once, each
//! bounded by `worker_scrape_timeout_ms` and a body size cap, so a hung or huge worker costs one
//! missing sample, never a stuck loop. Nothing here is on the request path: the latest round is
//! swapped in whole and read only when `/metrics` is scraped.

mod parse;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use switchyard_fleet::{Fleet, RuntimeKind, Worker};
use tokio::task::JoinHandle;

use crate::metrics::exposition::{gauge, sample};
use crate::metrics::{WORKER_KV_CACHE, WORKER_RUNNING, WORKER_SCRAPE_UP, WORKER_WAITING};
pub use parse::{parse, RuntimeGauges};

/// vLLM with many models and histograms answers a few hundred KB; past this something is wrong.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// One worker's figures from the last round.
#[derive(Debug, Clone)]
struct Scraped {
    worker: String,
    model: String,
    /// `None`: the scrape failed.
    gauges: Option<RuntimeGauges>,
}

/// The latest round, shared by the scraper (writer) and `/metrics` (reader).
#[derive(Default)]
pub struct WorkerMetrics {
    latest: ArcSwap<Vec<Scraped>>,
}

impl WorkerMetrics {
    pub fn render(&self, out: &mut String) {
        let latest = self.latest.load();
        gauge(
            out,
            WORKER_SCRAPE_UP,
            "Whether the last scrape of the worker's own /metrics succeeded.",
        );
        for s in latest.iter() {
            let up = f64::from(u8::from(s.gauges.is_some()));
            sample(out, WORKER_SCRAPE_UP, &labels(s), up);
        }
        let families: [(&str, &str, Pick); 3] = [
            (
                WORKER_KV_CACHE,
                "Share of the worker's KV cache in use (0 to 1), as its runtime reports it.",
                |g| g.kv_cache_usage,
            ),
            (
                WORKER_RUNNING,
                "Requests the worker's runtime is running, as it reports them.",
                |g| g.running,
            ),
            (
                WORKER_WAITING,
                "Requests waiting in the worker's runtime queue, as it reports them.",
                |g| g.waiting,
            ),
        ];
        for (name, help, pick) in families {
            gauge(out, name, help);
            for s in latest.iter() {
                if let Some(v) = s.gauges.as_ref().and_then(pick) {
                    sample(out, name, &labels(s), v);
                }
            }
        }
    }
}

/// Which figure of a worker's gauges a family shows.
type Pick = fn(&RuntimeGauges) -> Option<f64>;

fn labels(s: &Scraped) -> [(&'static str, &str); 2] {
    [("worker", s.worker.as_str()), ("model", s.model.as_str())]
}

/// The runtimes known to serve Prometheus metrics on `/metrics`.
fn exposes_metrics(runtime: RuntimeKind) -> bool {
    matches!(
        runtime,
        RuntimeKind::Vllm | RuntimeKind::Sglang | RuntimeKind::Tgi | RuntimeKind::TgiNative
    )
}

/// Starts the scrape loop; `interval` zero means off (the task ends at once).
pub fn spawn(
    fleet: Arc<Fleet>,
    client: reqwest::Client,
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
            let round = scrape_all(&fleet, &client, timeout).await;
            store.latest.store(Arc::new(round));
        }
    })
}

async fn scrape_all(fleet: &Fleet, client: &reqwest::Client, timeout: Duration) -> Vec<Scraped> {
    let workers: Vec<Arc<Worker>> = fleet
        .workers()
        .into_iter()
        .filter(|w| exposes_metrics(w.spec.runtime))
        .collect();
    let scrapes = workers.iter().map(|w| async move {
        let gauges = match tokio::time::timeout(timeout, scrape(client, w)).await {
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

async fn scrape(client: &reqwest::Client, worker: &Worker) -> Result<RuntimeGauges, String> {
    let mut request = client.get(worker.spec.endpoint("/metrics"));
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
