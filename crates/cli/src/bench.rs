//! `switchyard bench`: load against any OpenAI-compatible endpoint (the gateway, one worker,
//! someone else's API), closed loop at a concurrency or open loop at a rate; TTFT,
//! inter-token latency, TTLT, tokens/s and errors, as a table or `--json` (which
//! `switchyard plan --bench` reads).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use switchyard_loadgen::{
    Arrivals, BenchConfig, BenchReport, Endpoint, Input, LatencySummary, Load, Slo,
};

use crate::admin_client::table;
use crate::error::CliError;
use crate::inputs::thousands;

#[derive(Args)]
pub struct BenchArgs {
    /// Base URL of the server (`/v1/chat/completions` is appended) or the full endpoint URL
    /// [default: http://127.0.0.1:8080].
    #[arg(long, env = crate::gateway_url::URL_ENV)]
    url: Option<String>,
    /// API key, sent as a bearer token.
    #[arg(long, env = "SWITCHYARD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Model to ask for.
    #[arg(long, default_value = "sim-small")]
    model: String,
    /// Closed loop: keep this many requests in flight (default 8).
    #[arg(long, conflicts_with = "rate")]
    concurrency: Option<u32>,
    /// Open loop: start this many requests per second, on schedule, however the server copes.
    #[arg(long, allow_negative_numbers = true)]
    rate: Option<f64>,
    /// Requests to send (default 100 unless --duration is given).
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Stop starting requests after this many seconds.
    #[arg(long, allow_negative_numbers = true)]
    duration: Option<f64>,
    /// max_tokens of each request: N, or LO-HI for a draw per request, uniform in LO..=HI
    /// (from --seed).
    #[arg(long, default_value = "64", value_name = "N|LO-HI")]
    max_tokens: MaxTokens,
    /// Open loop: how starts are spaced: `uniform` (exactly 1/rate apart) or `poisson` (a
    /// Poisson process at the rate, from --seed).
    #[arg(long, value_enum, default_value_t = ArrivalsArg::Uniform)]
    arrivals: ArrivalsArg,
    /// Seed of the Poisson arrivals and the max_tokens draws: the same seed, the same schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Start the run at this wall-clock time (Unix time in ms) instead of now, e.g. to line it
    /// up with other timed events; the schedule and the records count from it.
    #[arg(long, value_name = "UNIX_MS")]
    start_at: Option<u64>,
    /// Write one JSON object per request to FILE (JSON Lines, in order of completion):
    /// scheduled and actual send offsets, TTFT, TTLT, tokens, HTTP status, error kind, lost.
    #[arg(long, value_name = "FILE")]
    records: Option<PathBuf>,
    /// The prompt (a user message, or the completion prompt).
    #[arg(
        long,
        default_value = "Write a short note about rail yards and how trains are sorted."
    )]
    prompt: String,
    /// Prompts of about N words (about N tokens), or LO-HI for a length drawn per request
    /// (from --seed); the report counts the real prompt tokens from usage.
    #[arg(long, value_name = "N|LO-HI", conflicts_with_all = ["prompt", "dataset"])]
    input_tokens: Option<MaxTokens>,
    /// Conversations to send, in turn: JSON Lines of `{"messages": [...]}` (OpenAI chat),
    /// ShareGPT entries (`{"conversations": [{"from", "value"}, ...]}`) or `{"prompt": "..."}`.
    #[arg(long, value_name = "FILE", conflicts_with = "prompt")]
    dataset: Option<PathBuf>,
    /// Send this many requests first and count none of them (connections, caches, kernels).
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// Latency objectives for goodput: the requests that met all of them, e.g.
    /// `ttft=1.5s,tpot=50ms` (also `ttlt=8s`).
    #[arg(long, value_name = "ttft=…,tpot=…,ttlt=…", value_parser = parse_slo)]
    slo: Option<Slo>,
    /// Which API to call.
    #[arg(long, value_enum, default_value_t = Api::Chat)]
    endpoint: Api,
    /// Ask for whole responses instead of streams (TTFT is then the whole response time).
    #[arg(long)]
    no_stream: bool,
    /// Ask the server to ignore end-of-sequence (vLLM/SGLang), so each reply is max_tokens long.
    #[arg(long)]
    ignore_eos: bool,
    /// A request not finished within this many seconds counts as an error.
    #[arg(long, allow_negative_numbers = true, default_value_t = 60.0)]
    timeout: f64,
    /// Print the result as JSON (for `switchyard plan --bench`).
    #[arg(long)]
    json: bool,
    /// Also write the JSON result to this file.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_slo(s: &str) -> Result<Slo, String> {
    Slo::parse(s)
}

#[derive(Clone, Copy, ValueEnum)]
enum ArrivalsArg {
    Uniform,
    Poisson,
}

/// `N` or `LO-HI`.
#[derive(Clone, Copy, Debug)]
struct MaxTokens {
    low: Option<u32>,
    high: u32,
}

impl FromStr for MaxTokens {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let n = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("'{s}' is not a number of tokens or a range LO-HI"))
        };
        match s.split_once('-') {
            Some((lo, hi)) => Ok(Self {
                low: Some(n(lo)?),
                high: n(hi)?,
            }),
            None => Ok(Self {
                low: None,
                high: n(s)?,
            }),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Api {
    Chat,
    Completions,
}

fn seconds(name: &str, v: f64) -> Result<Duration, CliError> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("--{name} must be a number of seconds > 0, got {v}"))
        .map_err(CliError::from)
}

pub async fn run(args: BenchArgs) -> Result<(), CliError> {
    let duration = args.duration.map(|d| seconds("duration", d)).transpose()?;
    let requests = match (args.requests, duration) {
        (None, None) => Some(100),
        (n, _) => n,
    };
    let load = match args.rate {
        Some(rate) => Load::Open { rate },
        None => Load::Closed {
            concurrency: args.concurrency.unwrap_or(8),
        },
    };
    let cfg = BenchConfig {
        url: crate::gateway_url::resolve(
            args.url,
            "SWITCHYARD_BENCH_URL",
            crate::gateway_url::URL_ENV,
        )
        .unwrap_or_else(|| crate::gateway_url::DEFAULT_URL.to_string()),
        api_key: args.api_key.filter(|k| !k.trim().is_empty()),
        model: args.model,
        endpoint: match args.endpoint {
            Api::Chat => Endpoint::Chat,
            Api::Completions => Endpoint::Completions,
        },
        load,
        requests,
        duration,
        input: match (args.dataset, args.input_tokens) {
            (Some(path), _) => switchyard_loadgen::load_dataset(&path)?,
            (None, Some(n)) => Input::Words {
                lo: n.low.unwrap_or(n.high),
                hi: n.high,
            },
            (None, None) => Input::Fixed(args.prompt),
        },
        warmup: args.warmup,
        slo: args.slo,
        max_tokens: args.max_tokens.high,
        max_tokens_min: args.max_tokens.low,
        arrivals: match args.arrivals {
            ArrivalsArg::Uniform => Arrivals::Uniform,
            ArrivalsArg::Poisson => Arrivals::Poisson,
        },
        seed: args.seed,
        start_at: args
            .start_at
            .map(|ms| {
                UNIX_EPOCH
                    .checked_add(Duration::from_millis(ms))
                    .ok_or_else(|| format!("--start-at {ms} is not a time"))
            })
            .transpose()?,
        records: args.records,
        stream: !args.no_stream,
        ignore_eos: args.ignore_eos,
        timeout: seconds("timeout", args.timeout)?,
    };
    if let Some(at) = cfg.start_at {
        // Far ahead is almost certainly a unit mistake (seconds for ms would be in the past).
        if at.duration_since(SystemTime::now()).unwrap_or_default() > Duration::from_secs(86_400) {
            return Err("--start-at is more than a day away (it is Unix time in ms)".into());
        }
    }
    cfg.validate()?;

    // Drawn on stderr, and only when it is a terminal (indicatif hides it otherwise).
    let (bar, fill) = progress_bar(args.quiet, requests, cfg.duration);
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress_bar = bar.clone();
    let progress: switchyard_loadgen::Progress = Arc::new(move |c| {
        let failed = if c.failed > 0 {
            format!(" ({} failed)", c.failed)
        } else {
            String::new()
        };
        match fill {
            Fill::ByRequests => {
                progress_bar.set_position(c.sent);
                progress_bar.set_message(failed);
            }
            Fill::ByTime => progress_bar.set_message(format!("{} requests{failed}", c.sent)),
        }
    });
    // A run bounded by time fills its bar by the clock.
    let clock = (fill == Fill::ByTime).then(|| {
        let (bar, started) = (bar.clone(), std::time::Instant::now());
        tokio::spawn(async move {
            loop {
                bar.set_position(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    });
    let report = switchyard_loadgen::run(&cfg, Some(progress)).await;
    if let Some(clock) = clock {
        clock.abort();
    }
    let report = report.map_err(|e| e.to_string())?;
    bar.finish_and_clear();

    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    if let Some(path) = &args.output {
        std::fs::write(path, format!("{json}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", render(&report));
    }
    // A run in which nothing worked is a failed run, whatever the report says, so that
    // scripts and CI notice.
    if report.requests.ok == 0 {
        let why = errors(&report).map(|e| format!(" ({e})"));
        return Err(format!("no request succeeded{}", why.unwrap_or_default()).into());
    }
    Ok(())
}

/// What fills the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// Requests sent, out of `--requests`.
    ByRequests,
    /// Milliseconds elapsed, out of `--duration`; the requests sent are its message.
    ByTime,
}

/// The bar for a run of `requests` (when given) or `duration`.
fn progress_bar(
    quiet: bool,
    requests: Option<u64>,
    duration: Option<Duration>,
) -> (ProgressBar, Fill) {
    let (bar, fill, template) = match (requests, duration) {
        _ if quiet => (ProgressBar::hidden(), Fill::ByRequests, ""),
        (Some(n), _) => (
            ProgressBar::new(n),
            Fill::ByRequests,
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} requests{msg}",
        ),
        (None, Some(d)) => (
            ProgressBar::new(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            Fill::ByTime,
            "{spinner} [{elapsed_precise}] {bar:40} {percent}% {msg}",
        ),
        (None, None) => (
            ProgressBar::new_spinner(),
            Fill::ByRequests,
            "{spinner} [{elapsed_precise}] {pos} requests{msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    (bar, fill)
}

fn errors(r: &BenchReport) -> Option<String> {
    (!r.requests.errors.is_empty()).then(|| {
        r.requests
            .errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

fn ms(v: f64) -> String {
    format!("{v:.1}")
}

fn latency_row(name: &str, s: &LatencySummary) -> Vec<String> {
    if s.count == 0 {
        return vec![name.into(), "0".into()];
    }
    vec![
        name.into(),
        s.count.to_string(),
        ms(s.mean),
        ms(s.p50),
        ms(s.p90),
        ms(s.p95),
        ms(s.p99),
        ms(s.max),
    ]
}

/// The human-readable report.
pub fn render(r: &BenchReport) -> String {
    let load = match (r.load.concurrency, r.load.rate) {
        (Some(c), _) => format!("closed loop, concurrency {c}"),
        (_, Some(rate)) => match r.load.arrivals.as_deref() {
            Some("poisson") => format!(
                "open loop, {rate} requests/s, Poisson arrivals (seed {})",
                r.load.seed.unwrap_or_default()
            ),
            _ => format!("open loop, {rate} requests/s"),
        },
        _ => r.load.mode.clone(),
    };
    let max_tokens = match r.load.max_tokens_min {
        Some(lo) => format!("{lo}-{}", r.load.max_tokens),
        None => r.load.max_tokens.to_string(),
    };
    let mut out = format!(
        "{} {} to {} ({}, {}, max_tokens {max_tokens})\n",
        r.requests.sent,
        if r.requests.sent == 1 {
            "request"
        } else {
            "requests"
        },
        r.target.url,
        r.target.model,
        if r.target.stream {
            "streamed"
        } else {
            "not streamed"
        },
    );
    if r.target.simulated {
        out.push_str("note        the responses came from a SIMULATED worker (x-switchyard-sim)\n");
    }
    out.push_str(&format!("load        {load}, {:.2} s\n", r.elapsed_s));
    if let Some(input) = &r.load.input {
        let warmup = match (r.load.warmup, r.load.warmup_failed) {
            (Some(n), Some(f)) if f > 0 => format!(", after {n} warm-up requests ({f} failed)"),
            (Some(n), _) => format!(", after {n} warm-up requests"),
            _ => String::new(),
        };
        out.push_str(&format!("input       {input}{warmup}\n"));
    }
    out.push_str(&format!(
        "requests    {} ok, {} failed{}\n",
        r.requests.ok,
        r.requests.failed,
        errors(r).map(|e| format!(" ({e})")).unwrap_or_default()
    ));
    let counted = if r.tokens.counted > 0 {
        format!(", {} without usage counted one per event", r.tokens.counted)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "tokens      {} prompt, {} completion ({} responses with usage{counted})\n",
        thousands(r.tokens.prompt),
        thousands(r.tokens.completion),
        r.tokens.with_usage,
    ));
    out.push_str(&format!(
        "throughput  {:.1} requests/s, {:.1} output tokens/s, {:.1} total tokens/s\n\n",
        r.throughput.requests_per_s,
        r.throughput.output_tokens_per_s,
        r.throughput.total_tokens_per_s,
    ));
    if let Some(g) = &r.goodput {
        // Before the blank line that ends the summary.
        out.pop();
        out.push_str(&format!(
            "goodput     {} requests ({:.1}%) met {}, {:.1} requests/s\n\n",
            g.requests,
            g.fraction * 100.0,
            g.slo,
            g.requests_per_s
        ));
    }
    out.push_str(&table(
        &[
            "LATENCY (ms)",
            "COUNT",
            "MEAN",
            "P50",
            "P90",
            "P95",
            "P99",
            "MAX",
        ],
        &[
            latency_row("TTFT", &r.latency_ms.ttft),
            latency_row("inter-token", &r.latency_ms.itl),
            latency_row("TPOT", &r.latency_ms.tpot),
            latency_row("TTLT", &r.latency_ms.ttlt),
        ],
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_bounded_by_time_fills_its_bar_by_the_clock() {
        let (bar, fill) = progress_bar(false, None, Some(Duration::from_secs(30)));
        assert_eq!(fill, Fill::ByTime);
        assert_eq!(bar.length(), Some(30_000));
        let (bar, fill) = progress_bar(false, Some(500), Some(Duration::from_secs(30)));
        assert_eq!((fill, bar.length()), (Fill::ByRequests, Some(500)));
        let (bar, _) = progress_bar(true, None, Some(Duration::from_secs(30)));
        assert!(bar.is_hidden());
    }
}
