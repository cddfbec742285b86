//! What every request handler shares. Built once at start; nothing in it is locked per request.

use std::sync::Arc;

use switchyard_fleet::Fleet;

use crate::auth::KeyRing;
use crate::config::Config;

pub struct AppState {
    pub config: Config,
    pub fleet: Arc<Fleet>,
    pub keys: KeyRing,
    pub client: reqwest::Client,
}
