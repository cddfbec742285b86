//! The composition root: one listener serving the request path (`switchyard-gateway`) and
//! the control plane (`switchyard-control`) under the connection limits (`listener`), and the
//! order they stop in. `switchyard serve` and the integration tests start the gateway through
//! here.

mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard_control::{ControlPlane, ControlSecrets, ControlState};
use switchyard_gateway::state::AppState;
use switchyard_gateway::RequestPath;
use switchyard_metering::clock::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use switchyard_gateway::{Config, StartError};

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
    /// The request path's state.
    pub state: Arc<AppState>,
    /// The control plane's state (tokens, notifier), which reads the request path's.
    pub control: Arc<ControlState>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    request_path: Option<RequestPath>,
    control_plane: Option<ControlPlane>,
    grace: Duration,
    /// Serving with `/readyz` at 503 before the listener closes.
    delay: Duration,
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
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let delay = Duration::from_millis(config.server.shutdown_delay_ms);
    let request_path = switchyard_gateway::build(config, secrets.dev_key.as_deref(), clock).await?;
    let state = request_path.state.clone();
    let control_plane = ControlPlane::start(
        state.clone(),
        ControlSecrets {
            admin_token: secrets.admin_token,
            fleet_token: secrets.fleet_token,
        },
    )
    .await;
    let app = switchyard_gateway::finish(
        switchyard_gateway::routes(state.clone()).merge(control_plane.routes()),
        &state.config.server,
    );
    let limits = listener::ConnectionLimits::from_config(&state.config);
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(listener::serve(listener, app, limits, async move {
        let _ = stopped.await;
    }));
    Ok(RunningGateway {
        addr,
        state,
        control: control_plane.state.clone(),
        stop: Some(stop),
        server,
        request_path: Some(request_path),
        control_plane: Some(control_plane),
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
    /// and waits for in-flight requests, at most the grace period; then stops the control
    /// plane and flushes the ledger.
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
        if let Some(control) = self.control_plane.take() {
            control.stop();
        }
        if let Some(request_path) = self.request_path.take() {
            request_path.stop(self.grace).await;
        }
    }
}
