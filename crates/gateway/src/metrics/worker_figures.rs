//! The latest figures read from workers' own `/metrics` (KV-cache use, running and waiting
//! requests), as the control plane's scraper publishes them, rendered on the gateway's
//! `/metrics`. Swapped in whole per round and read only when `/metrics` is scraped.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::exposition::{gauge, sample};
use super::{WORKER_KV_CACHE, WORKER_RUNNING, WORKER_SCRAPE_UP, WORKER_WAITING};

/// What the gateway re-exports of one worker's runtime metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeGauges {
    /// 0 to 1.
    pub kv_cache_usage: Option<f64>,
    pub running: Option<f64>,
    pub waiting: Option<f64>,
}

/// One worker's figures from the last round.
#[derive(Debug, Clone)]
pub struct Scraped {
    pub worker: String,
    pub model: String,
    /// `None`: the scrape failed.
    pub gauges: Option<RuntimeGauges>,
}

/// The latest round, shared by the scraper (writer) and `/metrics` (reader).
#[derive(Default)]
pub struct WorkerMetrics {
    latest: ArcSwap<Vec<Scraped>>,
}

impl WorkerMetrics {
    /// Swaps in a whole round (the scraper, every interval).
    pub fn publish(&self, round: Vec<Scraped>) {
        self.latest.store(Arc::new(round));
    }

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
