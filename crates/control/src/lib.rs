//! Switchyard's control plane: everything that is not a customer's request. It depends on the
//! request path's public types (`switchyard-gateway`), never the other way.
//!
//! - [`admin`]: the admin API (tenants, keys, usage, SLA report, incidents, maintenance,
//!   probes pushed by `switchyard probe`, content logs, the fleet's drains).
//! - [`fleet_api`]: the registration API of `switchyard agent`.
//! - [`fleet_sync`]: one fleet across replicas: registrations, leases and drains in the shared
//!   store, each gateway's registry reconciled from it.
//! - [`directory_sync`]: tenants and keys changed through other replicas.
//! - [`status`]: the public status page and its admin view.
//! - [`alerting`]: the SLO evaluator, incidents and notifications.
//! - [`synthetic`]: synthetic probes of every worker.
//! - [`worker_scrape`]: reading workers' own `/metrics`.
//! - [`content_sweep`]: deleting expired content logs.
//! - [`token`]: the one check of the admin and fleet tokens.

pub mod admin;
pub mod alerting;
pub mod content_sweep;
pub mod directory_sync;
pub mod fleet_api;
pub mod fleet_sync;
pub mod state;
pub mod status;
pub mod synthetic;
pub mod token;
pub mod worker_scrape;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use switchyard_gateway::state::AppState;
use switchyard_metering::keys::hash_secret;
use tokio::task::JoinHandle;

pub use state::ControlState;

/// The control plane's secrets, never read from the config file.
#[derive(Default)]
pub struct ControlSecrets {
    /// Enables the admin API.
    pub admin_token: Option<String>,
    /// Enables the registration API (`/fleet/v1`) for `switchyard agent`.
    pub fleet_token: Option<String>,
}

/// The control plane, running beside a request path.
pub struct ControlPlane {
    pub state: Arc<ControlState>,
    /// The fleet's sync (and registration leases), synthetic probes, the SLO evaluator, the
    /// worker scraper, the content sweep and the directory's sync: all stopped together, none
    /// of them on a request's path.
    tasks: Vec<JoinHandle<()>>,
}

impl ControlPlane {
    /// Starts the control plane's tasks, once the fleet registered through other gateways on
    /// the same store (and the drains in force) are in this gateway's registry.
    pub async fn start(gateway: Arc<AppState>, secrets: ControlSecrets) -> Self {
        let notifier =
            alerting::notify::Notifier::new(&gateway.config.alerts, gateway.client.clone());
        let fleet_sync = fleet_sync::FleetSync::new(gateway.clone());
        // Listening before the first read: a change made in between is not missed.
        let fleet_feed = fleet_sync::task::open_feed(&fleet_sync).await;
        if let Err(e) = fleet_sync.reconcile().await {
            tracing::error!(error = %e, "cannot read the fleet from the store at start; retrying in the background");
        }
        let state = Arc::new(ControlState {
            admin_token: secrets.admin_token.as_deref().map(hash_secret),
            fleet_token: secrets.fleet_token.as_deref().map(hash_secret),
            notifier,
            fleet_sync: fleet_sync.clone(),
            gateway,
        });
        let config = &state.config;
        let tasks = vec![
            fleet_sync::task::spawn(
                fleet_sync,
                fleet_feed,
                Duration::from_millis(config.state.directory_refresh_ms),
                config.fleet_settings().lease_ms,
            ),
            worker_scrape::spawn(
                state.fleet.clone(),
                state.worker_metrics.clone(),
                Duration::from_millis(config.metrics.worker_scrape_interval_ms),
                Duration::from_millis(config.metrics.worker_scrape_timeout_ms),
            ),
            content_sweep::spawn(
                state.directory.store().clone(),
                Duration::from_millis(config.content_log.sweep_interval_ms),
            ),
            synthetic::spawn(state.clone()),
            alerting::spawn(state.clone()),
            directory_sync::spawn(
                state.directory.clone(),
                Duration::from_millis(config.state.directory_refresh_ms),
            ),
        ];
        Self { state, tasks }
    }

    /// The routes of the admin port (`[admin] listen`): the admin API, the registration API
    /// and the status page's operator view, with their state.
    pub fn admin_routes(&self) -> Router {
        Router::new()
            .merge(admin::router())
            .merge(fleet_api::router())
            .merge(status::admin_router())
            .with_state(self.state.clone())
    }

    /// The control plane's routes on the public port: the status page.
    pub fn public_routes(&self) -> Router {
        status::router().with_state(self.state.clone())
    }

    /// On the public port when the admin port is its own: `/admin/...` and `/fleet/...` get a
    /// 404 that says where they are served, for the operator whose CLI still points here.
    pub fn elsewhere_routes() -> Router {
        async fn elsewhere(uri: axum::http::Uri) -> switchyard_gateway::error::GatewayError {
            switchyard_gateway::error::GatewayError::NotFound(format!(
                "{} is not served on this port: the admin and fleet APIs listen on the admin \
                 port ([admin] listen, 127.0.0.1:8081 by default; the CLI reads \
                 SWITCHYARD_ADMIN_URL)",
                uri.path()
            ))
        }
        Router::new()
            .route("/admin/{*rest}", axum::routing::any(elsewhere))
            .route("/fleet/{*rest}", axum::routing::any(elsewhere))
    }

    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}
