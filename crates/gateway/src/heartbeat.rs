//! The gateway's liveness record: while the process runs, each minute it is alive is written
//! to the store (`gateway_heartbeats`, one row per minute and process). The SLA report counts a
//! minute that no gateway recorded as unobserved, and so as bad: a gateway that was down for an
//! hour cannot report that hour as up just because no request failed in it.
//!
//! Written every [`EVERY`] (a few times a minute, so a minute is recorded even if one write
//! fails or the process starts late in it), at start, and never on the request path.

use std::sync::Arc;
use std::time::Duration;

use switchyard_metering::sli::minute_of;
use tokio::task::JoinHandle;

use crate::state::AppState;

const EVERY: Duration = Duration::from_secs(15);

/// A name for this process in the heartbeats: unique per start.
pub fn instance_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", std::process::id(), &id[..8])
}

/// Records the current minute once (at start, before traffic), then spawns the ticker.
pub async fn spawn(state: Arc<AppState>) -> JoinHandle<()> {
    beat(&state).await;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // immediate: done above
        loop {
            ticker.tick().await;
            beat(&state).await;
        }
    })
}

async fn beat(state: &AppState) {
    let minute = minute_of(state.clock.now_ms());
    let store = state.directory.store();
    if let Err(e) = store.record_heartbeat(&state.instance, minute).await {
        // Not fatal: the next beat may land. A minute nobody recorded reads as unobserved.
        tracing::error!(target: "switchyard::sla", error = %e, minute, "cannot record the gateway's heartbeat");
    }
}
