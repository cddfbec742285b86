//! Building the request path and stopping it: open the store, load the key directory, start
//! the ledger writer, build the fleet and run its first health check (so the first request
//! finds ready workers), and the routes of the OpenAI API, `/healthz`, `/readyz` and
//! `/metrics`. Listening, the control plane and the shutdown order are the composition's
//! (`switchyard-server`). Simulated workers are the caller's to start
//! (`switchyard_sim::start_sim_workers`): the gateway serves whatever `[[workers]]` it is given.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use switchyard_config::{Config, RedisDownPolicy, StateBackend};
use switchyard_fleet::hop::{FleetFiles, FleetTrust};
use switchyard_fleet::{Fleet, HealthChecker, HopSettings, Hops};
use switchyard_metering::clock::Clock;
use switchyard_metering::directory::{unix_ms, Directory};
use switchyard_metering::keys::{display_prefix, hash_secret};
use switchyard_metering::ledger::{Ledger, LedgerConfig, LedgerTask};
use switchyard_metering::shared_limits::{DownPolicy, SharedLimits, SharedLimitsSettings};
use switchyard_metering::store::postgres::PgStore;
use switchyard_metering::store::sqlite::SqliteStore;
use switchyard_metering::{ApiKey, LimitOverrides, Scopes, Store, StoreError, Tenant};
use tokio::task::JoinHandle;

use crate::handlers::{health, inference, method_not_allowed, models, not_found};
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the config has [[sim_workers]] that were not started: start them first (switchyard_sim::start_sim_workers) and pass their [[workers]] entries")]
    SimWorkersNotStarted,
    #[error("invalid fleet: {0}")]
    Fleet(#[from] switchyard_fleet::FleetError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("worker TLS ([upstream] tls_worker_ca, tls_client_cert, tls_client_key): {0}")]
    WorkerTls(String),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error("[filters]: {0}")]
    Filters(String),
    #[error("TLS on the {listener} port: {message}")]
    Tls {
        listener: &'static str,
        message: String,
    },
    #[error("cannot listen on the admin port {addr} ([admin] listen): {source}")]
    AdminListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    #[error("shared limits: {0}")]
    SharedLimits(#[from] switchyard_metering::shared_limits::SharedLimitsError),
}

/// The request path, built and running: its state, and the background work it cannot do
/// without (active health checks, this process's heartbeat, the ledger writer).
pub struct RequestPath {
    pub state: Arc<AppState>,
    health: JoinHandle<()>,
    /// Records the minutes this process is alive (see [`crate::heartbeat`]).
    heartbeat: JoinHandle<()>,
    /// Counts this replica in Redis, and notices Redis coming back (see
    /// `switchyard_metering::shared_limits`).
    limits_heartbeat: Option<JoinHandle<()>>,
    ledger: Option<LedgerTask>,
}

/// The request path's routes, with their state.
pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(inference::chat))
        .route("/v1/completions", post(inference::completions))
        .route("/v1/models", get(models::list))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(crate::handlers::metrics::metrics))
        .with_state(state)
}

/// What every route of the listener gets, whichever plane it belongs to: its body on the
/// clock, a request id, the OpenAI error shape for unknown routes and methods, and a 500 in
/// that shape for a panic.
pub fn finish(app: Router, server: &switchyard_config::ServerConfig) -> Router {
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            crate::body::BodyClock::from_config(server),
            crate::body::guard,
        ))
        .layer(crate::request_id::AssignRequestIdLayer)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            use axum::response::IntoResponse;
            crate::error::GatewayError::Internal(
                "the gateway hit a bug handling this request".into(),
            )
            .into_response()
        }))
}

/// The client of the services the gateway calls besides workers (the moderation hook, alert
/// webhooks); workers are reached through their hops (`switchyard_fleet::hop`).
pub fn http_client(config: &Config) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(config.upstream.connect_timeout_ms))
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        // An HTTP_PROXY meant for the operator's shell must not silently reroute prompts
        // sent to the moderation hook.
        .no_proxy()
        // A redirect would re-send a prompt somewhere the operator did not configure.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// How workers are reached (`[upstream]`'s plaintext policy and worker TLS; see
/// `switchyard_fleet::hop`).
fn hops(upstream: &switchyard_config::UpstreamConfig) -> Result<Hops, StartError> {
    let fleet = match &upstream.tls_worker_ca {
        Some(ca) => {
            let files = FleetFiles {
                ca: ca.clone(),
                identity: upstream
                    .tls_client_cert
                    .clone()
                    .zip(upstream.tls_client_key.clone()),
            };
            Some(Arc::new(
                FleetTrust::load(files).map_err(StartError::WorkerTls)?,
            ))
        }
        None => None,
    };
    let settings = HopSettings {
        connect_timeout: Duration::from_millis(upstream.connect_timeout_ms),
        plaintext: upstream.plaintext_hops,
    };
    Ok(Hops::new(settings, fleet))
}

/// The store `[state]` names: SQLite (a file, or memory) or Postgres.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let backend = config.state.backend().map_err(StoreError::Invalid)?;
    Ok(match backend {
        StateBackend::SqliteMemory => Arc::new(SqliteStore::in_memory().await?),
        StateBackend::SqliteFile(path) => Arc::new(SqliteStore::open(&path).await?),
        StateBackend::Postgres { url, schema: None } => Arc::new(PgStore::connect(&url).await?),
        StateBackend::Postgres {
            url,
            schema: Some(schema),
        } => Arc::new(PgStore::connect_in_schema(&url, &schema).await?),
    })
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

fn dev_key_record(secret: &str, tenant: &str) -> ApiKey {
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

/// Builds the request path on `config` (whose `[[sim_workers]]` must have been started),
/// with an in-memory dev key if one is given, and SLA time from `clock`.
pub async fn build(
    config: Config,
    dev_key: Option<&str>,
    clock: Arc<dyn Clock>,
) -> Result<RequestPath, StartError> {
    if !config.sim_workers.is_empty() {
        return Err(StartError::SimWorkersNotStarted);
    }
    let filters =
        crate::filter::ContentFilters::from_config(&config.filters).map_err(StartError::Filters)?;
    let store = open_store(&config).await?;
    ensure_dev_tenant(&*store, &config).await?;
    let instance = crate::heartbeat::instance_name();
    let ephemeral = dev_key
        .iter()
        .map(|k| dev_key_record(k, &config.dev_tenant.id))
        .collect();
    let tiers: BTreeMap<_, _> = config.tiers.clone();
    let directory = Arc::new(Directory::load(store.clone(), tiers, ephemeral).await?);
    let shared_limits = shared_limits(&config, &instance)?;
    let limits_heartbeat = shared_limits
        .as_ref()
        .map(|shared| shared.spawn_heartbeat(directory.clone()));
    let (ledger, ledger_task) = Ledger::spawn(
        store,
        LedgerConfig {
            queue: config.state.ledger_queue,
            batch: config.state.ledger_batch,
            flush_deadline: Duration::from_millis(config.state.ledger_flush_ms),
            instance: instance.clone(),
        },
    );
    let fleet = Arc::new(Fleet::with_hops(
        config.workers.clone(),
        config.outlier.clone(),
        Arc::new(hops(&config.upstream)?),
    )?);
    let client = http_client(&config)?;
    let checker = HealthChecker::new(fleet.clone(), config.health.clone());
    checker.check_all_once().await;
    let health = checker.spawn();

    let config_upstream = config.upstream.clone();
    let routing = config.routing.clone();
    let state = Arc::new(AppState {
        config,
        fleet,
        directory,
        shared_limits,
        ledger,
        registered_models: Default::default(),
        shutting_down: std::sync::atomic::AtomicBool::new(false),
        client,
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
        filters,
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
    let heartbeat = crate::heartbeat::spawn(state.clone()).await;
    Ok(RequestPath {
        state,
        health,
        heartbeat,
        limits_heartbeat,
        ledger: Some(ledger_task),
    })
}

/// The Redis limiter when `[limits] redis_url` is set. It connects lazily: a replica starts,
/// and serves by `on_redis_down`, while Redis is down.
fn shared_limits(config: &Config, instance: &str) -> Result<Option<Arc<SharedLimits>>, StartError> {
    let limits = &config.limits;
    let Some(url) = &limits.redis_url else {
        if matches!(config.state.backend(), Ok(StateBackend::Postgres { .. })) {
            tracing::warn!(target: "switchyard::limits", "state is in Postgres but limits are counted in this process only: with several replicas, set SWITCHYARD_REDIS_URL (or [limits] redis_url) so that they share them");
        }
        return Ok(None);
    };
    Ok(Some(SharedLimits::new(SharedLimitsSettings {
        url: url.clone(),
        prefix: limits.redis_prefix.clone(),
        policy: match limits.on_redis_down {
            RedisDownPolicy::Local => DownPolicy::Local,
            RedisDownPolicy::Reject => DownPolicy::Reject,
        },
        timeout: Duration::from_millis(limits.redis_timeout_ms),
        retry: Duration::from_millis(limits.redis_retry_ms),
        lease: Duration::from_millis(limits.lease_ms),
        instance: instance.to_string(),
    })?))
}

impl RequestPath {
    /// Once the listener is closed and every request has settled (or was aborted and settled
    /// on drop): stop health checks and write the queued usage records, within `grace`. The
    /// heartbeat goes on meanwhile: while this process is seen alive, no other settles its
    /// open requests as interrupted under the final records it is still writing.
    pub async fn stop(mut self, grace: Duration) {
        self.health.abort();
        if let Some(ledger) = self.ledger.take() {
            ledger.shutdown(grace).await;
        }
        self.heartbeat.abort();
        if let Some(limits) = &self.limits_heartbeat {
            limits.abort();
        }
    }
}
