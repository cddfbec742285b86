//! `switchyard agent`: runs beside an inference runtime and keeps it in the gateway's fleet.
//!
//! 1. Waits until the runtime answers and serves the declared model (retrying with backoff).
//! 2. Registers it with the gateway (an agent token or the shared fleet token) and renews the lease every `heartbeat_ms`.
//!    A 404 on a heartbeat means the gateway forgot it (restart, lease ran out): it registers
//!    again. Network errors are logged and retried; the agent does not die of them.
//! 3. If the runtime stops answering, it deregisters at once (sooner than the lease would run
//!    out), waits for the runtime to come back and registers again.
//! 4. On SIGTERM/SIGINT it drains: the gateway sends the worker nothing new, the agent waits
//!    until what it serves is done (at most `--drain-timeout`), deregisters and exits 0. A
//!    second signal cuts the wait short.

mod api;
mod runtime;
mod sidecar;

use crate::error::CliError;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Map, Value};
use tokio::time::{sleep, Instant};

use api::{ApiError, FleetApi, Lease};
use runtime::RuntimeProbe;

#[derive(Args)]
pub struct AgentArgs {
    /// Base URL of the gateway's admin port, where the registration API listens (required,
    /// here or in the environment).
    #[arg(long, alias = "url", env = crate::gateway_url::ADMIN_URL_ENV)]
    gateway: Option<String>,
    /// Trusting the admin port's private CA, and a client certificate for it.
    #[command(flatten)]
    tls: crate::tls_client::TlsClientArgs,
    /// An agent token (`switchyard agent-tokens create`) or the gateway's shared fleet token.
    #[arg(long, env = "SWITCHYARD_FLEET_TOKEN", hide_env_values = true)]
    fleet_token: String,
    /// Base URL of the runtime, without /v1: as the gateway reaches it, or, with --listen, as
    /// the sidecar does (on localhost).
    #[arg(long)]
    runtime_url: String,
    /// A TLS sidecar in front of the runtime.
    #[command(flatten)]
    sidecar: sidecar::SidecarArgs,
    /// What the runtime is.
    #[arg(long, value_parser = ["openai", "vllm", "sglang", "llamacpp", "tgi", "tgi-native"])]
    runtime: String,
    /// Bearer token the runtime expects, if any (sent to the gateway, never shown by it).
    #[arg(long, env = "SWITCHYARD_RUNTIME_API_KEY", hide_env_values = true)]
    runtime_api_key: Option<String>,
    /// The worker's name in the fleet [default: HOSTNAME-PORT].
    #[arg(long)]
    name: Option<String>,
    /// The model name clients ask for.
    #[arg(long)]
    model: String,
    /// The name the runtime knows the model by, when it differs.
    #[arg(long)]
    upstream_model: Option<String>,
    /// For tgi-native: how chat messages become a prompt (chatml, llama3, gemma).
    #[arg(long, value_parser = ["chatml", "llama3", "gemma"])]
    prompt_format: Option<String>,
    #[arg(long)]
    provider: String,
    #[arg(long)]
    region: String,
    /// GPU class, e.g. rtx4090, a100-80gb.
    #[arg(long)]
    gpu: String,
    #[arg(long)]
    vram_gb: Option<f64>,
    /// CUDA compute capability, e.g. 8.9.
    #[arg(long)]
    compute_capability: Option<String>,
    /// e.g. fp16, fp8, awq-int4.
    #[arg(long)]
    quantization: Option<String>,
    /// The model file the runtime serves: its sha256 is reported (computed at start), so the
    /// gateway can check it against `[models.NAME] weights_sha256`.
    #[arg(long, conflicts_with = "weights_sha256")]
    weights_file: Option<std::path::PathBuf>,
    /// The weights' sha256, where the file is not visible to the agent (from the model card).
    #[arg(long)]
    weights_sha256: Option<String>,
    /// e.g. datacenter, residential.
    #[arg(long)]
    network: Option<String>,
    /// What the GPU costs per hour in USD (for cost of goods).
    #[arg(long, default_value_t = 0.0)]
    price_per_hour: f64,
    /// Sequences the runtime runs at once.
    #[arg(long, default_value_t = 8)]
    max_concurrency: u32,
    /// Any other label, KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// How long running requests get to finish on shutdown: 60s, 2m, 500ms.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    drain_timeout: Duration,
}

/// "60s", "2m", "500ms" or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, CliError> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 60s, 2m or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("'{s}': unit must be ms, s or m").into()),
    };
    Duration::try_from_secs_f64(secs)
        .map_err(|e| format!("'{s}': {e}"))
        .map_err(CliError::from)
}

/// The machine's name, for the default worker name.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string())
}

impl AgentArgs {
    fn name(&self) -> Result<String, CliError> {
        if let Some(name) = &self.name {
            return Ok(name.clone());
        }
        let url = reqwest::Url::parse(&self.runtime_url)
            .map_err(|e| format!("--runtime-url '{}' is not a URL: {e}", self.runtime_url))?;
        let port = url.port_or_known_default().unwrap_or(80);
        Ok(format!("{}-{port}", hostname()))
    }

    /// The weights' sha256: given, or read from the file (once, at start; a multi-GB file
    /// takes a few seconds).
    fn weights_digest(&self) -> Result<Option<String>, CliError> {
        if let Some(digest) = &self.weights_sha256 {
            return Ok(Some(digest.to_ascii_lowercase()));
        }
        let Some(path) = &self.weights_file else {
            return Ok(None);
        };
        use sha2::Digest;
        use std::io::Read;
        let mut file = std::fs::File::open(path)
            .map_err(|e| CliError::Usage(format!("--weights-file {}: {e}", path.display())))?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| CliError::Usage(format!("--weights-file {}: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Some(digest))
    }

    /// The registration body; the gateway checks it and names any field it refuses. `url` is
    /// where the gateway calls the worker (the runtime, or the sidecar in front of it).
    fn registration(&self, name: &str, url: &str) -> Result<Value, CliError> {
        let mut extra = BTreeMap::new();
        for label in &self.labels {
            let (k, v) = label
                .split_once('=')
                .ok_or_else(|| format!("--label '{label}' must be KEY=VALUE"))?;
            extra.insert(k.trim().to_string(), v.trim().to_string());
        }
        let mut body = Map::new();
        body.insert("name".into(), json!(name));
        body.insert("url".into(), json!(url));
        body.insert("runtime".into(), json!(self.runtime));
        body.insert("model".into(), json!(self.model));
        body.insert("provider".into(), json!(self.provider));
        body.insert("region".into(), json!(self.region));
        body.insert("gpu".into(), json!(self.gpu));
        body.insert("price_per_hour".into(), json!(self.price_per_hour));
        body.insert("max_concurrency".into(), json!(self.max_concurrency));
        body.insert("labels".into(), json!(extra));
        let optional = [
            (
                "upstream_model",
                self.upstream_model.clone().map(Value::from),
            ),
            ("prompt_format", self.prompt_format.clone().map(Value::from)),
            ("api_key", self.runtime_api_key.clone().map(Value::from)),
            ("vram_gb", self.vram_gb.map(Value::from)),
            (
                "compute_capability",
                self.compute_capability.clone().map(Value::from),
            ),
            ("quantization", self.quantization.clone().map(Value::from)),
            ("network", self.network.clone().map(Value::from)),
            ("weights_sha256", self.weights_digest()?.map(Value::from)),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                body.insert(key.into(), v);
            }
        }
        Ok(Value::Object(body))
    }
}

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Exponential backoff between retries: 0.5 s doubling to 10 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(500))
    }

    fn next(&mut self) -> Duration {
        let now = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
        now
    }
}

/// Sleeps `d`, or returns `false` at once when the signal comes.
async fn pause(d: Duration, signal: &mut Signal) -> bool {
    tokio::select! {
        _ = sleep(d) => true,
        _ = signal => false,
    }
}

struct Agent {
    name: String,
    body: Value,
    api: FleetApi,
    probe: RuntimeProbe,
    runtime_url: String,
    drain_timeout: Duration,
}

/// How the heartbeat loop ended.
enum Left {
    /// With the last lease, whose heartbeat interval the drain keeps.
    Signal(Lease),
    RuntimeDown,
    Forgotten,
}

pub async fn run(args: AgentArgs) -> Result<(), CliError> {
    let gateway = crate::gateway_url::resolve(
        args.gateway.clone(),
        "SWITCHYARD_GATEWAY_URL",
        crate::gateway_url::ADMIN_URL_ENV,
    )
    .ok_or(
        "the gateway's admin URL is required (its admin port, where /fleet/v1 listens): \
             --gateway or SWITCHYARD_ADMIN_URL",
    )?;
    let name = args.name()?;
    let sidecar = args.sidecar.resolve(args.tls.ca_cert.as_ref(), &name)?;
    let url = sidecar
        .as_ref()
        .map_or(args.runtime_url.as_str(), |s| s.url.as_str());
    let body = args.registration(&name, url)?;
    let served = args.upstream_model.as_deref().unwrap_or(&args.model);
    let agent = Agent {
        probe: RuntimeProbe::new(
            &args.runtime_url,
            &args.runtime,
            served,
            args.runtime_api_key.clone(),
        )?,
        api: FleetApi::new(&gateway, args.fleet_token.clone(), &args.tls)?,
        name,
        body,
        runtime_url: args.runtime_url.clone(),
        drain_timeout: args.drain_timeout,
    };
    let mut signal: Signal = Box::pin(crate::shutdown_signal());
    tracing::info!(worker = %agent.name, gateway = %gateway, runtime = %agent.runtime_url, model = %args.model, "agent starting");
    let running = match &sidecar {
        Some(sidecar) => Some(sidecar.start(&args.runtime_url).await?),
        None => None,
    };
    let outcome = agent.run(&mut signal).await;
    // After the drain: the gateway's requests in flight went through the sidecar. Streams of
    // other replicas (the drain counted this gateway's) get the drain's time again to finish.
    if let Some(running) = running {
        running.stop(args.drain_timeout).await;
    }
    outcome
}

impl Agent {
    /// Registers and holds the worker in the fleet until a signal (then drains) or an error
    /// retrying cannot fix.
    async fn run(&self, signal: &mut Signal) -> Result<(), CliError> {
        loop {
            if !self.wait_for_runtime(signal).await {
                tracing::info!("signal received before registering; exiting");
                return Ok(());
            }
            let Some(lease) = self.register(signal).await? else {
                tracing::info!("signal received before registering; exiting");
                return Ok(());
            };
            match self.hold(lease, signal).await {
                Left::Signal(lease) => {
                    self.drain(lease).await;
                    return Ok(());
                }
                Left::Forgotten => {
                    tracing::warn!(worker = %self.name, "the gateway no longer knows this worker (restarted, or the lease ran out); registering again");
                }
                Left::RuntimeDown => {
                    // Out of rotation now rather than when the lease runs out.
                    match self.api.remove(&self.name).await {
                        Ok(()) => {
                            tracing::warn!(worker = %self.name, "runtime down: deregistered; waiting for it to come back")
                        }
                        Err(e) => {
                            tracing::warn!(worker = %self.name, error = %e, "runtime down; could not deregister (the lease will run out)")
                        }
                    }
                }
            }
        }
    }

    /// Until the runtime serves the model; `false` if a signal came first.
    async fn wait_for_runtime(&self, signal: &mut Signal) -> bool {
        let mut backoff = Backoff::new();
        loop {
            match self.probe.check().await {
                Ok(()) => {
                    tracing::info!(runtime = %self.runtime_url, "runtime is up and serving the model");
                    return true;
                }
                Err(why) => {
                    let wait = backoff.next();
                    tracing::warn!(runtime = %self.runtime_url, "runtime not ready: {why}; retrying in {:.1} s", wait.as_secs_f64());
                    if !pause(wait, signal).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Registers, retrying through network failures. A refusal that retrying cannot fix (bad
    /// token, invalid field, a name the config file owns) ends the agent with the reason.
    async fn register(&self, signal: &mut Signal) -> Result<Option<Lease>, CliError> {
        let mut backoff = Backoff::new();
        loop {
            match self.api.register(&self.body).await {
                Ok((lease, new)) => {
                    tracing::info!(
                        worker = %self.name,
                        lease_ms = lease.lease_ms,
                        heartbeat_ms = lease.heartbeat_ms,
                        "{}",
                        if new { "registered with the gateway" } else { "registration renewed" }
                    );
                    return Ok(Some(lease));
                }
                Err(ApiError::Status { status, message })
                    if matches!(status, 400 | 401 | 403 | 404 | 409) =>
                {
                    let hint = match status {
                        401 => " (check --fleet-token / SWITCHYARD_FLEET_TOKEN)",
                        404 => " (is SWITCHYARD_FLEET_TOKEN set on the gateway? without it the registration API is off)",
                        _ => "",
                    };
                    return Err(format!(
                        "the gateway refused the registration: {message} [HTTP {status}]{hint}"
                    )
                    .into());
                }
                Err(e) => {
                    let wait = backoff.next();
                    tracing::warn!(error = %e, "cannot register; retrying in {:.1} s", wait.as_secs_f64());
                    if !pause(wait, signal).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Heartbeats until a signal, the runtime going down, or the gateway forgetting us.
    async fn hold(&self, mut lease: Lease, signal: &mut Signal) -> Left {
        let mut runtime_failures = 0u32;
        loop {
            if !pause(Duration::from_millis(lease.heartbeat_ms), signal).await {
                return Left::Signal(lease);
            }
            // Two failed checks in a row, not one: a busy runtime may miss one answer.
            match self.probe.check().await {
                Ok(()) => runtime_failures = 0,
                Err(why) => {
                    runtime_failures += 1;
                    tracing::warn!(runtime = %self.runtime_url, "runtime check failed: {why}");
                    if runtime_failures >= 2 {
                        return Left::RuntimeDown;
                    }
                    continue;
                }
            }
            match self.api.heartbeat(&self.name).await {
                Ok(renewed) => lease = renewed,
                Err(e) if e.status() == Some(404) => return Left::Forgotten,
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat failed; will try again");
                }
            }
        }
    }

    /// Drain, wait for running requests (bounded), deregister. Heartbeats go on meanwhile:
    /// a drain may take longer than a lease.
    async fn drain(&self, lease: Lease) {
        tracing::info!(worker = %self.name, timeout_s = self.drain_timeout.as_secs_f64(), "signal received: draining");
        let mut outstanding = match self.api.drain(&self.name).await {
            Ok(n) => n,
            Err(e) if e.status() == Some(404) => {
                tracing::info!(worker = %self.name, "the gateway does not know this worker; nothing to drain");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell the gateway to drain; deregistering anyway");
                0
            }
        };
        let deadline = Instant::now() + self.drain_timeout;
        let heartbeat = Duration::from_millis(lease.heartbeat_ms);
        let mut next_heartbeat = Instant::now() + heartbeat;
        let mut again: Signal = Box::pin(crate::shutdown_signal());
        let mut logged = None;
        while outstanding > 0 {
            if logged != Some(outstanding) {
                tracing::info!(worker = %self.name, outstanding, "waiting for running requests to finish");
                logged = Some(outstanding);
            }
            if Instant::now() >= deadline {
                tracing::warn!(worker = %self.name, outstanding, "drain timeout: deregistering with requests still running");
                break;
            }
            if !pause(Duration::from_millis(250), &mut again).await {
                tracing::warn!(worker = %self.name, outstanding, "second signal: deregistering now");
                break;
            }
            if Instant::now() >= next_heartbeat {
                let _ = self.api.heartbeat(&self.name).await;
                next_heartbeat = Instant::now() + heartbeat;
            }
            match self.api.outstanding(&self.name).await {
                Ok(n) => outstanding = n,
                Err(e) if e.status() == Some(404) => {
                    tracing::info!(worker = %self.name, "the gateway already removed this worker");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the worker's state; will try again")
                }
            }
        }
        match self.api.remove(&self.name).await {
            Ok(()) => tracing::info!(worker = %self.name, "drained and deregistered"),
            Err(e) => {
                tracing::warn!(worker = %self.name, error = %e, "cannot deregister (the lease will run out)")
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let mut b = Backoff::new();
        let waits: Vec<u128> = (0..7).map(|_| b.next().as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
    }
}
