//! `ttft`: how much time to first token (and to the end of the stream) Switchyard adds to a
//! streamed chat completion.
//!
//! It sends `--requests` streamed `POST /v1/chat/completions` to a worker directly and the
//! same number through a gateway in front of that worker, one request at a time, in ABBA order
//! so that drift of a shared, noisy machine falls on both sides alike: `--order pairs`
//! alternates which side goes first in each pair (D G, G D, D G, ...); `--order blocks` runs
//! four blocks (N/2 direct, N/2 gateway, N/2 gateway, N/2 direct) so that each side's
//! requests follow each other on the same connection. For each request it records:
//!
//! - TTFT: from just before the request is sent to the first SSE `data:` frame whose
//!   `choices[].delta.content` (or `choices[].text`) is a non-empty string — a frame carrying
//!   only the assistant role does not count;
//! - total: to the end of the response body (after `data: [DONE]`).
//!
//! It prints p50/p90/p99 per side, the added p50/p99 (gateway minus direct), the median of
//! the per-pair differences (the most drift-proof figure) and how many requests had a TTFT
//! above `--stall-ms`, and with `--json PATH` writes them as JSON. Any failed request aborts
//! the run with an error: a benchmark that quietly drops failures measures the wrong thing.
//!
//! This is part of `bench/gateway/run.sh`; see `bench/gateway/README.md`.
//!
//! One piece: the streamed-TTFT measurement and its report, run as one step of `run.sh`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

#[derive(Parser, Debug)]
#[command(
    name = "ttft",
    about = "Streamed time-to-first-token added by a gateway (direct vs through the gateway)"
)]
struct Args {
    /// Base URL of the worker called directly, e.g. http://127.0.0.1:9001
    #[arg(long)]
    direct: String,
    /// Base URL of the gateway in front of that worker, e.g. http://127.0.0.1:8080
    #[arg(long)]
    gateway: String,
    /// API key sent as `Authorization: Bearer` to both (the worker ignores it).
    #[arg(long, env = "SWITCHYARD_DEV_KEY", hide_env_values = true)]
    key: String,
    /// Model to ask for.
    #[arg(long, default_value = "sim-small")]
    model: String,
    /// Measured requests per side.
    #[arg(long, default_value_t = 300)]
    requests: u32,
    /// Unmeasured requests per side first (connection pools, caches, CPU frequency).
    #[arg(long, default_value_t = 20)]
    warmup: u32,
    /// `max_tokens` of each request: the length of each stream.
    #[arg(long, default_value_t = 8)]
    max_tokens: u32,
    /// How the two sides are interleaved: `pairs` (D G, G D, ...) or `blocks` (N/2 D, N/2 G,
    /// N/2 G, N/2 D: each side's requests follow each other on its connection).
    #[arg(long, value_enum, default_value_t = Order::Pairs)]
    order: Order,
    /// A request whose TTFT is above this many ms counts as stalled.
    #[arg(long, default_value_t = 30)]
    stall_ms: u64,
    /// Idle time before each request, in ms. With 0 (back to back), a request starts within
    /// the client's delayed-ACK time (40 ms on Linux) of the previous one's end, the kernel
    /// treats the connection as interactive and delays its ACKs, and a server that has not
    /// set TCP_NODELAY holds its second small write (the first token after the role frame)
    /// for up to that long: see README.md. 50 ms measures each request from a quiet connection.
    #[arg(long, default_value_t = 50)]
    gap_ms: u64,
    /// A request not finished within this many seconds is a failure.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write every measured request as CSV (pair, side, ttft_us, total_us) to this file.
    #[arg(long)]
    samples: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ttft: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Order {
    Pairs,
    Blocks,
}

impl Order {
    fn name(self) -> &'static str {
        match self {
            Order::Pairs => "pairs",
            Order::Blocks => "blocks",
        }
    }
}

/// The order of the measured requests: `n` per side, ABBA either way.
fn schedule(order: Order, n: u32) -> Vec<Side> {
    use Side::{Direct as D, Gateway as G};
    match order {
        Order::Pairs => (0..n)
            .flat_map(|i| if i % 2 == 0 { [D, G] } else { [G, D] })
            .collect(),
        Order::Blocks => {
            let first = n / 2;
            let second = n - first;
            let block = |side, len| std::iter::repeat_n(side, len as usize);
            block(D, first)
                .chain(block(G, first))
                .chain(block(G, second))
                .chain(block(D, second))
                .collect()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Direct,
    Gateway,
}

struct Sample {
    ttft: Duration,
    total: Duration,
}

/// Latencies of one side, in microseconds.
struct Series {
    ttft: Histogram<u64>,
    total: Histogram<u64>,
}

impl Series {
    fn new() -> Result<Self> {
        Ok(Self {
            ttft: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            total: Histogram::new_with_bounds(1, 600_000_000, 3)?,
        })
    }

    fn record(&mut self, s: &Sample) -> Result<()> {
        self.ttft.record(micros(s.ttft).max(1))?;
        self.total.record(micros(s.total).max(1))?;
        Ok(())
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

async fn run(args: &Args) -> Result<()> {
    if args.requests == 0 {
        return Err("--requests must be at least 1".into());
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4)
        .build()?;
    let body = serde_json::to_vec(&json!({
        "model": args.model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Name three things an inference gateway must never do to a stream."}
        ],
        "max_tokens": args.max_tokens,
        "temperature": 0.2,
        "stream": true
    }))?;
    let url = |side: Side| {
        let base = match side {
            Side::Direct => &args.direct,
            Side::Gateway => &args.gateway,
        };
        format!("{}/v1/chat/completions", base.trim_end_matches('/'))
    };
    let (direct_url, gateway_url) = (url(Side::Direct), url(Side::Gateway));
    let timeout = Duration::from_secs(args.timeout_secs);
    let gap = Duration::from_millis(args.gap_ms);
    let call = |side: Side| {
        let target = match side {
            Side::Direct => &direct_url,
            Side::Gateway => &gateway_url,
        };
        let request = one(&client, target, &args.key, &body);
        async move {
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            tokio::time::timeout(timeout, request)
                .await
                .map_err(|_| format!("{target}: no complete response within {timeout:?}"))?
        }
    };

    for _ in 0..args.warmup {
        call(Side::Direct).await?;
        call(Side::Gateway).await?;
    }

    // The k-th direct request is paired with the k-th gateway request.
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    for side in schedule(args.order, args.requests) {
        let sample = call(side).await?;
        samples[side as usize].push(sample);
    }
    let [d_samples, g_samples] = &samples;
    let mut direct = Series::new()?;
    let mut gateway = Series::new()?;
    let mut pair_ttft: Vec<i64> = Vec::with_capacity(d_samples.len());
    let mut pair_total: Vec<i64> = Vec::with_capacity(d_samples.len());
    let mut csv = String::from("pair,side,ttft_us,total_us\n");
    for (i, (d, g)) in d_samples.iter().zip(g_samples).enumerate() {
        direct.record(d)?;
        gateway.record(g)?;
        for (side, s) in [("direct", d), ("gateway", g)] {
            csv.push_str(&format!(
                "{i},{side},{},{}\n",
                micros(s.ttft),
                micros(s.total)
            ));
        }
        pair_ttft.push(signed_micros(g.ttft) - signed_micros(d.ttft));
        pair_total.push(signed_micros(g.total) - signed_micros(d.total));
    }
    let stall = Duration::from_millis(args.stall_ms);
    let stalled = |v: &[Sample]| v.iter().filter(|s| s.ttft > stall).count();
    let stalls = [stalled(d_samples), stalled(g_samples)];

    let report = report(
        args,
        &direct,
        &gateway,
        &mut pair_ttft,
        &mut pair_total,
        stalls,
    );
    print_table(&report);
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.samples {
        std::fs::write(path, csv).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn signed_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// One streamed request: time to the first content frame and to the end of the body.
async fn one(client: &reqwest::Client, url: &str, key: &str, body: &[u8]) -> Result<Sample> {
    let started = Instant::now();
    let response = client
        .post(url)
        .bearer_auth(key)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(format!("{url}: HTTP {status}: {text}").into());
    }
    let mut stream = response.bytes_stream();
    let mut parser = SseData::default();
    let mut events = Vec::new();
    let mut ttft = None;
    let mut done = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("{url}: stream broke: {e}"))?;
        parser.feed(&chunk, &mut events)?;
        for data in events.drain(..) {
            if data.trim() == "[DONE]" {
                done = true;
            } else if done {
                return Err(format!("{url}: data after [DONE]: {data}").into());
            } else if ttft.is_none() && carries_content(&data).map_err(|e| format!("{url}: {e}"))? {
                ttft = Some(started.elapsed());
            }
        }
    }
    let total = started.elapsed();
    if !done {
        return Err(format!("{url}: the stream ended without [DONE]").into());
    }
    let ttft = ttft.ok_or_else(|| format!("{url}: the stream carried no content"))?;
    Ok(Sample { ttft, total })
}

/// Whether a chunk carries generated text (not only the role, not only usage); an error
/// object in the stream is an error.
fn carries_content(data: &str) -> Result<bool> {
    let chunk: Value =
        serde_json::from_str(data).map_err(|e| format!("invalid chunk ({e}): {data}"))?;
    if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
        return Err(format!("error event in the stream: {err}").into());
    }
    let choices = chunk.get("choices").and_then(Value::as_array);
    Ok(choices.is_some_and(|cs| {
        cs.iter().any(|c| {
            c.pointer("/delta/content")
                .or_else(|| c.get("text"))
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty())
        })
    }))
}

/// The `data:` payloads of an event stream, event by event, from chunks split anywhere.
#[derive(Default)]
struct SseData {
    buf: Vec<u8>,
    data: String,
    has_data: bool,
}

impl SseData {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<String>) -> Result<()> {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let mut line = &self.buf[start..end];
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            let line = std::str::from_utf8(line)?;
            if line.is_empty() {
                if self.has_data {
                    out.push(std::mem::take(&mut self.data));
                    self.has_data = false;
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
                self.has_data = true;
            }
            // Comments (`: ping`) and other fields (`event:`, `id:`) carry no tokens.
            start = end + 1;
        }
        self.buf.drain(..start);
        Ok(())
    }
}

fn stats(h: &Histogram<u64>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "mean": (h.mean() * 10.0).round() / 10.0,
        "max": h.max(),
    })
}

fn median(v: &mut [i64]) -> i64 {
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

fn added(g: &Histogram<u64>, d: &Histogram<u64>, q: f64) -> i64 {
    let g = i64::try_from(g.value_at_quantile(q)).unwrap_or(i64::MAX);
    let d = i64::try_from(d.value_at_quantile(q)).unwrap_or(i64::MAX);
    g - d
}

fn report(
    args: &Args,
    direct: &Series,
    gateway: &Series,
    pair_ttft: &mut [i64],
    pair_total: &mut [i64],
    [direct_stalls, gateway_stalls]: [usize; 2],
) -> Value {
    json!({
        "unit": "microseconds",
        "requests_per_side": args.requests,
        "warmup_per_side": args.warmup,
        "max_tokens": args.max_tokens,
        "gap_ms": args.gap_ms,
        "order": args.order.name(),
        "stall_ms": args.stall_ms,
        "direct": { "ttft": stats(&direct.ttft), "total": stats(&direct.total), "stalled": direct_stalls },
        "gateway": { "ttft": stats(&gateway.ttft), "total": stats(&gateway.total), "stalled": gateway_stalls },
        "added": {
            "ttft_p50": added(&gateway.ttft, &direct.ttft, 0.50),
            "ttft_p99": added(&gateway.ttft, &direct.ttft, 0.99),
            "ttft_paired_median": median(pair_ttft),
            "total_p50": added(&gateway.total, &direct.total, 0.50),
            "total_p99": added(&gateway.total, &direct.total, 0.99),
            "total_paired_median": median(pair_total),
        }
    })
}

fn print_table(r: &Value) {
    let ms = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "-".to_string(), |us| format!("{:.3}", us / 1000.0))
    };
    println!(
        "streamed chat, {} requests per side ({} order), max_tokens {}, {} ms idle before each (ms)",
        r["requests_per_side"], r["order"], r["max_tokens"], r["gap_ms"]
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>12}",
        "",
        "TTFT p50",
        "TTFT p90",
        "TTFT p99",
        "total p50",
        "total p99",
        format!("TTFT>{}ms", r["stall_ms"])
    );
    for side in ["direct", "gateway"] {
        let s = &r[side];
        println!(
            "{:<10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>12}",
            side,
            ms(&s["ttft"]["p50"]),
            ms(&s["ttft"]["p90"]),
            ms(&s["ttft"]["p99"]),
            ms(&s["total"]["p50"]),
            ms(&s["total"]["p99"]),
            s["stalled"],
        );
    }
    let a = &r["added"];
    println!(
        "added by the gateway: TTFT p50 {} ms, p99 {} ms, paired median {} ms; total p50 {} ms, paired median {} ms",
        ms(&a["ttft_p50"]),
        ms(&a["ttft_p99"]),
        ms(&a["ttft_paired_median"]),
        ms(&a["total_p50"]),
        ms(&a["total_paired_median"]),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let stream = b"data: {\"a\":1}\r\n\r\n: ping\n\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let mut p = SseData::default();
            let mut out = Vec::new();
            p.feed(&stream[..cut], &mut out).unwrap();
            p.feed(&stream[cut..], &mut out).unwrap();
            assert_eq!(
                out,
                vec!["{\"a\":1}".to_string(), "[DONE]".to_string()],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn only_frames_with_text_carry_content() {
        let role = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
        let token = r#"{"choices":[{"index":0,"delta":{"content":" yard"}}]}"#;
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        assert!(!carries_content(role).unwrap());
        assert!(carries_content(token).unwrap());
        assert!(!carries_content(usage).unwrap());
        assert!(carries_content(r#"{"error":{"message":"boom"}}"#).is_err());
    }

    #[test]
    fn schedules_are_abba_with_n_per_side() {
        use Side::{Direct as D, Gateway as G};
        assert_eq!(schedule(Order::Pairs, 3), vec![D, G, G, D, D, G]);
        assert_eq!(schedule(Order::Blocks, 3), vec![D, G, G, G, D, D]);
        for order in [Order::Pairs, Order::Blocks] {
            let s = schedule(order, 301);
            assert_eq!(s.iter().filter(|x| **x == D).count(), 301);
            assert_eq!(s.iter().filter(|x| **x == G).count(), 301);
        }
    }

    #[test]
    fn paired_median() {
        assert_eq!(median(&mut [5, -1, 3]), 3);
        assert_eq!(median(&mut [4, 1, 3, 2]), 2);
    }
}
