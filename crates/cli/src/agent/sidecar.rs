//! `switchyard agent --listen`: a TLS sidecar in front of a runtime bound to localhost, so
//! that prompts and answers cross the network encrypted between the gateway and the worker.
//!
//! - It serves the worker's certificate (`switchyard ca issue --worker NAME`), which the
//!   gateway checks against its `[upstream] tls_worker_ca` and the worker's name.
//! - It asks every client for a certificate from the operator's CA that carries
//!   `urn:switchyard:gateway` (`switchyard ca issue --gateway`): a stranger, or another
//!   worker's certificate, does not get to the runtime through it.
//! - It relays requests and streamed answers as they come, byte for byte, without reading
//!   them; the runtime's bearer key, if any, passes through.
//! - The listener holds connections to the gateway's own connection hygiene (header and
//!   handshake timeout, idle timeout, caps) and reloads its certificate when the files
//!   change or on SIGHUP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::Args;
use http::{HeaderName, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use switchyard_config::TlsFiles;
use switchyard_server::listener::tls::Tls;
use switchyard_server::listener::{self, ConnectionLimits};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::CliError;

#[derive(Args, Clone, Debug, Default)]
pub struct SidecarArgs {
    /// Serve the runtime over TLS on this address (e.g. 0.0.0.0:8443) and register that
    /// instead of --runtime-url, which should then listen on localhost only.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub listen: Option<SocketAddr>,
    /// The https:// URL the gateway reaches the sidecar at [default: https://LISTEN-IP:PORT,
    /// when --listen names an address].
    #[arg(long, requires = "listen")]
    pub advertise_url: Option<String>,
    /// The worker's certificate (PEM, chain after it): `switchyard ca issue --worker NAME`.
    #[arg(long, requires = "listen")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "listen")]
    pub tls_key: Option<PathBuf>,
    /// The CA the gateway's client certificate is from [default: --ca-cert].
    #[arg(long, requires = "listen")]
    pub tls_client_ca: Option<PathBuf>,
}

/// A sidecar, resolved from the flags.
pub struct Sidecar {
    listen: SocketAddr,
    /// What the gateway is told to call.
    pub url: String,
    files: TlsFiles,
}

impl SidecarArgs {
    /// `None` without `--listen`. `ca_cert` is the agent's `--ca-cert`, the default client CA;
    /// `worker` is the name the agent registers, which the certificate must carry.
    pub fn resolve(
        &self,
        ca_cert: Option<&PathBuf>,
        worker: &str,
    ) -> Result<Option<Sidecar>, CliError> {
        let Some(listen) = self.listen else {
            return Ok(None);
        };
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Err(CliError::Usage(
                "--listen needs --tls-cert and --tls-key".into(),
            ));
        };
        let client_ca = self.tls_client_ca.as_ref().or(ca_cert).ok_or_else(|| {
            CliError::Usage(
                "--listen needs the CA of the gateway's client certificate: --tls-client-ca \
                 or --ca-cert"
                    .into(),
            )
        })?;
        let url = match &self.advertise_url {
            Some(url) => url.clone(),
            None if !listen.ip().is_unspecified() => format!("https://{listen}"),
            None => {
                return Err(CliError::Usage(format!(
                    "--listen {listen} names no address the gateway can call: give \
                     --advertise-url https://HOST:{}",
                    listen.port()
                )))
            }
        };
        match reqwest::Url::parse(&url) {
            Ok(u) if u.scheme() == "https" && u.host_str().is_some() => {}
            _ => {
                return Err(CliError::Usage(format!(
                    "--advertise-url '{url}' must be an https:// URL"
                )))
            }
        }
        check_names_worker(cert, worker)?;
        Ok(Some(Sidecar {
            listen,
            url,
            files: TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: Some(client_ca.clone()),
            },
        }))
    }
}

/// Refuses a certificate that would not get this worker past the gateway, at start rather
/// than as failing health checks.
fn check_names_worker(cert: &PathBuf, worker: &str) -> Result<(), CliError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let leaf = CertificateDer::pem_file_iter(cert)
        .ok()
        .and_then(|mut certs| certs.next())
        .and_then(Result::ok)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--tls-cert {}: no certificate in it",
                cert.display()
            ))
        })?;
    let expected = format!("{}{worker}", switchyard_fleet::hop::WORKER_URI_PREFIX);
    let names = switchyard_fleet::hop::uri_names(&leaf);
    if names.contains(&expected) {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "--tls-cert {} does not name worker '{worker}' (it names: {}); issue one with \
         `switchyard ca issue --worker {worker}`",
        cert.display(),
        if names.is_empty() {
            "nothing".to_string()
        } else {
            names.join(", ")
        }
    )))
}

/// The sidecar, serving until stopped.
pub struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
    reloader: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish (at most `grace`), and returns.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        self.reloader.abort();
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}

impl Sidecar {
    /// Binds and serves; the caller registers only after this returns.
    pub async fn start(&self, runtime_url: &str) -> Result<Running, CliError> {
        let runtime: Uri = runtime_url
            .trim_end_matches('/')
            .parse()
            .map_err(|e| CliError::Usage(format!("--runtime-url '{runtime_url}': {e}")))?;
        if runtime.path() != "/" && !runtime.path().is_empty() {
            return Err(CliError::Usage(format!(
                "--runtime-url '{runtime_url}': behind --listen give the runtime's base URL \
                 with no path (http://127.0.0.1:8000)"
            )));
        }
        if runtime.scheme_str() != Some("http") {
            return Err(CliError::Usage(format!(
                "--runtime-url '{runtime_url}': behind --listen the runtime is called over \
                 http:// on this machine"
            )));
        }
        let loopback = reqwest::Url::parse(runtime_url)
            .map(|u| crate::admin_client::is_loopback(&u))
            .unwrap_or(false);
        if !loopback {
            tracing::warn!(runtime = %runtime_url, "the runtime is not on localhost: whoever reaches it there bypasses the sidecar's TLS and client check");
        }
        let tls = Tls::load_requiring(
            "agent",
            self.files.clone(),
            Some(switchyard_fleet::hop::GATEWAY_URI),
        )
        .map_err(|e| CliError::Usage(format!("--tls-cert/--tls-key: {e}")))?;
        let socket = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", self.listen)))?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let proxy = Arc::new(Proxy {
            runtime,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build(http),
        });
        let app = Router::new().fallback(relay).with_state(proxy);
        let limits = ConnectionLimits {
            listener: "agent",
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(75),
            max_connections: 4096,
            // Every connection comes from the gateways: a per-client cap would cut them off.
            max_connections_per_ip: 4096,
            http2_max_concurrent_streams: 256,
        };
        let (stop, mut stopped) = watch::channel(false);
        let reloader = tls.clone().spawn_reloader(Duration::from_secs(10));
        let task = tokio::spawn(listener::serve(
            socket,
            app,
            limits,
            Some(tls),
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            },
        ));
        tracing::info!(listen = %self.listen, url = %self.url, "TLS sidecar serving the runtime");
        Ok(Running {
            stop,
            task,
            reloader,
        })
    }
}

struct Proxy {
    runtime: Uri,
    client: Client<HttpConnector, Body>,
}

/// Headers about one connection, not the message: never forwarded (RFC 9110, 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

async fn relay(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    // Only the path goes on: the runtime's scheme and authority are ours. A path that is not
    // one (HTTP/2 lets a peer send `:path = "@elsewhere/..."`) would otherwise become part of
    // the authority.
    let uri = match parts.uri.path_and_query() {
        Some(pq) if pq.as_str().starts_with('/') => {
            let mut target = proxy.runtime.clone().into_parts();
            target.path_and_query = Some(pq.clone());
            Uri::from_parts(target).ok()
        }
        _ => None,
    };
    let Some(uri) = uri else {
        return error(StatusCode::BAD_REQUEST, "invalid request path");
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(http::header::HOST);
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    match proxy.client.request(Request::from_parts(parts, body)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the runtime did not answer");
            error(
                StatusCode::BAD_GATEWAY,
                "the runtime behind this agent did not answer",
            )
        }
    }
}

/// An answer in the OpenAI error shape: the gateway reads it as the worker's refusal.
fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "error": { "message": message, "type": "server_error", "param": null, "code": null }
    });
    (status, axum::Json(body)).into_response()
}
