//! TLS on a listener (rustls): the certificate, key and optional client CA named in the config,
//! read at start and again when the files change (checked every `tls_reload_interval_ms`) or on
//! SIGHUP. A reload that fails (a half-written file, a key that does not match) keeps the
//! configuration in force and says so; connections already open keep theirs. HTTP/2 is offered
//! by ALPN; TLS 1.2 and 1.3 only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::UnixTime;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use switchyard_config::TlsFiles;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{what} {path} holds no certificate")]
    Empty { what: &'static str, path: String },
    #[error("the key {key} does not belong to the certificate {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    ClientCa(#[from] rustls::server::VerifierBuilderError),
}

/// A listener's TLS configuration, swapped whole on reload.
pub struct Tls {
    listener: &'static str,
    files: TlsFiles,
    /// A URI every client certificate must carry (an agent's sidecar takes gateways only).
    client_uri: Option<&'static str>,
    current: ArcSwap<ServerConfig>,
    /// When the certificate in force expires (Unix seconds; 0 unknown), for the metric.
    expires: std::sync::atomic::AtomicI64,
    /// What the files looked like when last read, to notice a change.
    stamp: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl Tls {
    /// Reads the files; fails the start if they are missing or do not make a configuration.
    pub fn load(listener: &'static str, files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        Self::load_requiring(listener, files, None)
    }

    /// As [`Tls::load`], and every client certificate (the files must name a client CA) must
    /// also carry the URI `client_uri` as a subject alternative name.
    pub fn load_requiring(
        listener: &'static str,
        files: TlsFiles,
        client_uri: Option<&'static str>,
    ) -> Result<Arc<Self>, TlsError> {
        let stamp = file_stamps(&files);
        let (config, expires) = build(&files, client_uri)?;
        Ok(Arc::new(Self {
            listener,
            files,
            client_uri,
            current: ArcSwap::from_pointee(config),
            expires: expires.unwrap_or(0).into(),
            stamp: Mutex::new(stamp),
        }))
    }

    /// The acceptor for a new connection, with the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Reads the files again and, if they make a configuration, puts it in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = file_stamps(&self.files);
        let config = build(&self.files, self.client_uri);
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        let outcome = match config {
            Ok((config, expires)) => {
                self.current.store(Arc::new(config));
                self.expires
                    .store(expires.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
                self.publish_expiry();
                tracing::info!(listener = self.listener, cert = %self.files.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(listener = self.listener, error = %e, "TLS reload failed: the certificate in force stays");
                Err(e)
            }
        };
        switchyard_gateway::metrics::tls_reload(self.listener, outcome.is_ok());
        outcome
    }

    fn publish_expiry(&self) {
        let expires = self.expires.load(std::sync::atomic::Ordering::Relaxed);
        if expires != 0 {
            switchyard_gateway::metrics::tls_certificate_expiry(self.listener, expires);
        }
    }

    fn changed(&self) -> bool {
        file_stamps(&self.files) != *self.stamp.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reloads when the files change (polled) or on SIGHUP, until aborted.
    pub fn spawn_reloader(self: Arc<Self>, every: Duration) -> JoinHandle<()> {
        spawn_watch(self, every)
    }
}

impl Reloadable for Tls {
    fn changed(&self) -> bool {
        Tls::changed(self)
    }

    fn reload(&self) {
        let _ = Tls::reload(self);
    }

    fn publish(&self) {
        self.publish_expiry();
    }
}

/// Something read from files that a reloader keeps fresh.
pub trait Reloadable: Send + Sync + 'static {
    /// Whether the files differ from when they were last read.
    fn changed(&self) -> bool;
    /// Reads them again; logs and counts the outcome itself.
    fn reload(&self);
    /// Publishes what the metrics say about it (once the recorder exists).
    fn publish(&self);
}

/// Reloads `target` when its files change (polled every `every`) or on SIGHUP, until aborted.
pub fn spawn_watch<R: Reloadable>(target: Arc<R>, every: Duration) -> JoinHandle<()> {
    // Before returning, so that a SIGHUP sent once the gateway says it listens finds the
    // handler in place (without it, SIGHUP ends the process).
    let mut hangup = hangup_signal();
    tokio::spawn(async move {
        // Here, not at load: the metrics recorder exists by the time this runs.
        target.publish();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let asked = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = recv(&mut hangup) => true,
            };
            if asked || target.changed() {
                target.reload();
            }
        }
    })
}

/// What the files look like now (modified time and size of each), to notice a change.
pub fn stamps<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<Option<(SystemTime, u64)>> {
    paths
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup())
        .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP: TLS files are reloaded on change only"))
        .ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

/// The next SIGHUP; never, without a handler.
async fn recv(hangup: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        return signal.recv().await;
    }
    #[cfg(not(unix))]
    let _ = hangup;
    std::future::pending().await
}

fn file_stamps(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    stamps(
        [
            Some(&files.cert),
            Some(&files.key),
            files.client_ca.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path),
    )
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// The configuration the files make, and when its certificate expires.
fn build(
    files: &TlsFiles,
    client_uri: Option<&'static str>,
) -> Result<(ServerConfig, Option<i64>), TlsError> {
    let chain = certs("certificate", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Read {
        what: "key",
        path: files.key.display().to_string(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs("client CA", ca)? {
                roots.add(cert)?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            match client_uri {
                Some(uri) => builder.with_client_cert_verifier(Arc::new(RequireUri {
                    inner: verifier,
                    uri,
                })),
                None => builder.with_client_cert_verifier(verifier),
            }
        }
        None => builder.with_no_client_auth(),
    };
    // For the expiry metric and its alert.
    let expires = switchyard_fleet::hop::not_after(&chain[0]);
    let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: files.cert.display().to_string(),
            key: files.key.display().to_string(),
        },
        e => TlsError::Rustls(e),
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, expires))
}

/// A client certificate from the client CA that must also carry one URI, such as
/// `urn:switchyard:gateway`: a certificate the same CA issued to a worker does not open
/// another worker's sidecar.
#[derive(Debug)]
struct RequireUri {
    inner: Arc<dyn ClientCertVerifier>,
    uri: &'static str,
}

#[derive(Debug, thiserror::Error)]
#[error("the client certificate does not carry {0}")]
struct MissingUri(&'static str);

impl ClientCertVerifier for RequireUri {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if switchyard_fleet::hop::uri_names(end_entity)
            .iter()
            .any(|u| u == self.uri)
        {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(MissingUri(self.uri)))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
