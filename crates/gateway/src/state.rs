//! What every request handler shares. Built once at start; nothing in it is locked per request.

use std::sync::Arc;

use switchyard_fleet::Fleet;
use switchyard_metering::directory::Directory;
use switchyard_metering::ledger::Ledger;

use crate::config::Config;

pub struct AppState {
    pub config: Config,
    pub fleet: Arc<Fleet>,
    pub directory: Arc<Directory>,
    pub ledger: Ledger,
    /// SHA-256 of the admin token; the admin API is off without one.
    pub admin_token: Option<[u8; 32]>,
    /// For health probes and side calls (prompt counts).
    pub client: reqwest::Client,
    /// For inference calls: see [`crate::upstream::client`].
    pub upstream: crate::upstream::client::UpstreamClient,
}
