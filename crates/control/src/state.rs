//! What the control plane's handlers and tasks share: the request path's state (read, never
//! changed in shape), plus what only the control plane needs: the admin and fleet tokens, the
//! notifier of alerts and maintenance windows, and the fleet's sync with the shared store.

use std::ops::Deref;
use std::sync::Arc;

use switchyard_gateway::state::AppState;

pub struct ControlState {
    pub gateway: Arc<AppState>,
    /// SHA-256 of the admin token; the admin API is off without one.
    pub admin_token: Option<[u8; 32]>,
    /// SHA-256 of the fleet token; the registration API is off without one.
    pub fleet_token: Option<[u8; 32]>,
    /// Alert and maintenance notifications: the log, and the webhook when one is set.
    pub notifier: crate::alerting::notify::Notifier,
    /// Registrations and drains, written to the shared store and then to this gateway's
    /// registry (see [`crate::fleet_sync`]).
    pub fleet_sync: Arc<crate::fleet_sync::FleetSync>,
}

/// The control plane reads the request path's state as its own: `state.fleet`,
/// `state.directory` and the rest, with no second copy to keep in step.
impl Deref for ControlState {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.gateway
    }
}
