//! Applying the load: closed loop (a fixed number of requests in flight) or open loop (a fixed
//! schedule of starts), and gathering the outcomes into a report (and, if asked, a record per
//! request).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{endpoint_url, Arrivals, BenchConfig, Input, Load};
use crate::record::RequestRecord;
use crate::report::{
    Aggregate, BenchReport, Counts, Goodput, LoadReport, TargetReport, Throughput, SCHEMA,
};
use crate::request::{send, Outcome};
use crate::schedule::Schedule;

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("{0}")]
    Config(String),
    #[error("cannot build an HTTP client: {0}")]
    Client(String),
    #[error("request records: {0}")]
    Records(String),
}

/// Called after each request ends, with the counts so far (for a progress bar).
pub type Progress = Arc<dyn Fn(&Counts) + Send + Sync>;

/// What every request shares.
struct Shared {
    client: reqwest::Client,
    url: reqwest::Url,
    api_key: Option<String>,
    body: Value,
    /// The body's max_tokens; a request asking for another gets its own copy of the body.
    max_tokens: u32,
    /// Set when prompts differ per request: each gets a body of its own.
    per_request: Option<Arc<BenchConfig>>,
    stream: bool,
    timeout: Duration,
}

/// Which request an outcome belongs to.
struct Meta {
    id: u64,
    scheduled: Duration,
    max_tokens: u32,
}

impl Shared {
    async fn send(&self, start: Instant, id: u64, max_tokens: u32) -> Outcome {
        let own;
        let body = if let Some(cfg) = &self.per_request {
            own = cfg.body_of(id, max_tokens);
            &own
        } else if max_tokens == self.max_tokens {
            &self.body
        } else {
            let mut b = self.body.clone();
            b["max_tokens"] = json!(max_tokens);
            own = b;
            &own
        };
        send(
            &self.client,
            &self.url,
            self.api_key.as_deref(),
            body,
            self.stream,
            start,
            self.timeout,
        )
        .await
    }
}

/// Sends the warm-up requests (at the run's concurrency, or 8 for an open loop) and forgets
/// them: they open connections and warm caches, and count nowhere. Their prompts are drawn
/// apart from the run's, so that a prefix cache does not serve the run from them.
/// Returns how many failed.
async fn warm_up(shared: &Shared, cfg: &BenchConfig) -> u64 {
    if cfg.warmup == 0 {
        return 0;
    }
    let at_once = match cfg.load {
        Load::Closed { concurrency } => concurrency.max(1) as usize,
        Load::Open { .. } => 8,
    };
    let sends = (0..cfg.warmup).map(|i| {
        let id = u64::MAX - i;
        shared.send(Instant::now(), id, cfg.max_tokens_of(id))
    });
    let failed = futures::stream::iter(sends)
        .buffer_unordered(at_once)
        .filter(|o| std::future::ready(o.error.is_some()))
        .count()
        .await;
    failed as u64
}

/// The run's time zero as an [`Instant`]: now, or the wall-clock time asked for (which may be
/// in the past; one the clock cannot represent is now).
fn time_zero(start_at: Option<SystemTime>) -> Instant {
    let now = Instant::now();
    let Some(at) = start_at else {
        return now;
    };
    match at.duration_since(SystemTime::now()) {
        Ok(ahead) => now.checked_add(ahead),
        Err(e) => now.checked_sub(e.duration()),
    }
    .unwrap_or(now)
}

/// Writes records as they come; the first failure stops the writing and is reported at the
/// end of the run.
struct Records {
    path: String,
    out: Option<BufWriter<File>>,
    error: Option<String>,
}

impl Records {
    fn open(cfg: &BenchConfig) -> Result<Self, LoadgenError> {
        let Some(path) = &cfg.records else {
            return Ok(Self {
                path: String::new(),
                out: None,
                error: None,
            });
        };
        let file = File::create(path)
            .map_err(|e| LoadgenError::Records(format!("cannot write {}: {e}", path.display())))?;
        Ok(Self {
            path: path.display().to_string(),
            out: Some(BufWriter::new(file)),
            error: None,
        })
    }

    fn write(&mut self, rec: &RequestRecord) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let written = serde_json::to_writer(&mut *out, rec)
            .map_err(|e| e.to_string())
            .and_then(|()| out.write_all(b"\n").map_err(|e| e.to_string()));
        if let Err(e) = written {
            self.error = Some(format!("writing {}: {e}", self.path));
            self.out = None;
        }
    }

    fn finish(mut self) -> Result<(), LoadgenError> {
        if let Some(mut out) = self.out.take() {
            if let Err(e) = out.flush() {
                self.error
                    .get_or_insert(format!("writing {}: {e}", self.path));
            }
        }
        match self.error {
            Some(e) => Err(LoadgenError::Records(e)),
            None => Ok(()),
        }
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
        max_tokens: cfg.max_tokens,
        per_request: (!matches!(cfg.input, Input::Fixed(_))).then(|| Arc::new(cfg.clone())),
        stream: cfg.stream,
        timeout: cfg.timeout,
    });
    let mut agg = Aggregate::new(cfg.slo).map_err(LoadgenError::Config)?;
    let mut records = Records::open(cfg)?;
    let warmup_failed = warm_up(&shared, cfg).await;

    let (tx, mut rx) = mpsc::unbounded_channel::<(Meta, Outcome)>();
    let start = time_zero(cfg.start_at);
    let cfg = Arc::new(cfg.clone());
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
                let cfg = Arc::clone(&cfg);
                tokio::spawn(async move {
                    tokio::time::sleep_until(start).await;
                    loop {
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        if id >= limit {
                            break;
                        }
                        let now = Instant::now();
                        if past(now) {
                            break;
                        }
                        let meta = Meta {
                            id,
                            scheduled: now.saturating_duration_since(start),
                            max_tokens: cfg.max_tokens_of(id),
                        };
                        let outcome = shared.send(now, id, meta.max_tokens).await;
                        if tx.send((meta, outcome)).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        Load::Open { rate } => {
            let (shared, tx) = (Arc::clone(&shared), tx.clone());
            let schedule = Schedule::new(cfg.arrivals, rate, cfg.seed);
            let cfg = Arc::clone(&cfg);
            tokio::spawn(async move {
                // A start beyond what the clock can represent (an absurdly low rate) is never
                // due.
                for (id, offset) in (0..limit).zip(schedule) {
                    let Some(due) = start.checked_add(offset) else {
                        break;
                    };
                    if past(due) {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    let meta = Meta {
                        id,
                        scheduled: offset,
                        max_tokens: cfg.max_tokens_of(id),
                    };
                    let (shared, tx) = (Arc::clone(&shared), tx.clone());
                    // Each request runs on its own task, so a slow server delays none of the
                    // later starts; its latencies count from `due`, not from when the task ran.
                    tokio::spawn(async move {
                        let outcome = shared.send(due, meta.id, meta.max_tokens).await;
                        let _ = tx.send((meta, outcome));
                    });
                }
            });
        }
    }
    drop(tx);
    while let Some((meta, outcome)) = rx.recv().await {
        agg.add(&outcome);
        records.write(&RequestRecord::new(
            meta.id,
            meta.scheduled,
            meta.max_tokens,
            &outcome,
        ));
        if let Some(p) = &progress {
            p(&agg.counts);
        }
    }
    records.finish()?;
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
            max_tokens_min: cfg.max_tokens_min,
            arrivals: rate.map(|_| cfg.arrivals.name().to_string()),
            seed: (cfg.max_tokens_min.is_some()
                || cfg.arrivals == Arrivals::Poisson
                || matches!(cfg.input, Input::Words { .. }))
            .then_some(cfg.seed),
            input: Some(cfg.input.describe()),
            warmup: (cfg.warmup > 0).then_some(cfg.warmup),
            warmup_failed: (cfg.warmup > 0).then_some(warmup_failed),
        },
        elapsed_s: elapsed,
        throughput: Throughput {
            requests_per_s: per_s(agg.counts.ok),
            output_tokens_per_s: per_s(agg.tokens.ok_completion),
            total_tokens_per_s: per_s(agg.tokens.ok_prompt + agg.tokens.ok_completion),
        },
        latency_ms: agg.latencies(),
        goodput: cfg.slo.map(|slo| Goodput {
            slo: slo.describe(),
            requests: agg.good,
            requests_per_s: per_s(agg.good),
            fraction: if agg.counts.sent > 0 {
                agg.good as f64 / agg.counts.sent as f64
            } else {
                0.0
            },
        }),
        requests: agg.counts.clone(),
        tokens: agg.tokens.clone(),
    })
}
