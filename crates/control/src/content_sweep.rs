//! Deletes expired content logs: the gateway enforces the tenant's TTL itself, without an
//! operator's cron job.

use std::sync::Arc;
use std::time::Duration;

use switchyard_metering::directory::unix_ms;
use switchyard_metering::Store;
use tokio::task::JoinHandle;

/// Sweeps once at start (records may have expired while the gateway was down), then every
/// `interval`.
pub fn spawn(store: Arc<dyn Store>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.delete_expired_content(unix_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "expired content logs deleted"),
                // Tried again next time; nothing is lost by waiting.
                Err(e) => tracing::error!(error = %e, "deleting expired content logs failed"),
            }
        }
    })
}
