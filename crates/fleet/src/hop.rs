//! How the gateway reaches a worker: the HTTP clients a worker's calls go through (inference,
//! health checks, tokenizer, `/metrics`), and which hops are allowed at all.
//!
//! - A worker's `trust` says how its TLS certificate is checked. `public` (the default): the
//!   usual web PKI, valid for the URL's host (a centralized provider's endpoint). `fleet`:
//!   the worker sits behind `switchyard agent --listen` (a TLS sidecar in front of a runtime
//!   bound to localhost); its certificate must chain to the operator's CA
//!   (`[upstream] tls_worker_ca`) and name the worker (`urn:switchyard:worker:NAME`, made
//!   by `switchyard ca issue --worker NAME`), and the gateway presents its own client
//!   certificate. Host names are not checked on fleet hops: a marketplace node's address is
//!   not known when its certificate is made, and the name of the worker is what is trusted.
//! - Plain `http://` hops are allowed only where `[upstream] plaintext_hops` says so.
//!
//! Public hops share one pool. A fleet hop gets clients of its own, because the certificate it
//! accepts depends on the worker, and a pool shared by host and port would hand one worker's
//! verified connection to another.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde::{Deserialize, Serialize};

use crate::worker::WorkerSpec;

/// The URI a certificate carries (as a subject alternative name) to name a worker.
pub const WORKER_URI_PREFIX: &str = "urn:switchyard:worker:";
/// The URI a gateway's client certificate carries; agents' sidecars accept no other client.
pub const GATEWAY_URI: &str = "urn:switchyard:gateway";

/// The client of inference calls: hyper's pooled client, without reqwest's per-request layers
/// (see the gateway's `upstream::client`).
pub type InferenceClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How a worker's certificate is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HopTrust {
    /// The web PKI, valid for the URL's host.
    #[default]
    Public,
    /// The operator's CA, naming the worker; the gateway shows its client certificate.
    Fleet,
}

impl HopTrust {
    pub fn is_public(&self) -> bool {
        *self == HopTrust::Public
    }
}

/// Which plain-HTTP worker URLs are allowed (`[upstream] plaintext_hops`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaintextHops {
    /// None: every worker is reached over TLS.
    None,
    /// A runtime on this machine (`127.0.0.0/8`, `::1`, `localhost`): the traffic never
    /// leaves it.
    #[default]
    Loopback,
    /// Also private addresses (RFC 1918, IPv6 unique-local): for a network the operator
    /// encrypts itself (a WireGuard overlay, a VPC). Host names are not resolved to decide:
    /// give the address. Carrier-grade NAT space (`100.64.0.0/10`, where Tailscale lives too)
    /// is not private: an ISP's customers share it.
    Private,
    /// Any: prompts cross the network readable by whoever is on the path.
    Any,
}

impl PlaintextHops {
    pub fn as_str(self) -> &'static str {
        match self {
            PlaintextHops::None => "none",
            PlaintextHops::Loopback => "loopback",
            PlaintextHops::Private => "private",
            PlaintextHops::Any => "any",
        }
    }

    /// Whether a worker at `url` may be reached this way; `https://` URLs always may.
    pub fn allows(self, url: &str) -> bool {
        let Ok(url) = reqwest::Url::parse(url) else {
            return false;
        };
        if url.scheme() != "http" {
            return true;
        }
        let host = url.host();
        let ip = match host {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        let loopback = ip.is_some_and(|ip| ip.is_loopback())
            || matches!(host, Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost"));
        match self {
            PlaintextHops::None => false,
            PlaintextHops::Loopback => loopback,
            PlaintextHops::Private => loopback || ip.is_some_and(is_private),
            PlaintextHops::Any => true,
        }
    }

    /// Why a worker at `url` is refused, or `None`.
    pub fn refuses(self, name: &str, url: &str) -> Option<String> {
        (!self.allows(url)).then(|| {
            format!(
                "worker '{name}': plain-HTTP hops to '{url}' are not allowed \
                 ([upstream] plaintext_hops = \"{}\"): put `switchyard agent --listen` with a \
                 certificate in front of the runtime and register its https:// URL, or allow \
                 this network explicitly",
                self.as_str()
            )
        })
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The clients one worker's calls go through.
#[derive(Clone)]
pub struct HopClients {
    pub inference: InferenceClient,
    /// Health checks, the tokenizer, `/metrics`.
    pub http: reqwest::Client,
}

impl std::fmt::Debug for HopClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HopClients")
    }
}

/// Settings every hop shares.
#[derive(Debug, Clone)]
pub struct HopSettings {
    pub connect_timeout: Duration,
    pub plaintext: PlaintextHops,
}

impl Default for HopSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            plaintext: PlaintextHops::Any,
        }
    }
}

/// The operator's CA for fleet hops, and the certificate the gateway presents on them. Read
/// from files, and read again by [`FleetTrust::reload`]: every fleet hop's verifier and
/// certificate resolver looks here at each handshake, so a renewed certificate is shown on
/// the next connection without rebuilding any worker's clients.
pub struct FleetTrust {
    files: FleetFiles,
    current: ArcSwap<Material>,
    provider: Arc<CryptoProvider>,
}

/// Where the trust comes from.
#[derive(Debug, Clone)]
pub struct FleetFiles {
    pub ca: PathBuf,
    /// The gateway's certificate (chain after it) and key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

struct Material {
    roots: Arc<RootCertStore>,
    identity: Option<Arc<CertifiedKey>>,
    /// When the gateway's certificate expires (Unix seconds).
    expires: Option<i64>,
}

impl std::fmt::Debug for FleetTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetTrust")
            .field("files", &self.files)
            .finish()
    }
}

impl FleetTrust {
    /// Reads the files; an error names the file.
    pub fn load(files: FleetFiles) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let material = read(&files, &provider)?;
        Ok(Self {
            files,
            current: ArcSwap::from_pointee(material),
            provider,
        })
    }

    pub fn files(&self) -> &FleetFiles {
        &self.files
    }

    /// Reads the files again; on an error the trust in force stays.
    pub fn reload(&self) -> Result<(), String> {
        let material = read(&self.files, &self.provider)?;
        self.current.store(Arc::new(material));
        Ok(())
    }

    /// When the gateway's client certificate expires (Unix seconds), if it has one.
    pub fn expires(&self) -> Option<i64> {
        self.current.load().expires
    }

    /// The TLS configuration for hops to the worker `name`.
    fn client_config(self: &Arc<Self>, name: &str) -> Result<ClientConfig, String> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(WorkerCertVerifier {
                trust: self.clone(),
                expected: format!("{WORKER_URI_PREFIX}{name}"),
            }));
        let mut config = if self.files.identity.is_some() {
            builder.with_client_cert_resolver(Arc::new(GatewayIdentity(self.clone())))
        } else {
            builder.with_no_client_auth()
        };
        // A resumed session skips the certificate check: after a reload (a CA rotated away
        // from a worker), the next connection must be judged afresh.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(config)
    }
}

/// The CA and the gateway's identity as the files hold them now.
fn read(files: &FleetFiles, provider: &CryptoProvider) -> Result<Material, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let certs = |path: &Path| {
        CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let mut roots = RootCertStore::empty();
    for cert in certs(&files.ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA: {e}", files.ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no certificate", files.ca.display()));
    }
    let (identity, expires) = match &files.identity {
        Some((cert, key)) => {
            let chain = certs(cert)?;
            let Some(leaf) = chain.first() else {
                return Err(format!("{} holds no certificate", cert.display()));
            };
            let expires = not_after(leaf);
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read {}: {e}", key.display()))?;
            let signing = provider
                .key_provider
                .load_private_key(key_der)
                .map_err(|e| format!("{}: not a usable key: {e}", key.display()))?;
            let certified = CertifiedKey::new(chain, signing);
            certified.keys_match().map_err(|_| {
                format!(
                    "the key {} does not belong to the certificate {}",
                    key.display(),
                    cert.display()
                )
            })?;
            (Some(Arc::new(certified)), expires)
        }
        None => (None, None),
    };
    Ok(Material {
        roots: Arc::new(roots),
        identity,
        expires,
    })
}

/// When a certificate expires (Unix seconds).
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// The clients for every worker: one shared set for public and plain hops, a set per worker
/// for fleet hops.
#[derive(Debug)]
pub struct Hops {
    settings: HopSettings,
    public: HopClients,
    fleet: Option<Arc<FleetTrust>>,
}

impl Default for Hops {
    /// Any hop, public trust only: for tests and tools that build a fleet by hand.
    fn default() -> Self {
        Self::new(HopSettings::default(), None)
    }
}

impl Hops {
    pub fn new(settings: HopSettings, fleet: Option<Arc<FleetTrust>>) -> Self {
        let inference = inference_client(&settings, None);
        // Without a configuration of ours reqwest builds its own, which does not fail.
        #[allow(clippy::expect_used)]
        let http = http_client(&settings, None).expect("the HTTP client for workers");
        Self {
            public: HopClients { inference, http },
            settings,
            fleet,
        }
    }

    /// The trust of fleet hops, if a worker CA is configured (for its reloader).
    pub fn fleet_trust(&self) -> Option<&Arc<FleetTrust>> {
        self.fleet.as_ref()
    }

    /// The shared default, built once.
    pub(crate) fn shared_default() -> Arc<Hops> {
        static DEFAULT: OnceLock<Arc<Hops>> = OnceLock::new();
        DEFAULT.get_or_init(|| Arc::new(Hops::default())).clone()
    }

    /// The shared clients of public and plain hops.
    pub fn public_clients(&self) -> HopClients {
        self.public.clone()
    }

    /// Clients whose every TLS handshake fails (no root is trusted): for a worker that
    /// cannot be reached as it asks but must exist (tests and tools building one by hand).
    pub fn refusing_clients(&self) -> HopClients {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_root_certificates(RootCertStore::empty())
                    .with_no_client_auth()
            });
        match tls {
            Ok(tls) => HopClients {
                inference: inference_client(&self.settings, Some(tls.clone())),
                http: http_client(&self.settings, Some(tls))
                    .unwrap_or_else(|_| self.public.http.clone()),
            },
            Err(_) => self.public.clone(),
        }
    }

    pub fn plaintext(&self) -> PlaintextHops {
        self.settings.plaintext
    }

    /// Whether fleet hops are configured (a worker CA is set).
    pub fn has_fleet_trust(&self) -> bool {
        self.fleet.is_some()
    }

    /// Decides how a registered worker's certificate is checked: with a worker CA, an
    /// `https://` worker is one behind an agent's sidecar and must show a certificate from it
    /// naming it. The registration does not get to choose the web PKI instead, whichever
    /// replica (or older version) wrote it.
    pub fn settle_registered(&self, spec: &mut WorkerSpec) {
        let https = reqwest::Url::parse(&spec.url).is_ok_and(|u| u.scheme() == "https");
        if self.fleet.is_some() && https {
            spec.trust = HopTrust::Fleet;
        }
    }

    /// Why this gateway cannot reach `spec` as it asks, or `None`.
    pub fn refuses(&self, spec: &WorkerSpec) -> Option<String> {
        if let Some(why) = self.settings.plaintext.refuses(&spec.name, &spec.url) {
            return Some(why);
        }
        (spec.trust == HopTrust::Fleet && self.fleet.is_none()).then(|| {
            format!(
                "worker '{}' has trust = \"fleet\" but [upstream] tls_worker_ca is not set",
                spec.name
            )
        })
    }

    /// The clients for `spec`'s calls; an error names why the hop is refused.
    pub fn clients(&self, spec: &WorkerSpec) -> Result<HopClients, String> {
        if let Some(why) = self.refuses(spec) {
            return Err(why);
        }
        match (spec.trust, &self.fleet) {
            (HopTrust::Fleet, Some(fleet)) => {
                let tls = fleet.client_config(&spec.name)?;
                Ok(HopClients {
                    inference: inference_client(&self.settings, Some(tls.clone())),
                    http: http_client(&self.settings, Some(tls))
                        .map_err(|e| format!("worker '{}': {e}", spec.name))?,
                })
            }
            _ => Ok(self.public.clone()),
        }
    }
}

fn inference_client(settings: &HopSettings, tls: Option<ClientConfig>) -> InferenceClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout));
    // The connector must accept `http://` URIs; `https_or_http` decides per URI.
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let https = match tls {
        // A fleet hop is TLS or nothing: a plain URI fails rather than going out in clear.
        Some(tls) => builder
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http),
        None => builder
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http),
    };
    Client::builder(TokioExecutor::new())
        // Without a timer the pool never reaps: idle connections (and their buffers) would stay
        // until someone tried to reuse them, long after a burst of streams ended.
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .build(https)
}

fn http_client(
    settings: &HopSettings,
    tls: Option<ClientConfig>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        // Workers are reached directly; an HTTP_PROXY meant for the operator's shell must not
        // silently reroute traffic to them.
        .no_proxy()
        // A worker never has a reason to redirect a call, and following one would send the
        // prompt somewhere the operator did not configure.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(tls) = tls {
        builder = builder.use_preconfigured_tls(tls).https_only(true);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the client for worker calls: {e}"))
}

/// Whether a failed call ran out of the gateway's own resources (file descriptors, socket
/// buffers, memory) rather than meeting a broken worker: such a failure is never held against
/// the worker (no ejection, no failed health check), since every worker would fail the same.
pub fn local_exhaustion(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        let io = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error());
        if matches!(
            io,
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        ) {
            return true;
        }
        source = err.source();
    }
    false
}

/// Accepts a worker's certificate when it chains to the operator's CA and names the worker.
#[derive(Debug)]
struct WorkerCertVerifier {
    trust: Arc<FleetTrust>,
    /// `urn:switchyard:worker:NAME`.
    expected: String,
}

/// A certificate from the right CA that names another worker (or none).
#[derive(Debug, thiserror::Error)]
#[error("the certificate names {found}, not {expected}")]
struct NotThisWorker {
    expected: String,
    found: String,
}

impl ServerCertVerifier for WorkerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.trust.current.load().roots,
            intermediates,
            now,
            self.trust.provider.signature_verification_algorithms.all,
        )?;
        let names = uri_names(end_entity);
        if names.contains(&self.expected) {
            return Ok(ServerCertVerified::assertion());
        }
        let found = names
            .iter()
            .filter(|n| n.starts_with(WORKER_URI_PREFIX))
            .cloned()
            .collect::<Vec<_>>();
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(NotThisWorker {
                expected: self.expected.clone(),
                found: if found.is_empty() {
                    "no worker".into()
                } else {
                    found.join(", ")
                },
            })),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.trust.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.trust.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The URI subject alternative names of a certificate (empty when it has none or cannot be
/// read).
pub fn uri_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_string()),
            _ => None,
        })
        .collect()
}

/// The gateway's client certificate in force, whatever CA the worker asks for.
#[derive(Debug)]
struct GatewayIdentity(Arc<FleetTrust>);

impl ResolvesClientCert for GatewayIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.current.load().identity.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_policies_draw_their_lines() {
        let cases = [
            ("http://127.0.0.1:8000", [false, true, true, true]),
            ("http://localhost:8000", [false, true, true, true]),
            ("http://[::1]:8000", [false, true, true, true]),
            ("http://10.1.2.3:8000", [false, false, true, true]),
            ("http://192.168.0.9", [false, false, true, true]),
            ("http://100.100.1.1", [false, false, false, true]),
            ("http://[fd00::1]:80", [false, false, true, true]),
            ("http://8.8.8.8:8000", [false, false, false, true]),
            ("http://gpu.example.com", [false, false, false, true]),
            ("https://gpu.example.com", [true, true, true, true]),
        ];
        let policies = [
            PlaintextHops::None,
            PlaintextHops::Loopback,
            PlaintextHops::Private,
            PlaintextHops::Any,
        ];
        for (url, expected) in cases {
            for (policy, want) in policies.iter().zip(expected) {
                assert_eq!(policy.allows(url), want, "{url} under {policy:?}");
            }
        }
        let why = PlaintextHops::Loopback
            .refuses("w1", "http://8.8.8.8:1")
            .unwrap_or_default();
        assert!(why.contains("plaintext_hops = \"loopback\""), "{why}");
    }

    /// An error wrapping another, as hyper's and reqwest's do.
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn running_out_of_descriptors_is_the_gateway_s_own_trouble() {
        let emfile = Wrapped(std::io::Error::from_raw_os_error(libc::EMFILE));
        assert!(local_exhaustion(&emfile));
        let refused = Wrapped(std::io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert!(
            !local_exhaustion(&refused),
            "a worker that refuses is the worker's"
        );
        assert!(!local_exhaustion(&std::fmt::Error));
    }
}
