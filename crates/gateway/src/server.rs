//! Starting and stopping the gateway: build the fleet, run the first health check before
//! listening (so the first request finds ready workers), serve, and on shutdown let in-flight
//! requests finish within the grace period. Simulated workers are the caller's to start
//! (`switchyard_sim::start_sim_workers`): the gateway serves whatever `[[workers]]` it is given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use switchyard_fleet::{Fleet, HealthChecker};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use std::collections::BTreeMap;

use switchyard_metering::clock::{Clock, SystemClock};
use switchyard_metering::directory::{unix_ms, Directory};
use switchyard_metering::keys::{display_prefix, hash_secret};
use switchyard_metering::ledger::{Ledger, LedgerConfig, LedgerTask};
use switchyard_metering::store::sqlite::SqliteStore;
use switchyard_metering::{ApiKey, LimitOverrides, Scopes, Store, StoreError, Tenant};

use crate::handlers::{inference, method_not_allowed, models, not_found, probes};
use crate::state::AppState;
use switchyard_config::Config;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the config has [[sim_workers]] that were not started: start them first (switchyard_sim::start_sim_workers) and pass their [[workers]] entries")]
    SimWorkersNotStarted,
    #[error("invalid fleet: {0}")]
    Fleet(#[from] switchyard_fleet::FleetError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error("state store: {0}")]
    Store(#[from] StoreError),
}

/// Secrets handed to the gateway at start, never read from the config file.
#[derive(Default)]
pub struct Secrets {
    /// A key for the dev tenant that lives only in memory.
    pub dev_key: Option<String>,
    /// Enables the admin API.
    pub admin_token: Option<String>,
    /// Enables the registration API (`/fleet/v1`) for `switchyard agent`.
    pub fleet_token: Option<String>,
}

pub struct RunningGateway {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    health: JoinHandle<()>,
    /// Removes registered workers whose lease ran out.
    leases: JoinHandle<()>,
    /// Synthetic probes (see [`crate::synthetic`]).
    probes: JoinHandle<()>,
    /// The SLO evaluator (see [`crate::alerting`]).
    alerts: JoinHandle<()>,
    /// Reads workers' own `/metrics` (see [`crate::worker_scrape`]).
    worker_scrape: JoinHandle<()>,
    /// Deletes expired content logs (see [`crate::content_log::sweep`]).
    content_sweep: JoinHandle<()>,
    /// Records the minutes this process is alive (see [`crate::heartbeat`]).
    heartbeat: JoinHandle<()>,
    ledger: Option<LedgerTask>,
    grace: Duration,
    /// Serving with `/readyz` at 503 before the listener closes.
    delay: Duration,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(inference::chat))
        .route("/v1/completions", post(inference::completions))
        .route("/v1/models", get(models::list))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(crate::handlers::metrics::metrics))
        .merge(crate::admin::router())
        .merge(crate::fleet_api::router())
        .merge(crate::status::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(crate::request_id::AssignRequestIdLayer)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            use axum::response::IntoResponse;
            crate::error::GatewayError::Internal(
                "the gateway hit a bug handling this request".into(),
            )
            .into_response()
        }))
        .with_state(state)
}

pub fn http_client(config: &Config) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(config.upstream.connect_timeout_ms))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        // Workers are reached directly; an HTTP_PROXY meant for the operator's shell must not
        // silently reroute inference traffic.
        .no_proxy()
        // A worker never has a reason to redirect an inference call, and following one would
        // re-send the prompt somewhere the operator did not configure.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let store = if config.state.path.as_os_str() == ":memory:" {
        SqliteStore::in_memory().await?
    } else {
        SqliteStore::open(&config.state.path).await?
    };
    Ok(Arc::new(store))
}

/// The dev tenant exists so that the printed dev key works on a fresh state file.
async fn ensure_dev_tenant(store: &dyn Store, config: &Config) -> Result<(), StoreError> {
    let dev = &config.dev_tenant;
    if store.get_tenant(&dev.id).await?.is_none() {
        store
            .create_tenant(&Tenant {
                id: dev.id.clone(),
                tier: dev.tier.clone(),
                overrides: LimitOverrides::default(),
                prepaid: false,
                created_at: unix_ms(),
                content_logging: Default::default(),
            })
            .await?;
    }
    Ok(())
}

fn dev_key(secret: &str, tenant: &str) -> ApiKey {
    ApiKey {
        id: "key_dev".into(),
        tenant_id: tenant.into(),
        name: "dev key (memory only)".into(),
        prefix: display_prefix(secret),
        hash: hash_secret(secret),
        scopes: Scopes::default(),
        expires_at: None,
        revoked_at: None,
        created_at: unix_ms(),
        limits: LimitOverrides::default(),
    }
}

pub async fn start(
    config: Config,
    secrets: Secrets,
    listener: TcpListener,
) -> Result<RunningGateway, StartError> {
    start_with_clock(config, secrets, listener, Arc::new(SystemClock)).await
}

/// [`start`] with the clock SLA records are stamped by (tests move time on with a
/// `ManualClock`).
pub async fn start_with_clock(
    config: Config,
    secrets: Secrets,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
) -> Result<RunningGateway, StartError> {
    if !config.sim_workers.is_empty() {
        return Err(StartError::SimWorkersNotStarted);
    }
    let store = open_store(&config).await?;
    ensure_dev_tenant(&*store, &config).await?;
    let instance = crate::heartbeat::instance_name();
    let ephemeral = secrets
        .dev_key
        .iter()
        .map(|k| dev_key(k, &config.dev_tenant.id))
        .collect();
    let tiers: BTreeMap<_, _> = config.tiers.clone();
    let directory = Arc::new(Directory::load(store.clone(), tiers, ephemeral).await?);
    let (ledger, ledger_task) = Ledger::spawn(
        store,
        LedgerConfig {
            queue: config.state.ledger_queue,
            batch: config.state.ledger_batch,
            flush_deadline: Duration::from_millis(config.state.ledger_flush_ms),
            instance: instance.clone(),
        },
    );
    let fleet = Arc::new(Fleet::with_policy(
        config.workers.clone(),
        config.outlier.clone(),
    )?);
    let client = http_client(&config)?;
    let checker = HealthChecker::new(fleet.clone(), client.clone(), config.health.clone());
    checker.check_all_once().await;
    let health = checker.spawn();
    let leases = crate::fleet_api::leases::spawn(fleet.clone(), config.fleet_settings().lease_ms);

    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let delay = Duration::from_millis(config.server.shutdown_delay_ms);
    let config_upstream = config.upstream.clone();
    let alerts_config = config.alerts.clone();
    let client_for_notices = client.clone();
    let routing = config.routing.clone();
    let state = Arc::new(AppState {
        config,
        fleet,
        directory,
        ledger,
        admin_token: secrets.admin_token.as_deref().map(hash_secret),
        fleet_token: secrets.fleet_token.as_deref().map(hash_secret),
        registered_models: crate::fleet_api::RegisteredModels::default(),
        shutting_down: std::sync::atomic::AtomicBool::new(false),
        client,
        upstream: crate::upstream::client::UpstreamClient::new(&config_upstream),
        retry_budget: crate::upstream::budget::RetryBudget::new(
            config_upstream.retry_budget_ratio,
            config_upstream.retry_budget_min_per_sec,
        ),
        hedge_budget: crate::upstream::budget::RetryBudget::new(
            config_upstream.hedge_budget_ratio,
            1,
        ),
        queue: crate::route::queue::WaitQueue::new(routing.max_queue),
        sticky: crate::route::sticky::StickyTable::new(
            Duration::from_secs(routing.sticky_idle_s.max(1)),
            routing.sticky_capacity,
        ),
        canaries: crate::route::canary::Canaries::new(&routing.canary),
        worker_metrics: Default::default(),
        notifier: crate::alerting::notify::Notifier::new(&alerts_config, client_for_notices),
        clock,
        started_at_ms: unix_ms(),
        instance,
    });
    crate::metrics::install();
    {
        let workers = state.fleet.workers();
        crate::metrics::zero_counters(
            state.config.tiers.keys().map(String::as_str),
            workers.iter().map(|w| {
                let s = &w.spec;
                (s.model.as_str(), s.region.as_str(), s.provider.as_str())
            }),
        );
    }
    let worker_scrape = {
        let m = &state.config.metrics;
        crate::worker_scrape::spawn(
            state.fleet.clone(),
            state.client.clone(),
            state.worker_metrics.clone(),
            Duration::from_millis(m.worker_scrape_interval_ms),
            Duration::from_millis(m.worker_scrape_timeout_ms),
        )
    };
    let content_sweep = crate::content_log::sweep::spawn(
        state.directory.store().clone(),
        Duration::from_millis(state.config.content_log.sweep_interval_ms),
    );
    let heartbeat = crate::heartbeat::spawn(state.clone()).await;
    let probes = crate::synthetic::spawn(state.clone());
    let alerts = crate::alerting::spawn(state.clone());
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(state.clone());
    let server = tokio::spawn(async move {
        // Streamed chunks are small writes: without TCP_NODELAY, Nagle's algorithm would hold
        // each back until the client acknowledged the previous one (40 ms with delayed ACKs).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(RunningGateway {
        addr,
        state,
        stop: Some(stop),
        server,
        health,
        leases,
        probes,
        alerts,
        worker_scrape,
        content_sweep,
        heartbeat,
        ledger: Some(ledger_task),
        grace,
        delay,
    })
}

impl RunningGateway {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Reports not-ready (`/readyz` 503, `"draining": true`) and keeps serving for the
    /// shutdown delay, so that load balancers stop sending; then stops accepting connections
    /// and waits for in-flight requests, at most the grace period.
    pub async fn shutdown(mut self) {
        self.state
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Release);
        if !self.delay.is_zero() {
            tracing::info!(
                delay_ms = self.delay.as_millis() as u64,
                "draining: /readyz reports 503 before the listener closes"
            );
            tokio::time::sleep(self.delay).await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(self.grace, &mut self.server).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
                self.server.abort();
            }
        }
        self.health.abort();
        self.leases.abort();
        self.probes.abort();
        self.alerts.abort();
        self.worker_scrape.abort();
        self.content_sweep.abort();
        // Every request has settled by now (or was aborted and settled on drop): write the
        // queued usage records before returning. The heartbeat goes on meanwhile: while this
        // process is seen alive, no other settles its open requests as interrupted under the
        // final records it is still writing.
        if let Some(ledger) = self.ledger.take() {
            ledger.shutdown(self.grace).await;
        }
        self.heartbeat.abort();
    }
}
