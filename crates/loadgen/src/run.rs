//! Applying the load: closed loop (a fixed number of requests in flight) or open loop (a fixed
//! schedule of starts), and gathering the outcomes into a report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{endpoint_url, BenchConfig, Load};
use crate::report::{Aggregate, BenchReport, Counts, LoadReport, TargetReport, Throughput, SCHEMA};
use crate::request::{send, Outcome};

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("{0}")]
    Config(String),
    #[error("cannot build an HTTP client: {0}")]
    Client(String),
}

/// Called after each request ends, with the counts so far (for a progress bar).
pub type Progress = Arc<dyn Fn(&Counts) + Send + Sync>;

/// What every request shares.
struct Shared {
    client: reqwest::Client,
    url: reqwest::Url,
    api_key: Option<String>,
    body: Value,
    stream: bool,
    timeout: Duration,
}

impl Shared {
    async fn send(&self, start: Instant) -> Outcome {
        send(
            &self.client,
            &self.url,
            self.api_key.as_deref(),
            &self.body,
            self.stream,
            start,
            self.timeout,
        )
        .await
    }
}

/// Loopback is reached directly: an HTTP(S)_PROXY meant for the outside world must not carry
/// a benchmark of a server on this machine.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Runs the benchmark to the end and reports.
pub async fn run(
    cfg: &BenchConfig,
    progress: Option<Progress>,
) -> Result<BenchReport, LoadgenError> {
    cfg.validate().map_err(LoadgenError::Config)?;
    let url = endpoint_url(&cfg.url, cfg.endpoint).map_err(LoadgenError::Config)?;
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5).min(cfg.timeout))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX);
    if is_loopback(&url) {
        builder = builder.no_proxy();
    }
    let client = builder
        .build()
        .map_err(|e| LoadgenError::Client(e.to_string()))?;
    let shared = Arc::new(Shared {
        client,
        url: url.clone(),
        api_key: cfg.api_key.clone(),
        body: cfg.body(),
        stream: cfg.stream,
        timeout: cfg.timeout,
    });
    let mut agg = Aggregate::new().map_err(LoadgenError::Config)?;

    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let start = Instant::now();
    // A duration too long for the clock to represent is no deadline at all.
    let deadline = cfg.duration.and_then(|d| start.checked_add(d));
    let limit = cfg.requests.unwrap_or(u64::MAX);
    let past = move |t: Instant| deadline.is_some_and(|d| t >= d);
    match cfg.load {
        Load::Closed { concurrency } => {
            let next = Arc::new(AtomicU64::new(0));
            // No more workers than requests: the rest would only exit at once.
            for _ in 0..u64::from(concurrency).min(limit) {
                let (shared, next, tx) = (Arc::clone(&shared), Arc::clone(&next), tx.clone());
                tokio::spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < limit {
                        let now = Instant::now();
                        if past(now) {
                            break;
                        }
                        let outcome = shared.send(now).await;
                        if tx.send(outcome).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        Load::Open { rate } => {
            let (shared, tx) = (Arc::clone(&shared), tx.clone());
            tokio::spawn(async move {
                for i in 0..limit {
                    // The i-th start is due at i / rate from the start, computed afresh each
                    // time so that rounding does not accumulate. A start beyond what the clock
                    // can represent (an absurdly low rate) is never due.
                    let Some(due) = Duration::try_from_secs_f64(i as f64 / rate)
                        .ok()
                        .and_then(|offset| start.checked_add(offset))
                    else {
                        break;
                    };
                    if past(due) {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    let (shared, tx) = (Arc::clone(&shared), tx.clone());
                    // Each request runs on its own task, so a slow server delays none of the
                    // later starts; its latencies count from `due`, not from when the task ran.
                    tokio::spawn(async move {
                        let _ = tx.send(shared.send(due).await);
                    });
                }
            });
        }
    }
    drop(tx);
    while let Some(outcome) = rx.recv().await {
        agg.add(&outcome);
        if let Some(p) = &progress {
            p(&agg.counts);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let per_s = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let (mode, concurrency, rate) = match cfg.load {
        Load::Closed { concurrency } => ("closed", Some(concurrency), None),
        Load::Open { rate } => ("open", None, Some(rate)),
    };
    Ok(BenchReport {
        schema: SCHEMA.into(),
        target: TargetReport {
            url: url.to_string(),
            model: cfg.model.clone(),
            endpoint: cfg.endpoint.name().into(),
            stream: cfg.stream,
            simulated: agg.simulated,
        },
        load: LoadReport {
            mode: mode.into(),
            concurrency,
            rate,
            requests: cfg.requests,
            duration_s: cfg.duration.map(|d| d.as_secs_f64()),
            max_tokens: cfg.max_tokens,
        },
        elapsed_s: elapsed,
        throughput: Throughput {
            requests_per_s: per_s(agg.counts.ok),
            output_tokens_per_s: per_s(agg.tokens.ok_completion),
            total_tokens_per_s: per_s(agg.tokens.ok_prompt + agg.tokens.ok_completion),
        },
        latency_ms: agg.latencies(),
        requests: agg.counts.clone(),
        tokens: agg.tokens.clone(),
    })
}
