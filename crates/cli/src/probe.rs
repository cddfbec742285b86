//! `switchyard probe`: a black-box prober, meant to run away from the gateway's host (another
//! region, another provider). Every `--every` it sends the known prompt, streamed, to each
//! `--model` through the gateway's public URL with a probe tenant's key, as a customer would,
//! and judges the answer: a failure is a 5xx, no answer, a broken or incomplete stream, or a
//! first or last token over its limit. A 401/403/404/429 is the prober's own misconfiguration
//! (its key, its model, its tenant's limits): logged loudly, never counted as the gateway's.
//!
//! It serves its own `/metrics` (`--listen`) and, with an admin token, pushes its per-minute
//! counts to the gateway's admin port (`--admin-url`, `POST /admin/v1/probes/minutes`), where the SLA report takes the
//! worse of its view and the gateway's own for each minute. Counts not yet pushed (the gateway
//! is down: exactly when they matter) are kept, a day at most, and pushed when it is back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};
use switchyard_gateway::metrics::exposition::{counter, gauge, sample};
use switchyard_gateway::metrics::{
    PROBE_LAST_TTFT, PROBE_LAST_TTLT, PROBE_PUSH_FAILURES, PROBE_REQUESTS, PROBE_UP,
};

use crate::admin_client::is_loopback;
use crate::error::CliError;

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The gateway's public base URL, as customers reach it (required, here or in the
    /// environment).
    #[arg(long, env = crate::gateway_url::URL_ENV)]
    url: Option<String>,
    /// The probe tenant's API key.
    #[arg(long, env = "SWITCHYARD_PROBE_KEY", hide_env_values = true)]
    key: String,
    /// A model to probe (repeat for several).
    #[arg(long = "model", required = true)]
    models: Vec<String>,
    /// This prober's name (one per prober, e.g. "eu-west-1").
    #[arg(long)]
    name: String,
    /// The region it probes from.
    #[arg(long, default_value = "unlabelled")]
    region: String,
    /// Milliseconds between rounds of probes.
    #[arg(long, default_value_t = 30_000)]
    every_ms: u64,
    #[arg(long, default_value_t = 1_500)]
    ttft_limit_ms: u64,
    #[arg(long, default_value_t = 8_000)]
    ttlt_limit_ms: u64,
    #[arg(long, default_value = "Reply with one word: OK.")]
    prompt: String,
    #[arg(long, default_value_t = 8)]
    max_tokens: u32,
    /// Where to serve this prober's own /metrics.
    #[arg(long, default_value = "127.0.0.1:9465")]
    listen: SocketAddr,
    /// The gateway's admin port, where minutes are pushed (required with an admin token).
    #[arg(long, env = crate::gateway_url::ADMIN_URL_ENV)]
    admin_url: Option<String>,
    /// The gateway's admin token; without it, nothing is pushed (metrics only).
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Trusting a private CA, and a client certificate, for the gateway's ports.
    #[command(flatten)]
    tls: crate::tls_client::TlsClientArgs,
    /// Stop after this many rounds (tests); 0 = run until SIGTERM.
    #[arg(long, default_value_t = 0)]
    rounds: u64,
}

/// How one probe went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Passed,
    /// The gateway's fault: counted.
    Failed,
    /// The prober's own (its key, model or limits): not the gateway's fault, not counted.
    Misconfigured,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Misconfigured => "misconfigured",
        }
    }
}

/// What the prober has seen: per-minute counts (until pushed) and its metrics.
#[derive(Default)]
struct Seen {
    /// Unix minute → (probes, failed), not yet pushed or still growing.
    minutes: BTreeMap<i64, (u64, u64)>,
    requests: BTreeMap<(String, &'static str), u64>,
    last: BTreeMap<String, (bool, Option<f64>, Option<f64>)>,
    push_failures: u64,
}

/// Minutes kept while the gateway cannot take them.
const KEEP_MINUTES: usize = 24 * 60;

pub async fn run(args: ProbeArgs) -> Result<(), CliError> {
    let url = crate::gateway_url::resolve(
        args.url.clone(),
        "SWITCHYARD_PROBE_URL",
        crate::gateway_url::URL_ENV,
    )
    .ok_or("the gateway's public URL is required: --url or SWITCHYARD_URL")?;
    let base =
        reqwest::Url::parse(url.trim_end_matches('/')).map_err(|e| format!("--url {url}: {e}"))?;
    let chat = base
        .join("/v1/chat/completions")
        .map_err(|e| format!("--url {url}: {e}"))?;
    let admin_base = match (&args.admin_url, &args.admin_token) {
        (Some(admin), _) => admin.clone(),
        (None, None) => String::new(), // nothing is pushed
        (None, Some(_)) => {
            return Err(CliError::Usage(
                "pushing minutes needs the gateway's admin port: --admin-url or \
                 SWITCHYARD_ADMIN_URL (the admin API does not listen on the public port)"
                    .into(),
            ))
        }
    };
    let mut http = reqwest::Client::builder()
        .timeout(Duration::from_millis(args.ttlt_limit_ms.saturating_mul(2)));
    if is_loopback(&base) {
        http = http.no_proxy();
    }
    let http = args.tls.apply(http)?.build().map_err(|e| e.to_string())?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    println!(
        "switchyard probe {} ({}) probing {} every {} ms; metrics on http://{}/metrics",
        args.name,
        args.region,
        chat,
        args.every_ms,
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let metrics = {
        let seen = seen.clone();
        let (name, region) = (args.name.clone(), args.region.clone());
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let body = render(&seen, &name, &region);
                async move { body }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(args.every_ms.max(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = crate::shutdown_signal() => break,
        }
        for model in &args.models {
            let (verdict, ttft, ttlt) = probe(&http, &chat, &args, model).await;
            note(&seen, model, verdict, ttft, ttlt);
        }
        push(&http, &args, &admin_base, &seen).await;
        round += 1;
        if args.rounds > 0 && round >= args.rounds {
            break;
        }
    }
    metrics.abort();
    Ok(())
}

async fn probe(
    http: &reqwest::Client,
    url: &reqwest::Url,
    args: &ProbeArgs,
    model: &str,
) -> (Verdict, Option<Duration>, Option<Duration>) {
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": args.prompt}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": true,
    });
    let limit = Duration::from_millis(args.ttlt_limit_ms.saturating_mul(2));
    let out = switchyard_loadgen::measure(http, url, Some(&args.key), &body, true, limit).await;
    let verdict = match (out.error.as_deref(), out.status) {
        (_, Some(401 | 403 | 404 | 429)) => {
            tracing::error!(model, status = out.status, error = ?out.error, "the probe itself is refused: check its key, model and tenant limits (not counted as downtime)");
            Verdict::Misconfigured
        }
        (Some(e), _) => {
            tracing::warn!(model, status = out.status, error = e, "probe failed");
            Verdict::Failed
        }
        (None, _) => {
            let slow =
                |d: Option<Duration>, ms: u64| d.is_none_or(|d| d > Duration::from_millis(ms));
            if slow(out.ttft, args.ttft_limit_ms) || slow(out.ttlt, args.ttlt_limit_ms) {
                tracing::warn!(model, ttft = ?out.ttft, ttlt = ?out.ttlt, "probe over its limits");
                Verdict::Failed
            } else {
                Verdict::Passed
            }
        }
    };
    (verdict, out.ttft, out.ttlt)
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

fn note(
    seen: &Mutex<Seen>,
    model: &str,
    verdict: Verdict,
    ttft: Option<Duration>,
    ttlt: Option<Duration>,
) {
    let minute = switchyard_metering::sli::minute_of(switchyard_metering::directory::unix_ms());
    let mut s = lock(seen);
    if verdict != Verdict::Misconfigured {
        let m = s.minutes.entry(minute).or_default();
        m.0 += 1;
        m.1 += u64::from(verdict == Verdict::Failed);
    }
    *s.requests
        .entry((model.to_string(), verdict.as_str()))
        .or_default() += 1;
    s.last.insert(
        model.to_string(),
        (
            verdict == Verdict::Passed,
            ttft.map(|d| d.as_secs_f64()),
            ttlt.map(|d| d.as_secs_f64()),
        ),
    );
    while s.minutes.len() > KEEP_MINUTES {
        s.minutes.pop_first();
    }
}

/// Pushes every minute held; finished minutes are dropped once the gateway has them, the
/// current one is kept (it is still growing) and pushed again next time.
async fn push(http: &reqwest::Client, args: &ProbeArgs, admin_base: &str, seen: &Mutex<Seen>) {
    let Some(token) = args.admin_token.as_deref() else {
        return;
    };
    let minutes: Vec<Value> = lock(seen)
        .minutes
        .iter()
        .map(|(minute, (probes, failed))| json!({"minute": minute, "probes": probes, "failed": failed}))
        .collect();
    if minutes.is_empty() {
        return;
    }
    let url = format!(
        "{}/admin/v1/probes/minutes",
        admin_base.trim_end_matches('/')
    );
    let sent = http
        .post(&url)
        .bearer_auth(token)
        .json(&json!({"prober": args.name, "region": args.region, "minutes": minutes}))
        .send()
        .await;
    // The refusal's reason is read before the lock is taken: no lock across an await.
    let outcome = match sent {
        Ok(r) if r.status().is_success() => Pushed::Stored,
        Ok(r) if refused_for_the_data(r.status()) => {
            let status = r.status();
            Pushed::Invalid(status, r.text().await.unwrap_or_default())
        }
        Ok(r) => Pushed::Refused(r.status()),
        Err(e) => Pushed::Unreachable(e),
    };
    let now = switchyard_metering::sli::minute_of(switchyard_metering::directory::unix_ms());
    let mut s = lock(seen);
    match outcome {
        Pushed::Stored => s.minutes.retain(|minute, _| *minute >= now),
        Pushed::Invalid(status, reason) => {
            // Pushing the same minutes again would be refused again, and block every later
            // minute with them: the finished ones are dropped, with the gateway's reason.
            s.push_failures += 1;
            let dropped = s.minutes.range(..now).count();
            s.minutes.retain(|minute, _| *minute >= now);
            tracing::error!(%status, dropped, reason = %reason, "the gateway refused the probe minutes as invalid; dropped them (is this machine's clock right?)");
        }
        Pushed::Refused(status) => {
            s.push_failures += 1;
            tracing::error!(%status, "the gateway refused the probe minutes; kept to push again");
        }
        Pushed::Unreachable(e) => {
            s.push_failures += 1;
            tracing::warn!(error = %e, "cannot push the probe minutes; kept to push again");
        }
    }
}

/// How a push of minutes went.
enum Pushed {
    Stored,
    /// Refused for what was pushed, with the gateway's reason.
    Invalid(reqwest::StatusCode, String),
    /// Refused for another reason (the token, load): the same push may succeed later.
    Refused(reqwest::StatusCode),
    Unreachable(reqwest::Error),
}

/// A refusal of what was pushed rather than of who pushed it or when (a wrong token, a
/// gateway shedding load): the same push would be refused again.
fn refused_for_the_data(status: reqwest::StatusCode) -> bool {
    status.is_client_error() && !matches!(status.as_u16(), 401 | 403 | 404 | 408 | 429)
}

fn render(seen: &Mutex<Seen>, name: &str, region: &str) -> String {
    let s = lock(seen);
    let mut out = String::new();
    counter(
        &mut out,
        PROBE_REQUESTS,
        "Probes sent, by model and result (passed, failed, misconfigured).",
    );
    for ((model, result), n) in &s.requests {
        let labels = [
            ("prober", name),
            ("region", region),
            ("model", model.as_str()),
            ("result", *result),
        ];
        sample(&mut out, PROBE_REQUESTS, &labels, *n as f64);
    }
    gauge(
        &mut out,
        PROBE_UP,
        "1 when the last probe of a model passed.",
    );
    for (model, (up, _, _)) in &s.last {
        let labels = [
            ("prober", name),
            ("region", region),
            ("model", model.as_str()),
        ];
        sample(&mut out, PROBE_UP, &labels, f64::from(u8::from(*up)));
    }
    for (metric, help, pick) in [
        (
            PROBE_LAST_TTFT,
            "The last probe's time to first token, in seconds.",
            1usize,
        ),
        (
            PROBE_LAST_TTLT,
            "The last probe's time to last token, in seconds.",
            2,
        ),
    ] {
        gauge(&mut out, metric, help);
        for (model, last) in &s.last {
            let value = if pick == 1 { last.1 } else { last.2 };
            let labels = [
                ("prober", name),
                ("region", region),
                ("model", model.as_str()),
            ];
            sample(&mut out, metric, &labels, value.unwrap_or(f64::NAN));
        }
    }
    counter(
        &mut out,
        PROBE_PUSH_FAILURES,
        "Pushes of probe minutes to the gateway that failed (the minutes are kept).",
    );
    sample(
        &mut out,
        PROBE_PUSH_FAILURES,
        &[("prober", name), ("region", region)],
        s.push_failures as f64,
    );
    out
}
