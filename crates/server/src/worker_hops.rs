//! Keeps the trust of encrypted worker hops fresh: the worker CA and the gateway's client
//! certificate (`[upstream] tls_worker_ca`, `tls_client_cert`, `tls_client_key`) are read again
//! when the files change or on SIGHUP, as the listeners' are. A reload that fails keeps what
//! is in force and says so; the certificate's expiry is exported under the listener label
//! `worker_hops`, so the listeners' expiry alert covers it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use switchyard_fleet::hop::FleetTrust;
use tokio::task::JoinHandle;

use crate::listener::tls::{self, Reloadable};

/// The label the metrics give worker hops' TLS.
const LABEL: &str = "worker_hops";

struct WorkerHopFiles {
    trust: Arc<FleetTrust>,
    stamp: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl WorkerHopFiles {
    fn paths(&self) -> Vec<PathBuf> {
        let files = self.trust.files();
        let mut paths = vec![files.ca.clone()];
        if let Some((cert, key)) = &files.identity {
            paths.extend([cert.clone(), key.clone()]);
        }
        paths
    }

    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        tls::stamps(self.paths().iter().map(PathBuf::as_path))
    }
}

impl Reloadable for WorkerHopFiles {
    fn changed(&self) -> bool {
        self.stamps() != *self.stamp.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn reload(&self) {
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) = self.stamps();
        match self.trust.reload() {
            Ok(()) => {
                tracing::info!(ca = %self.trust.files().ca.display(), "worker hop TLS files reloaded");
                switchyard_gateway::metrics::tls_reload(LABEL, true);
                self.publish();
            }
            Err(e) => {
                tracing::error!(error = %e, "worker hop TLS reload failed: the files in force stay");
                switchyard_gateway::metrics::tls_reload(LABEL, false);
            }
        }
    }

    fn publish(&self) {
        if let Some(expires) = self.trust.expires() {
            switchyard_gateway::metrics::tls_certificate_expiry(LABEL, expires);
        }
    }
}

/// Watches the files of `trust` until aborted.
pub fn spawn_reloader(trust: Arc<FleetTrust>, every: Duration) -> JoinHandle<()> {
    let files = WorkerHopFiles {
        stamp: Mutex::new(Vec::new()),
        trust,
    };
    *files.stamp.lock().unwrap_or_else(PoisonError::into_inner) = files.stamps();
    tls::spawn_watch(Arc::new(files), every)
}
