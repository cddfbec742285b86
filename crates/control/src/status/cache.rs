//! The status snapshot, computed at most once per [`TTL`]: a popular status page (or one
//! refreshed by a crowd during an incident, exactly when the database is busiest) costs the
//! store one set of queries every few seconds, whatever the traffic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Mutex;

use super::data::{compute, Snapshot, WorkerInfo};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

pub const TTL: Duration = Duration::from_secs(5);

/// A snapshot and its JSON, serialised once.
pub struct Cached {
    pub at: Instant,
    pub snapshot: Snapshot,
    pub json: Bytes,
}

#[derive(Default)]
pub struct StatusCache {
    // An async mutex held across the computation: callers arriving while it runs wait for
    // its result instead of starting their own (single flight).
    slot: Mutex<Option<Arc<Cached>>>,
}

impl StatusCache {
    pub async fn get(&self, state: &ControlState) -> Result<Arc<Cached>, GatewayError> {
        let mut slot = self.slot.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.at.elapsed() < TTL) {
            return Ok(c.clone());
        }
        let workers = WorkerInfo::of_fleet(&state.fleet);
        // SLA time: the clock heartbeats and rollups are kept by (a test may set it).
        let snapshot = match compute(
            state.directory.store().as_ref(),
            workers,
            state.clock.now_ms(),
        )
        .await
        {
            Ok(snapshot) => snapshot,
            // The last snapshot, older than it should be, beats an error page in an
            // incident (when the store is most likely to struggle); its time is on it.
            Err(e) => {
                tracing::error!(target: "switchyard::status", error = %e, "status page: state store failed");
                return slot.clone().ok_or_else(|| {
                    GatewayError::Internal("the status data is unavailable right now".into())
                });
            }
        };
        let json = serde_json::to_vec(&snapshot)
            .map(Bytes::from)
            .map_err(|e| GatewayError::Internal(format!("status JSON: {e}")))?;
        let fresh = Arc::new(Cached {
            at: Instant::now(),
            snapshot,
            json,
        });
        *slot = Some(fresh.clone());
        Ok(fresh)
    }
}
