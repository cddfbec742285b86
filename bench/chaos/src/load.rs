//! Open-loop streamed load with one record per request.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use switchyard_protocol::{SseItem, SseParser};
use tokio::time::Instant;

#[derive(Args)]
pub struct LoadArgs {
    /// Base URL of the gateway (`/v1/chat/completions` is appended).
    #[arg(long)]
    url: String,
    /// API key, sent as a bearer token.
    #[arg(long, env = "CHAOS_API_KEY", hide_env_values = true)]
    api_key: String,
    #[arg(long, default_value = "sim-small")]
    model: String,
    /// Mean arrival rate, requests per second (Poisson arrivals).
    #[arg(long)]
    rate: f64,
    /// Seconds during which requests are started.
    #[arg(long)]
    duration: f64,
    /// The phase's time zero, Unix time in ms; the first arrival is due at it. Default: now.
    #[arg(long)]
    t0_ms: Option<u64>,
    /// Each request's max_tokens is drawn uniformly from min_tokens..=max_tokens.
    #[arg(long, default_value_t = 64)]
    min_tokens: u32,
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// A request not finished this many seconds after its scheduled start is abandoned.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Seed of the arrival schedule and of the max_tokens draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the records go (JSON lines).
    #[arg(long)]
    out: PathBuf,
    /// Label printed with progress lines.
    #[arg(long, default_value = "load")]
    label: String,
}

/// What happened to one request. Times in ms; `start_ms` from the phase's time zero, the
/// others from the request's scheduled start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    pub start_ms: f64,
    /// How late the request actually left, after its scheduled start.
    pub late_ms: f64,
    pub max_tokens: u32,
    pub ok: bool,
    /// `None` on success; else the kind: `http_<status>`, `lost_timeout` (no response at all
    /// within the timeout), `lost_transport` (the connection failed before any response),
    /// `timeout_first_token`, `timeout_mid_stream`, `stream_cut`, `stream_error` (an error
    /// event), `stream_incomplete` (ended without `[DONE]`), `bad_event`, `not_a_stream`.
    pub error: Option<String>,
    pub http_status: Option<u16>,
    /// The response's status line and headers arrived.
    pub got_response: bool,
    pub ttft_ms: Option<f64>,
    pub ttlt_ms: Option<f64>,
    /// Events that carried text (one per token for these workers).
    pub tokens: u32,
    /// `completion_tokens` of the final usage chunk, if one came.
    pub usage_completion_tokens: Option<u64>,
}

impl Record {
    /// No HTTP response at all: what a client experiences as a hung or vanished request.
    pub fn lost(&self) -> bool {
        !self.ok && !self.got_response
    }
}

#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Arrival offsets (from time zero) and max_tokens of every request, from the seed alone.
fn schedule(args: &LoadArgs) -> Vec<(Duration, u32)> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut t = 0.0f64;
    let mut out = Vec::new();
    let (lo, hi) = (
        args.min_tokens.min(args.max_tokens),
        args.max_tokens.max(args.min_tokens),
    );
    loop {
        let mt = rng.random_range(lo..=hi);
        if t >= args.duration {
            return out;
        }
        out.push((Duration::from_secs_f64(t), mt));
        // Exponential inter-arrival gaps: a Poisson process at `rate`.
        let u: f64 = rng.random();
        t += -(1.0 - u).ln() / args.rate;
    }
}

pub async fn run(args: LoadArgs) -> Result<ExitCode, String> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err(format!("--rate must be > 0, got {}", args.rate));
    }
    if !(args.duration.is_finite() && args.duration > 0.0) {
        return Err(format!("--duration must be > 0, got {}", args.duration));
    }
    let timeout = Duration::try_from_secs_f64(args.timeout).map_err(|_| {
        format!(
            "--timeout must be a number of seconds, got {}",
            args.timeout
        )
    })?;
    let url = format!(
        "{}/v1/chat/completions",
        args.url.trim_end_matches('/').trim_end_matches("/v1")
    );
    let url = reqwest::Url::parse(&url).map_err(|e| format!("bad --url {url}: {e}"))?;
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4096)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;

    // Time zero as an Instant: the phase's wall-clock start, given by the script.
    let now_ms = epoch_ms();
    let now = Instant::now();
    let t0 = match args.t0_ms {
        Some(t0) if t0 >= now_ms => now + Duration::from_millis(t0 - now_ms),
        Some(t0) => now
            .checked_sub(Duration::from_millis(now_ms - t0))
            .unwrap_or(now),
        None => now,
    };
    let plan = schedule(&args);
    let planned = plan.len();
    eprintln!(
        "[{}] {} requests planned over {} s at {} req/s (Poisson, seed {}), max_tokens {}..={}",
        args.label, planned, args.duration, args.rate, args.seed, args.min_tokens, args.max_tokens
    );

    let progress = Arc::new(Progress::default());
    let ticker = {
        let progress = progress.clone();
        let label = args.label.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(t0 + Duration::from_secs(10), Duration::from_secs(10));
            loop {
                tick.tick().await;
                eprintln!(
                    "[{label}] t={:>4.0} s  sent {}  finished {}  failed {}",
                    t0.elapsed().as_secs_f64(),
                    progress.sent.load(Ordering::Relaxed),
                    progress.done.load(Ordering::Relaxed),
                    progress.failed.load(Ordering::Relaxed),
                );
            }
        })
    };

    let api_key: Arc<str> = Arc::from(args.api_key.as_str());
    let mut tasks = Vec::with_capacity(planned);
    for (id, (offset, max_tokens)) in (0u64..).zip(plan) {
        let due = t0 + offset;
        tokio::time::sleep_until(due).await;
        let body = json!({
            "model": args.model,
            "messages": [{"role": "user", "content": format!("Request {id}: write a short note about how rail yards sort freight cars.")}],
            "max_tokens": max_tokens,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        let (client, url, key, progress) = (
            client.clone(),
            url.clone(),
            api_key.clone(),
            progress.clone(),
        );
        progress.sent.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            let mut rec = Record {
                id,
                start_ms: ms(offset),
                late_ms: ms(Instant::now().saturating_duration_since(due)),
                max_tokens,
                ..Record::default()
            };
            let work = send(&client, url, &key, &body, due, &mut rec);
            if tokio::time::timeout_at(due + timeout, work).await.is_err() {
                rec.error = Some(
                    if !rec.got_response {
                        "lost_timeout"
                    } else if rec.ttft_ms.is_none() {
                        "timeout_first_token"
                    } else {
                        "timeout_mid_stream"
                    }
                    .into(),
                );
            }
            rec.ok = rec.error.is_none();
            if rec.ok {
                rec.ttlt_ms = Some(ms(Instant::now().saturating_duration_since(due)));
            } else {
                progress.failed.fetch_add(1, Ordering::Relaxed);
            }
            progress.done.fetch_add(1, Ordering::Relaxed);
            rec
        }));
    }
    let mut records = Vec::with_capacity(tasks.len());
    for t in tasks {
        records.push(t.await.map_err(|e| format!("a request task failed: {e}"))?);
    }
    ticker.abort();

    let mut file = std::fs::File::create(&args.out)
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    for r in &records {
        let line = serde_json::to_string(r).map_err(|e| e.to_string())?;
        writeln!(file, "{line}").map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    }
    let failed = records.iter().filter(|r| !r.ok).count();
    eprintln!(
        "[{}] done: {} sent, {} failed; records in {}",
        args.label,
        records.len(),
        failed,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The text of a streamed chat chunk, if it carries any.
fn text_of(v: &Value) -> Option<&str> {
    v.get("choices")?
        .as_array()?
        .first()?
        .get("delta")?
        .get("content")?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Sends one request and fills `rec` as it goes, so that a timeout (the caller drops this
/// future) leaves what was seen so far.
async fn send(
    client: &reqwest::Client,
    url: reqwest::Url,
    key: &str,
    body: &Value,
    due: Instant,
    rec: &mut Record,
) {
    let resp = match client.post(url).bearer_auth(key).json(body).send().await {
        Ok(r) => r,
        Err(e) => {
            rec.error = Some(if e.is_timeout() {
                "lost_timeout".into()
            } else {
                "lost_transport".into()
            });
            return;
        }
    };
    rec.got_response = true;
    let status = resp.status();
    rec.http_status = Some(status.as_u16());
    if !status.is_success() {
        rec.error = Some(format!("http_{}", status.as_u16()));
        let _ = resp.bytes().await;
        return;
    }
    let is_sse = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("text/event-stream"));
    if !is_sse {
        rec.error = Some("not_a_stream".into());
        let _ = resp.bytes().await;
        return;
    }
    let mut parser = SseParser::new();
    let mut items = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut done = false;
    loop {
        let chunk = stream.next().await;
        let arrived = Instant::now();
        match &chunk {
            Some(Ok(bytes)) => parser.feed(bytes, &mut items),
            Some(Err(_)) => {
                rec.error = Some("stream_cut".into());
                return;
            }
            None => parser.finish(&mut items),
        }
        for item in items.drain(..) {
            let SseItem::Event { data, .. } = item else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                rec.error = Some("bad_event".into());
                return;
            };
            if v.get("error").is_some() {
                rec.error = Some("stream_error".into());
                return;
            }
            if text_of(&v).is_some() {
                if rec.ttft_ms.is_none() {
                    rec.ttft_ms = Some(ms(arrived.saturating_duration_since(due)));
                }
                rec.tokens += 1;
            }
            if let Some(n) = v
                .get("usage")
                .and_then(|u| u.get("completion_tokens"))
                .and_then(Value::as_u64)
            {
                rec.usage_completion_tokens = Some(n);
            }
        }
        if chunk.is_none() {
            break;
        }
    }
    if !done {
        rec.error = Some("stream_incomplete".into());
    }
}
