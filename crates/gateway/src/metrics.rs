//! Step "observe": every metric the gateway exports is named here, with its labels, its
//! buckets and its help text, and recorded through the small typed functions below, so that
//! no other file spells a metric name or chooses a label (and a rename is one edit here,
//! caught by the test that checks the Grafana dashboard and the alert rules against [`ALL`]).
//!
//! Two kinds of metrics:
//! - **Events** (requests, latencies, tokens, retries...) are recorded when they happen,
//!   through the `metrics` facade into a process-wide `metrics-exporter-prometheus` recorder.
//!   Why that crate and not `prometheus`: both cost a hash of the label set and a sharded
//!   read-locked map lookup per call (`prometheus` through `with_label_values`), then an
//!   atomic add; histograms here append to a lock-free bucket drained at scrape time. That is
//!   well under a microsecond per call, a handful of calls per request that itself lasts
//!   hundreds of milliseconds, so the facade's cost does not matter on this hot path, and its
//!   free functions need no registry threaded through every step.
//! - **State** (worker states, outstanding requests, the retry budget, what workers' own
//!   `/metrics` say) is read at scrape time from this gateway's fleet (see [`scrape_time`] and
//!   [`worker_figures`], which the control plane's scraper publishes) instead of being pushed
//!   on every change: a worker that leaves the fleet leaves the output with it, and two
//!   gateways in one process (tests) each show their own fleet.
//!
//! Labels never carry an API key, a key id or a tenant id: tenants appear as their tier only.
//! Models are labelled only once the fleet is known to serve them (a client's made-up model
//! name must not create a series).
//!
//! One piece by design: every metric the gateway exports is named, labelled and recorded here, so
//! that a name lives in one place (the dashboard, the alert rules and the README refer to it).

pub mod exposition;
pub mod scrape_time;
mod series;
pub mod worker_figures;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use series::{Labels, Series, SeriesCache};
use switchyard_metering::UsageStatus;

use crate::error::{GatewayError, Origin};
use switchyard_metering::sli::Verdict;
use switchyard_protocol::Endpoint;

// --- Recorded as events happen -------------------------------------------------------------

/// Inference requests by `route`, `status` (the HTTP status the client got; 499 = the client
/// went away), `model`, `region`, `provider` (`none` when no worker was reached).
pub const REQUESTS: &str = "switchyard_requests_total";
/// Failed requests by `class` (client, policy, upstream, internal) and `kind` (`429`, `4xx`,
/// `5xx`, or `stream`: a stream that broke after its first token, so the client saw a 200).
pub const ERRORS: &str = "switchyard_errors_total";
/// Time to first token (of every request that got one, streamed to its client or not), by
/// `model`, `tier`.
pub const TTFT: &str = "switchyard_ttft_seconds";
/// Time to last token of completed requests (streamed or not), by `model`, `tier`.
pub const TTLT: &str = "switchyard_ttlt_seconds";
/// Mean gap between tokens of each completed stream, by `model`.
pub const INTER_TOKEN: &str = "switchyard_inter_token_seconds";
/// From admission to the first attempt on a worker (routing, the gateway's queue), by
/// `model`, `tier`.
pub const QUEUE: &str = "switchyard_queue_seconds";
/// Attempts sent to another worker after one failed, by `model` and `kind`
/// (`before_first_token`, `resume`, `restart`: see [`Retry`]).
pub const RETRIES: &str = "switchyard_retries_total";
/// Second attempts started because a stream had no first token in time, by `model`.
pub const HEDGES: &str = "switchyard_hedges_total";
/// Requests turned away to protect the fleet, by `tier`, `reason`.
pub const SHEDS: &str = "switchyard_sheds_total";
/// Tokens billed, by `direction` (`input`, `output`), `tier`, `model`.
pub const TOKENS: &str = "switchyard_tokens_total";
/// Opt-in content log records not stored, by `reason` (`queue_full`: the writer is behind;
/// `redaction_unavailable`). Usage records are never dropped; content records may be.
pub const CONTENT_LOG_DROPPED: &str = "switchyard_content_log_dropped_total";
/// Every request the availability SLI sees, by `tier`, `model`, `verdict` (`good`, `bad`:
/// a 5xx or a first token 5 s or more after arrival; `excluded`: the tenant's own-limit 429)
/// and `cause` (`none`, `shed`, `5xx`, `slow_first_token`, `tenant_limit`),
/// classified by the same function as the ledger's rollups (`SliCounts`), so the Prometheus
/// rules and the gateway's own burn alerts judge the same requests the same way.
pub const SLI_REQUESTS: &str = "switchyard_sli_requests_total";
/// The objectives the SLA promises, by `tier` and `objective` (`availability`: the tier's
/// share of good requests; `errors_5xx`: the most 5xx; `throttled`: the most requests shed for
/// capacity), as ratios: what the alert rules divide burn rates by.
pub const SLO_OBJECTIVE: &str = "switchyard_slo_objective_ratio";
/// Requests admitted and not yet settled (streams included until their end).
pub const IN_FLIGHT: &str = "switchyard_in_flight_requests";

// --- Read from the fleet at scrape time -----------------------------------------------------

/// 1 for the state each worker is in, 0 for the others: `worker`, `model`, `provider`,
/// `region`, `state` (starting, ready, unhealthy, ejected, probation, draining).
pub const WORKER_STATE: &str = "switchyard_worker_state";
/// Requests the gateway has outstanding on each worker.
pub const WORKER_OUTSTANDING: &str = "switchyard_worker_outstanding_requests";
/// Ejections in a row of each worker (0 once it has proved itself again).
pub const WORKER_EJECTIONS: &str = "switchyard_worker_consecutive_ejections";
/// Each worker's TTFT moving average, as routing sees it (absent until measured).
pub const WORKER_TTFT_EWMA: &str = "switchyard_worker_ttft_ewma_seconds";
/// Whole retries (or hedges) the retry budget allows right now.
pub const RETRY_BUDGET: &str = "switchyard_retry_budget_available";
/// Usage reports of each worker refused (out of bounds or malformed), by `worker`, `model`.
pub const WORKER_USAGE_REJECTED: &str = "switchyard_worker_usage_rejected_total";
/// Ledger records stored, dead-lettered, failed write attempts, and records printed to stderr
/// because they could not be stored before the shutdown deadline.
pub const LEDGER_WRITTEN: &str = "switchyard_ledger_records_written_total";
pub const LEDGER_DEAD_LETTERS: &str = "switchyard_ledger_dead_letters_total";
pub const LEDGER_WRITE_FAILURES: &str = "switchyard_ledger_write_failures_total";
pub const LEDGER_UNWRITTEN: &str = "switchyard_ledger_unwritten_total";
/// Rounds of the SLO evaluator (alerts and incidents) completed: flat means it has stopped.
pub const ALERT_EVALUATIONS: &str = "switchyard_alert_evaluations_total";
/// Always 1, labelled with the running build's `version` and `commit`.
pub const BUILD_INFO: &str = "switchyard_build_info";
/// Admissions by where they were decided (`decided_by`: `shared` in Redis, `local_fallback`
/// on this replica's share while Redis was unreachable, `unavailable` refused for that).
/// Absent without `[limits] redis_url`.
pub const LIMITS_ADMISSIONS: &str = "switchyard_limits_admissions_total";
/// 1 while the shared limits' Redis answers, 0 while admissions follow `on_redis_down`; and
/// the replicas alive in Redis at the last heartbeat (the local fallback's divisor).
pub const LIMITS_REDIS_UP: &str = "switchyard_limits_redis_up";
pub const LIMITS_REPLICAS: &str = "switchyard_limits_replicas";
/// Client connections open on the listener, and those refused at the door (`reason`:
/// `per_client` past `max_connections_per_ip`, `total` past `max_connections`).
pub const CONNECTIONS_OPEN: &str = "switchyard_connections_open";
pub const CONNECTIONS_REFUSED: &str = "switchyard_connections_refused_total";
pub const CONTENT_FILTERED: &str = "switchyard_content_filtered_total";
pub const MODERATION_FAILURES: &str = "switchyard_moderation_failures_total";
pub const TLS_HANDSHAKE_FAILURES: &str = "switchyard_tls_handshake_failures_total";
pub const TLS_RELOADS: &str = "switchyard_tls_reloads_total";
pub const TLS_CERT_EXPIRY: &str = "switchyard_tls_certificate_expiry_timestamp_seconds";

// --- Scraped from workers' own /metrics (vLLM, SGLang, TGI) ---------------------------------

/// Share of the worker's KV cache in use, 0 to 1 (`vllm:gpu_cache_usage_perc`,
/// `vllm:kv_cache_usage_perc`, `sglang:token_usage`).
pub const WORKER_KV_CACHE: &str = "switchyard_worker_kv_cache_usage_ratio";
/// Requests the runtime is running (`vllm:num_requests_running`, `sglang:num_running_reqs`,
/// `tgi_batch_current_size`).
pub const WORKER_RUNNING: &str = "switchyard_worker_requests_running";
/// Requests waiting in the runtime's own queue (`vllm:num_requests_waiting`,
/// `sglang:num_queue_reqs`, `tgi_queue_size`).
pub const WORKER_WAITING: &str = "switchyard_worker_requests_waiting";
/// Whether the last scrape of the worker's `/metrics` succeeded (1) or not (0).
pub const WORKER_SCRAPE_UP: &str = "switchyard_worker_metrics_up";

// --- Exported by `switchyard probe` (the black-box prober), not by the gateway ----------------

/// Probes sent, by `prober`, `region`, `model`, `result` (`passed`, `failed`, `misconfigured`).
pub const PROBE_REQUESTS: &str = "switchyard_probe_requests_total";
/// 1 when the last probe of a model passed.
pub const PROBE_UP: &str = "switchyard_probe_up";
/// The last probe's time to first and to last token, in seconds.
pub const PROBE_LAST_TTFT: &str = "switchyard_probe_last_ttft_seconds";
pub const PROBE_LAST_TTLT: &str = "switchyard_probe_last_ttlt_seconds";
/// Pushes of probe minutes to the gateway that failed.
pub const PROBE_PUSH_FAILURES: &str = "switchyard_probe_push_failures_total";

/// Every metric family the prober exports.
pub const PROBER: &[&str] = &[
    PROBE_REQUESTS,
    PROBE_UP,
    PROBE_LAST_TTFT,
    PROBE_LAST_TTLT,
    PROBE_PUSH_FAILURES,
];

/// Every metric family the gateway can export (histograms without their `_bucket`, `_sum`
/// and `_count` suffixes). The dashboard and alert rules may reference only these.
pub const ALL: &[&str] = &[
    REQUESTS,
    ERRORS,
    SLI_REQUESTS,
    SLO_OBJECTIVE,
    TTFT,
    TTLT,
    INTER_TOKEN,
    QUEUE,
    RETRIES,
    HEDGES,
    SHEDS,
    TOKENS,
    CONTENT_LOG_DROPPED,
    IN_FLIGHT,
    WORKER_STATE,
    WORKER_OUTSTANDING,
    WORKER_EJECTIONS,
    WORKER_TTFT_EWMA,
    RETRY_BUDGET,
    WORKER_USAGE_REJECTED,
    LEDGER_WRITTEN,
    LEDGER_DEAD_LETTERS,
    LEDGER_WRITE_FAILURES,
    LEDGER_UNWRITTEN,
    ALERT_EVALUATIONS,
    BUILD_INFO,
    LIMITS_ADMISSIONS,
    LIMITS_REDIS_UP,
    LIMITS_REPLICAS,
    CONNECTIONS_OPEN,
    CONNECTIONS_REFUSED,
    CONTENT_FILTERED,
    MODERATION_FAILURES,
    TLS_HANDSHAKE_FAILURES,
    TLS_RELOADS,
    TLS_CERT_EXPIRY,
    WORKER_KV_CACHE,
    WORKER_RUNNING,
    WORKER_WAITING,
    WORKER_SCRAPE_UP,
];

// --- Buckets --------------------------------------------------------------------------------

/// TTFT and TTLT, in seconds. From 5 ms, so that a fast model's quantiles are not read as the
/// first bucket's bound; 1.5 s (the Pro TTFT SLO), 5 s (the SLA's "TTFT under 5 s") and 8 s
/// (the TTLT SLO) are bucket bounds so those quantiles are exact at the threshold.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0, 8.0,
    10.0, 15.0, 20.0, 30.0,
];
/// Inter-token gaps: tens of milliseconds when healthy.
const INTER_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0,
];
/// Queue time: near zero unless workers are saturated.
const QUEUE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Histograms drain their samples into buckets at scrape time; without a scrape they keep
/// them, so something must drain them regularly.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle). `None`
/// when another recorder was installed first: events are then not ours to render.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = match builder() {
                Ok(b) => b.build_recorder(),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics disabled: invalid exporter settings");
                    return None;
                }
            };
            let handle = recorder.handle();
            if let Err(e) = ::metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "metrics disabled: another recorder is installed");
                return None;
            }
            describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no metrics upkeep thread; histograms drain on scrape only");
            }
            Some(handle)
        })
        .as_ref()
}

/// What the events part of `/metrics` says now (empty when metrics are disabled).
pub fn render_events() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}

fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(TTFT.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(TTLT.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(INTER_TOKEN.into()), INTER_TOKEN_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(QUEUE.into()), QUEUE_BUCKETS)
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        REQUESTS,
        "Inference requests by route, HTTP status, model, region and provider."
    );
    describe_counter!(
        ERRORS,
        "Failed inference requests by origin class and kind (429, 4xx, 5xx, stream)."
    );
    describe_histogram!(
        TTFT,
        Unit::Seconds,
        "Time to first token of requests that got one."
    );
    describe_histogram!(
        TTLT,
        Unit::Seconds,
        "Time to last token of completed requests."
    );
    describe_histogram!(
        INTER_TOKEN,
        Unit::Seconds,
        "Mean gap between tokens of each completed stream."
    );
    describe_histogram!(
        QUEUE,
        Unit::Seconds,
        "Time from admission to the first attempt on a worker."
    );
    describe_counter!(RETRIES, "Attempts sent to another worker after one failed.");
    describe_counter!(
        ALERT_EVALUATIONS,
        "Rounds of the SLO evaluator completed (alerts and incidents decided)."
    );
    describe_counter!(
        SLI_REQUESTS,
        "Requests by availability SLI verdict: good, bad (5xx or first token 5 s or later), excluded (the tenant's own-limit 429)."
    );
    describe_counter!(
        HEDGES,
        "Second attempts started because a stream had no first token in time."
    );
    describe_counter!(
        SHEDS,
        "Requests turned away to protect the fleet, by tier and reason."
    );
    describe_counter!(
        LIMITS_ADMISSIONS,
        "Admissions by where the limits were decided: shared (Redis), local_fallback (this replica's share, Redis unreachable), unavailable (refused, Redis unreachable)."
    );
    describe_gauge!(
        CONNECTIONS_OPEN,
        "Client connections open, per listener (public, admin)."
    );
    describe_counter!(
        CONTENT_FILTERED,
        "Requests refused (stage input, 400 content_filter, not billed) and answers stopped (stage output) by the content filters, by tier and list (credential_scraping: the shipped list; configured: [filters] and the tier's lists; tenant: the tenant's own input list; moderation: the hook). Output matches count as configured, whichever list held the pattern."
    );
    describe_counter!(
        MODERATION_FAILURES,
        "Requests the moderation endpoint gave no verdict on (an error, a timeout, a malformed answer), by what happened: let_through (moderation_on_error = open) or refused (closed, 503)."
    );
    describe_counter!(
        TLS_HANDSHAKE_FAILURES,
        "TLS handshakes that failed or timed out, per listener (a client without a valid certificate, a scanner, a plain-HTTP client)."
    );
    describe_counter!(
        TLS_RELOADS,
        "TLS certificate reloads (file change or SIGHUP), per listener (public, admin, worker_hops: the worker CA and the gateway's client certificate) and outcome (ok, failed: the previous certificate stays)."
    );
    describe_gauge!(
        TLS_CERT_EXPIRY,
        "When the certificate a listener serves expires (worker_hops: the client certificate the gateway shows to agents' sidecars), Unix seconds."
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Client connections refused at the door: per_client (max_connections_per_ip) or total (max_connections)."
    );
    describe_counter!(
        CONTENT_LOG_DROPPED,
        "Opt-in content log records dropped instead of stored, by reason."
    );
    describe_counter!(
        TOKENS,
        "Tokens billed, by direction (input, output), tier and model."
    );
    describe_gauge!(
        IN_FLIGHT,
        "Inference requests admitted and not yet settled."
    );
}

// --- Recording -------------------------------------------------------------------------------

/// How a request that reached settlement ended, as [`request_finished`] needs it.
pub struct Finished<'a> {
    pub route: &'static str,
    pub model: &'a str,
    pub tier: &'a str,
    /// The serving worker's (region, provider); `None` when no worker was reached.
    pub worker: Option<(&'a str, &'a str)>,
    pub http_status: u16,
    pub outcome: UsageStatus,
    /// The origin of a failure (`Failed` only).
    pub error: Option<Origin>,
    pub ttft: Option<Duration>,
    pub total: Duration,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The canary split's arm (`main`, `canary`), for the A/B comparison of TTFT and TTLT.
    pub arm: &'static str,
}

/// A request was admitted (it will reach [`request_finished`] exactly once).
pub fn request_started() {
    in_flight().increment(1.0);
}

/// The one record of a settled request: its count, errors, latencies and tokens.
pub fn request_finished(f: &Finished) {
    in_flight().decrement(1.0);
    let (region, provider) = f.worker.unwrap_or(("none", "none"));
    let labels = Labels {
        route: f.route,
        status: status_label(f.http_status),
        model: f.model,
        tier: f.tier,
        region,
        provider,
        arm: f.arm,
    };
    let series = series(&labels);
    series
        .requests
        .get_or_init(|| requests_counter(&labels))
        .increment(1);
    match (f.outcome, f.error) {
        (UsageStatus::Failed, Some(origin)) => count_error(origin, f.http_status),
        (UsageStatus::Failed, None) => count_error(Origin::Internal, f.http_status),
        (UsageStatus::FailedMidStream, _) => {
            ::metrics::counter!(ERRORS, "class" => class(Origin::Upstream), "kind" => "stream")
                .increment(1);
        }
        (
            UsageStatus::Completed | UsageStatus::ClientDisconnected | UsageStatus::Interrupted,
            _,
        ) => {}
    }
    // Every request reaches its worker as a stream, so a first token is seen whether the
    // client streams or not; a request that never got one has no TTFT.
    if let Some(ttft) = f.ttft {
        series
            .ttft
            .get_or_init(|| ::metrics::histogram!(TTFT, "model" => f.model.to_owned(), "tier" => f.tier.to_owned(), "arm" => f.arm))
            .record(ttft.as_secs_f64());
    }
    if f.outcome == UsageStatus::Completed {
        series
            .ttlt
            .get_or_init(|| ::metrics::histogram!(TTLT, "model" => f.model.to_owned(), "tier" => f.tier.to_owned(), "arm" => f.arm))
            .record(f.total.as_secs_f64());
        if let (Some(ttft), 2..) = (f.ttft, f.completion_tokens) {
            // One sample per stream, not per token: keeps the relay free of metric calls.
            let gaps = (f.completion_tokens - 1) as f64;
            let itl = f.total.saturating_sub(ttft).as_secs_f64() / gaps;
            series
                .inter_token
                .get_or_init(|| ::metrics::histogram!(INTER_TOKEN, "model" => f.model.to_owned()))
                .record(itl);
        }
    }
    // Only requests that reached a worker are billed (as the ledger does).
    if f.worker.is_some() {
        let tokens = |direction: &'static str| {
            ::metrics::counter!(
                TOKENS,
                "direction" => direction,
                "tier" => f.tier.to_owned(),
                "model" => f.model.to_owned(),
            )
        };
        series
            .tokens_in
            .get_or_init(|| tokens("input"))
            .increment(f.prompt_tokens);
        series
            .tokens_out
            .get_or_init(|| tokens("output"))
            .increment(f.completion_tokens);
    }
}

/// The handles of `labels`' series: kept once our recorder is installed; made afresh (through
/// whatever recorder is current) before that, so that no handle outlives the recorder it came
/// from.
fn series(labels: &Labels) -> Arc<Series> {
    static CACHE: OnceLock<SeriesCache> = OnceLock::new();
    match HANDLE.get() {
        Some(Some(_)) => CACHE.get_or_init(SeriesCache::default).get(labels),
        _ => Arc::default(),
    }
}

fn in_flight() -> ::metrics::Gauge {
    static GAUGE: OnceLock<::metrics::Gauge> = OnceLock::new();
    match HANDLE.get() {
        Some(Some(_)) => GAUGE.get_or_init(|| ::metrics::gauge!(IN_FLIGHT)).clone(),
        _ => ::metrics::gauge!(IN_FLIGHT),
    }
}

/// A shadow request (a copy sent to the canary pool, answer discarded) finished.
pub fn shadow_finished(model: &str, ok: bool, ttft: Option<Duration>, total: Duration) {
    let arm = "shadow";
    if let Some(ttft) = ttft {
        ::metrics::histogram!(TTFT, "model" => model.to_owned(), "tier" => "shadow", "arm" => arm)
            .record(ttft.as_secs_f64());
    }
    if ok {
        ::metrics::histogram!(TTLT, "model" => model.to_owned(), "tier" => "shadow", "arm" => arm)
            .record(total.as_secs_f64());
    }
}

/// A request refused before it was admitted (auth, validation, limits, unknown model): no
/// model, region or provider is known to be real yet.
pub fn request_refused(route: &'static str, error: &GatewayError) {
    let status = error.status().as_u16();
    requests_counter(&Labels {
        route,
        status: status_label(status),
        model: "none",
        tier: "none",
        region: "none",
        provider: "none",
        arm: "main",
    })
    .increment(1);
    count_error(error.origin(), status);
}

/// Time from admission to the first attempt on a worker.
pub fn queue_time(model: &str, tier: &str, waited: Duration) {
    ::metrics::histogram!(QUEUE, "model" => model.to_owned(), "tier" => tier.to_owned())
        .record(waited.as_secs_f64());
}

/// Why another worker was tried: the first failed before its first token; a stream broke
/// mid-way and goes on elsewhere; an unstreamed answer broke before reaching its client and
/// starts over elsewhere (the tokens the first worker generated are not billed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    BeforeFirstToken,
    Resume,
    Restart,
}

impl Retry {
    pub const ALL: [Retry; 3] = [Retry::BeforeFirstToken, Retry::Resume, Retry::Restart];

    pub fn as_str(self) -> &'static str {
        match self {
            Retry::BeforeFirstToken => "before_first_token",
            Retry::Resume => "resume",
            Retry::Restart => "restart",
        }
    }
}

/// Another worker is being tried after a failure.
pub fn retry(model: &str, kind: Retry) {
    ::metrics::counter!(RETRIES, "model" => model.to_owned(), "kind" => kind.as_str()).increment(1);
}

/// A second worker is being tried because the first was slow to its first token.
pub fn hedge(model: &str) {
    ::metrics::counter!(HEDGES, "model" => model.to_owned()).increment(1);
}

/// One request's SLI verdict and its cause (see [`SLI_REQUESTS`]), from its counts as the
/// ledger's rollups take them.
pub fn sli(tier: &str, model: &str, one: &switchyard_metering::sli::SliCounts) {
    ::metrics::counter!(SLI_REQUESTS, "tier" => tier.to_owned(), "model" => model.to_owned(),
        "verdict" => one.verdict().as_str(), "cause" => one.cause())
    .increment(1);
}

/// Why a content log record may be dropped (see [`content_log_dropped`]).
pub const CONTENT_LOG_DROP_REASONS: [&str; 2] = ["queue_full", "redaction_unavailable"];

/// Registers the event counters at zero for every label set known now, so that a dashboard or
/// a `rate()` reads 0 instead of "no data" until the first event: errors by class and kind,
/// retries and hedges per model, sheds per tier and reason, tokens per tier and model, dropped
/// content logs, and successful requests per route and worker placement. Called at start and
/// when a worker with a new model registers.
/// One round of the SLO evaluator is done.
pub fn alert_evaluated() {
    ::metrics::counter!(ALERT_EVALUATIONS).increment(1);
}

pub fn zero_counters<'a>(
    tiers: impl IntoIterator<Item = &'a str> + Clone,
    workers: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) {
    ::metrics::counter!(ALERT_EVALUATIONS).increment(0);
    for origin in [
        Origin::Client,
        Origin::Policy,
        Origin::Upstream,
        Origin::Internal,
    ] {
        for kind in ["429", "4xx", "5xx", "stream"] {
            ::metrics::counter!(ERRORS, "class" => class(origin), "kind" => kind).increment(0);
        }
    }
    for reason in CONTENT_LOG_DROP_REASONS {
        content_log_counter(reason).increment(0);
    }
    for tier in tiers.clone() {
        for reason in crate::route::queue::Shed::COUNTED {
            ::metrics::counter!(SHEDS, "tier" => tier.to_owned(), "reason" => reason.as_str())
                .increment(0);
        }
    }
    for (model, region, provider) in workers {
        for kind in Retry::ALL {
            ::metrics::counter!(RETRIES, "model" => model.to_owned(), "kind" => kind.as_str())
                .increment(0);
        }
        ::metrics::counter!(HEDGES, "model" => model.to_owned()).increment(0);
        for route in [Endpoint::Chat.path(), Endpoint::Completions.path()] {
            requests_counter(&Labels {
                route,
                status: "200",
                model,
                tier: "",
                region,
                provider,
                arm: "main",
            })
            .increment(0);
        }
        for tier in tiers.clone() {
            for (verdict, cause) in [
                (Verdict::Good, "none"),
                (Verdict::Bad, "5xx"),
                (Verdict::Bad, "shed"),
                (Verdict::Bad, "slow_first_token"),
                (Verdict::Excluded, "tenant_limit"),
            ] {
                ::metrics::counter!(SLI_REQUESTS, "tier" => tier.to_owned(), "model" => model.to_owned(),
                    "verdict" => verdict.as_str(), "cause" => cause)
                .increment(0);
            }
            for direction in ["input", "output"] {
                ::metrics::counter!(TOKENS, "direction" => direction, "tier" => tier.to_owned(), "model" => model.to_owned())
                    .increment(0);
            }
        }
    }
}

fn content_log_counter(reason: &'static str) -> ::metrics::Counter {
    ::metrics::counter!(CONTENT_LOG_DROPPED, "reason" => reason)
}

/// A content log record was dropped; `reason` is a fixed word (`queue_full`...).
pub fn content_log_dropped(reason: &'static str) {
    content_log_counter(reason).increment(1);
}

/// Where the shared limits decided an admission.
pub fn limits_decided(by: switchyard_metering::admission::DecidedBy) {
    use switchyard_metering::admission::DecidedBy;
    let by = match by {
        DecidedBy::Process => return,
        DecidedBy::Shared => "shared",
        DecidedBy::LocalFallback => "local_fallback",
        DecidedBy::Unavailable => "unavailable",
    };
    ::metrics::counter!(LIMITS_ADMISSIONS, "decided_by" => by).increment(1);
}

/// A client connection opened (+1) or closed (-1) on `listener` (`public` or `admin`).
pub fn connections_open(listener: &'static str, delta: f64) {
    ::metrics::gauge!(CONNECTIONS_OPEN, "listener" => listener).increment(delta);
}

/// A content filter refused a request (`stage` input) or stopped an answer (output).
pub fn content_filtered(stage: &'static str, tier: &str, list: &'static str) {
    ::metrics::counter!(CONTENT_FILTERED, "stage" => stage, "tier" => tier.to_string(), "list" => list)
        .increment(1);
}

/// The moderation endpoint gave no verdict; `outcome` is `let_through` or `refused`.
pub fn moderation_failed(outcome: &'static str) {
    ::metrics::counter!(MODERATION_FAILURES, "outcome" => outcome).increment(1);
}

/// A TLS handshake on `listener` failed or timed out.
pub fn tls_handshake_failed(listener: &'static str) {
    ::metrics::counter!(TLS_HANDSHAKE_FAILURES, "listener" => listener).increment(1);
}

/// The TLS files of `listener` were read again.
pub fn tls_reload(listener: &'static str, ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    ::metrics::counter!(TLS_RELOADS, "listener" => listener, "outcome" => outcome).increment(1);
}

/// The certificate `listener` serves expires at `unix_s`.
pub fn tls_certificate_expiry(listener: &'static str, unix_s: i64) {
    ::metrics::gauge!(TLS_CERT_EXPIRY, "listener" => listener).set(unix_s as f64);
}

/// A client connection was refused at the door of `listener`; `reason` is `per_client` or
/// `total`.
pub fn connection_refused(listener: &'static str, reason: &'static str) {
    ::metrics::counter!(CONNECTIONS_REFUSED, "listener" => listener, "reason" => reason)
        .increment(1);
}

/// A request was shed; `reason` is a fixed word (`queue_full`, `queue_timeout`...).
pub fn shed(tier: &str, reason: &'static str) {
    ::metrics::counter!(SHEDS, "tier" => tier.to_owned(), "reason" => reason).increment(1);
}

fn requests_counter(l: &Labels) -> ::metrics::Counter {
    ::metrics::counter!(
        REQUESTS,
        "route" => l.route,
        "status" => l.status,
        "model" => l.model.to_owned(),
        "region" => l.region.to_owned(),
        "provider" => l.provider.to_owned(),
    )
}

fn count_error(origin: Origin, status: u16) {
    let kind = match status {
        429 => "429",
        500.. => "5xx",
        _ => "4xx",
    };
    ::metrics::counter!(ERRORS, "class" => class(origin), "kind" => kind).increment(1);
}

fn class(origin: Origin) -> &'static str {
    match origin {
        Origin::Client => "client",
        Origin::Policy => "policy",
        Origin::Upstream => "upstream",
        Origin::Internal => "internal",
    }
}

/// Status labels for the statuses the gateway answers with, without formatting a string per
/// request; anything else is labelled by its class.
fn status_label(status: u16) -> &'static str {
    const KNOWN: &[(u16, &str)] = &[
        (200, "200"),
        (400, "400"),
        (401, "401"),
        (402, "402"),
        (403, "403"),
        (404, "404"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (422, "422"),
        (429, "429"),
        (499, "499"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    match KNOWN.iter().find(|(s, _)| *s == status) {
        Some((_, label)) => label,
        None if (400..500).contains(&status) => "4xx",
        None if (500..600).contains(&status) => "5xx",
        None => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prometheus_safe() {
        let mut names = ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for name in ALL {
            assert!(name.starts_with("switchyard_"), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}"
            );
        }
    }

    #[test]
    fn statuses_are_labelled_without_unbounded_values() {
        assert_eq!(status_label(429), "429");
        assert_eq!(status_label(418), "4xx");
        assert_eq!(status_label(599), "5xx");
        assert_eq!(status_label(302), "other");
    }

    #[test]
    fn buckets_ascend() {
        for b in [LATENCY_BUCKETS, INTER_TOKEN_BUCKETS, QUEUE_BUCKETS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
