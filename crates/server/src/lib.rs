//! The composition root: the public listener serving the request path (`switchyard-gateway`)
//! and the status page, the admin port serving the rest of the control plane
//! (`switchyard-control`), both under the connection limits (`listener`), and the order they
//! stop in. `switchyard serve` and the integration tests start the gateway through
//! here.

pub mod listener;
mod worker_hops;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::AdminListen;
use switchyard_control::{ControlPlane, ControlSecrets, ControlState};
use switchyard_gateway::state::AppState;
use switchyard_gateway::RequestPath;
use switchyard_metering::clock::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::watch;
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
    /// The admin port's address; `None` when `[admin] listen = "public"` serves the admin and
    /// fleet APIs on `addr`.
    pub admin_addr: Option<SocketAddr>,
    /// The request path's state.
    pub state: Arc<AppState>,
    /// The control plane's state (tokens, notifier), which reads the request path's.
    pub control: Arc<ControlState>,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    admin_server: Option<JoinHandle<std::io::Result<()>>>,
    request_path: Option<RequestPath>,
    control_plane: Option<ControlPlane>,
    grace: Duration,
    /// Serving with `/readyz` at 503 before the listener closes.
    delay: Duration,
    /// Reload the TLS files on change or SIGHUP.
    tls_reloaders: Vec<JoinHandle<()>>,
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
    // Bound before anything starts, so that a taken port fails the start cleanly.
    let admin_listener = match config.admin.listen().map_err(std::io::Error::other)? {
        AdminListen::Own(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::AdminListen { addr, source })?,
        ),
        AdminListen::Public => None,
    };
    let public_tls = load_tls(listener::PUBLIC, config.server.tls())?;
    let admin_tls = match admin_listener {
        Some(_) => load_tls(listener::ADMIN, config.admin.tls())?,
        None => None,
    };
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
    let mut public = switchyard_gateway::routes(state.clone()).merge(control_plane.public_routes());
    public = match admin_listener {
        Some(_) => public.merge(ControlPlane::elsewhere_routes()),
        None => public.merge(control_plane.admin_routes()),
    };
    let public = switchyard_gateway::finish(public, &state.config.server);
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let reload_every = Duration::from_millis(state.config.server.tls_reload_interval_ms);
    let tls_reloaders = [&public_tls, &admin_tls]
        .into_iter()
        .flatten()
        .map(|tls| tls.clone().spawn_reloader(reload_every))
        .chain(
            state
                .fleet
                .hops()
                .fleet_trust()
                .map(|trust| worker_hops::spawn_reloader(trust.clone(), reload_every)),
        )
        .collect();
    let server = tokio::spawn(listener::serve(
        listener,
        public,
        listener::ConnectionLimits::from_config(&state.config, listener::PUBLIC),
        public_tls,
        stop_signal(stopped.clone()),
    ));
    let (admin_addr, admin_server) = match admin_listener {
        Some(admin_listener) => {
            let admin_addr = admin_listener.local_addr()?;
            if !admin_addr.ip().is_loopback() && admin_tls.is_none() {
                tracing::warn!(%admin_addr, "the admin port listens beyond loopback in plain HTTP: tokens cross the network in the clear; set [admin] tls_cert and tls_key, and keep it behind a firewall");
            }
            let app =
                switchyard_gateway::finish(control_plane.admin_routes(), &state.config.server);
            let served = listener::serve(
                admin_listener,
                app,
                listener::ConnectionLimits::from_config(&state.config, listener::ADMIN),
                admin_tls,
                stop_signal(stopped),
            );
            (Some(admin_addr), Some(tokio::spawn(served)))
        }
        None => (None, None),
    };
    Ok(RunningGateway {
        addr,
        admin_addr,
        state,
        control: control_plane.state.clone(),
        stop,
        server,
        admin_server,
        request_path: Some(request_path),
        control_plane: Some(control_plane),
        grace,
        delay,
        tls_reloaders,
    })
}

/// A listener's TLS files, read now: a missing or broken file fails the start.
fn load_tls(
    name: &'static str,
    files: Result<Option<switchyard_config::TlsFiles>, String>,
) -> Result<Option<Arc<listener::tls::Tls>>, StartError> {
    let tls_error = |message: String| StartError::Tls {
        listener: name,
        message,
    };
    match files.map_err(tls_error)? {
        Some(files) => listener::tls::Tls::load(name, files)
            .map(Some)
            .map_err(|e| tls_error(e.to_string())),
        None => Ok(None),
    }
}

/// Resolves once the gateway is told to stop.
async fn stop_signal(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

impl RunningGateway {
    pub fn url(&self) -> String {
        let scheme = match self.state.config.server.tls_cert {
            Some(_) => "https",
            None => "http",
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Where the admin and registration APIs are served: the admin port, or the public one
    /// when `[admin] listen = "public"`.
    pub fn admin_url(&self) -> String {
        match self.admin_addr {
            Some(addr) => {
                let scheme = match self.state.config.admin.tls_cert {
                    Some(_) => "https",
                    None => "http",
                };
                format!("{scheme}://{addr}")
            }
            None => self.url(),
        }
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
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + self.grace;
        for server in std::iter::once(&mut self.server).chain(self.admin_server.as_mut()) {
            if tokio::time::timeout_at(deadline, &mut *server)
                .await
                .is_err()
            {
                tracing::warn!("shutdown grace period over; closing remaining connections");
                server.abort();
            }
        }
        for reloader in &self.tls_reloaders {
            reloader.abort();
        }
        if let Some(control) = self.control_plane.take() {
            control.stop();
        }
        if let Some(request_path) = self.request_path.take() {
            request_path.stop(self.grace).await;
        }
    }
}
