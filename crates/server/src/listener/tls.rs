//! TLS on a listener (rustls): the certificate, key and optional client CA named in the config,
//! read at start and again when the files change (checked every `tls_reload_interval_ms`) or on
//! SIGHUP. A reload that fails (a half-written file, a key that does not match) keeps the
//! configuration in force and says so; connections already open keep theirs. HTTP/2 is offered
//! by ALPN; TLS 1.2 and 1.3 only.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
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
    current: ArcSwap<ServerConfig>,
    /// When the certificate in force expires (Unix seconds; 0 unknown), for the metric.
    expires: std::sync::atomic::AtomicI64,
    /// What the files looked like when last read, to notice a change.
    stamp: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl Tls {
    /// Reads the files; fails the start if they are missing or do not make a configuration.
    pub fn load(listener: &'static str, files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let stamp = stamps(&files);
        let (config, expires) = build(&files)?;
        Ok(Arc::new(Self {
            listener,
            files,
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
        let stamp = stamps(&self.files);
        let config = build(&self.files);
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
        stamps(&self.files) != *self.stamp.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reloads when the files change (polled) or on SIGHUP, until aborted.
    pub fn spawn_reloader(self: Arc<Self>, every: Duration) -> JoinHandle<()> {
        // Before returning, so that a SIGHUP sent once the gateway says it listens finds the
        // handler in place (without it, SIGHUP ends the process).
        let mut hangup = hangup_signal();
        tokio::spawn(async move {
            // Here, not at load: the metrics recorder exists by the time this runs.
            self.publish_expiry();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let asked = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = recv(&mut hangup) => true,
                };
                if asked || self.changed() {
                    let _ = self.reload();
                }
            }
        })
    }
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

fn stamps(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| {
        let meta = std::fs::metadata(p).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    })
    .collect()
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
fn build(files: &TlsFiles) -> Result<(ServerConfig, Option<i64>), TlsError> {
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
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let expires = not_after(&chain[0]);
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

/// When the certificate expires (Unix seconds), for the expiry metric and its alert.
fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}
