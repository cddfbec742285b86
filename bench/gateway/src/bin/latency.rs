//! `latency`: the latency each proxy hop adds at one request in flight, measured in rounds.
//!
//! wrk at c=1 measures each target in its own 5 s window, and on a shared VM the cost of
//! waking an idle core (the larger part of a 100-300 µs request here) drifts between windows
//! by more than the hops differ: the same code has read +22 µs and +288 µs against "direct".
//! This tool sends the same non-streamed request to every target in turn, one at a time, in
//! rounds (the order rotates each round so that no target always follows the same one), and
//! reports for each target the median of its per-round difference to the first target (the
//! baseline): drift falls on both sides of every difference and cancels.
//!
//! Each target has its own kept-alive connection. Any non-200 answer or transport error aborts
//! the run: a benchmark that drops failures measures the wrong thing.
//!
//! This is part of `bench/gateway/run.sh`; see `bench/gateway/README.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

#[derive(Parser, Debug)]
#[command(
    name = "latency",
    about = "Latency added by proxy hops at concurrency 1, as paired differences to a baseline"
)]
struct Args {
    /// A target as NAME=URL (the full URL to POST to); repeat. The first is the baseline.
    #[arg(long = "target", value_parser = parse_target, required = true)]
    targets: Vec<(String, String)>,
    /// The request body (JSON) to POST to every target.
    #[arg(long)]
    body_file: PathBuf,
    /// Sent as `Authorization: Bearer` to every target.
    #[arg(long, env = "BENCH_KEY", hide_env_values = true)]
    key: String,
    /// Measured rounds (one request per target each).
    #[arg(long, default_value_t = 2000)]
    rounds: u32,
    /// Unmeasured rounds first (connections, caches).
    #[arg(long, default_value_t = 200)]
    warmup: u32,
    /// A request not answered within this many seconds is a failure.
    #[arg(long, default_value_t = 5)]
    timeout_secs: u64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_target(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, url)) if !name.is_empty() && url.starts_with("http") => {
            Ok((name.to_string(), url.to_string()))
        }
        _ => Err(format!("expected NAME=http://..., got {s:?}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latency: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<()> {
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let body = std::fs::read(&args.body_file)?;
    serde_json::from_slice::<Value>(&body)
        .map_err(|e| format!("{} is not JSON: {e}", args.body_file.display()))?;
    // One client per target: its own connection, never shared with another target's requests.
    let clients = args
        .targets
        .iter()
        .map(|_| {
            reqwest::Client::builder()
                .no_proxy()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(args.timeout_secs))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = args.targets.len();
    // samples[t][round], in microseconds.
    let mut samples = vec![Vec::with_capacity(args.rounds as usize); n];
    for round in 0..args.warmup + args.rounds {
        for k in 0..n {
            let t = (k + round as usize) % n;
            let (name, url) = &args.targets[t];
            let started = Instant::now();
            let response = clients[t]
                .post(url)
                .header("content-type", "application/json")
                .bearer_auth(&args.key)
                .body(body.clone())
                .send()
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            let status = response.status();
            let answer = response.bytes().await.map_err(|e| format!("{name}: {e}"))?;
            let took = started.elapsed();
            if status != reqwest::StatusCode::OK {
                return Err(format!(
                    "{name} answered HTTP {status}: {}",
                    String::from_utf8_lossy(&answer)
                )
                .into());
            }
            if round >= args.warmup {
                samples[t].push(took.as_secs_f64() * 1e6);
            }
        }
    }
    let report = Report::of(&args.targets, &samples);
    print!("{}", report.text(args.rounds));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report.json(args.rounds))?)?;
    }
    Ok(())
}

struct TargetFigures {
    name: String,
    p50: f64,
    p90: f64,
    p99: f64,
    /// Median of (this target - baseline) over the rounds; 0 for the baseline itself.
    added_paired_median: f64,
}

struct Report {
    targets: Vec<TargetFigures>,
}

impl Report {
    fn of(targets: &[(String, String)], samples: &[Vec<f64>]) -> Self {
        let baseline = &samples[0];
        let targets = targets
            .iter()
            .zip(samples)
            .map(|((name, _), s)| {
                let diffs: Vec<f64> = s.iter().zip(baseline).map(|(x, b)| x - b).collect();
                TargetFigures {
                    name: name.clone(),
                    p50: quantile(s, 0.5),
                    p90: quantile(s, 0.9),
                    p99: quantile(s, 0.99),
                    added_paired_median: quantile(&diffs, 0.5),
                }
            })
            .collect();
        Self { targets }
    }

    fn text(&self, rounds: u32) -> String {
        let base = &self.targets[0].name;
        let mut out = format!(
            "c=1, {rounds} rounds, one request per target per round, order rotating (us):\n\
             {:<14}{:>9}{:>9}{:>9}{:>30}\n",
            "target",
            "p50",
            "p90",
            "p99",
            format!("added vs {base} (paired)")
        );
        for t in &self.targets {
            out.push_str(&format!(
                "{:<14}{:>9.0}{:>9.0}{:>9.0}{:>30}\n",
                t.name,
                t.p50,
                t.p90,
                t.p99,
                format!("{:+.0}", t.added_paired_median)
            ));
        }
        out
    }

    fn json(&self, rounds: u32) -> Value {
        let targets: serde_json::Map<String, Value> = self
            .targets
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    json!({
                        "p50_us": t.p50.round(),
                        "p90_us": t.p90.round(),
                        "p99_us": t.p99.round(),
                        "added_paired_median_us": t.added_paired_median.round(),
                    }),
                )
            })
            .collect();
        json!({
            "rounds": rounds,
            "baseline": self.targets[0].name,
            "statistic": "median of per-round differences to the baseline",
            "targets": targets,
        })
    }
}

/// The `q` quantile of `values` (nearest rank on a sorted copy); 0 for no values.
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_added_figure_is_the_median_of_per_round_differences() {
        let targets = vec![
            ("direct".to_string(), "http://a".to_string()),
            ("hop".to_string(), "http://b".to_string()),
        ];
        // The baseline drifts from 100 to 300 µs; the hop is always 40 µs slower in its round.
        let direct = vec![100.0, 300.0, 120.0, 280.0, 110.0];
        let hop: Vec<f64> = direct.iter().map(|d| d + 40.0).collect();
        let report = Report::of(&targets, &[direct, hop]);
        assert_eq!(report.targets[0].added_paired_median, 0.0);
        assert_eq!(report.targets[1].added_paired_median, 40.0);
        assert_eq!(report.targets[1].p50, 160.0);
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn targets_need_a_name_and_a_url() {
        assert!(parse_target("direct=http://127.0.0.1:1/x").is_ok());
        assert!(parse_target("http://127.0.0.1:1/x").is_err());
        assert!(parse_target("=http://x").is_err());
    }
}
