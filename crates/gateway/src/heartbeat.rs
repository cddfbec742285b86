//! The gateway's liveness record, and what follows from it.
//!
//! - While the process runs, each minute it is alive is written to the store
//!   (`gateway_heartbeats`, one row per minute and process). The SLA report counts a minute
//!   that no gateway recorded as unobserved, and so as bad: a gateway that was down for an hour
//!   cannot report that hour as up just because no request failed in it.
//! - Its sign of life (`gateway_instances`) is renewed with each beat, with the lease it
//!   promises (three of its beats). A process silent for its lease is dead: the requests it left open (see `switchyard_metering::open`) were in
//!   flight when it stopped, and are settled as `interrupted`. Every live process checks, at
//!   start and with each beat.
//!
//! Every `[state] heartbeat_ms` (15 s: a few times a minute, so a minute is recorded even if one
//! write fails or the process starts late in it), and never on the request path.

use std::sync::Arc;
use std::time::Duration;

use switchyard_metering::sli::minute_of;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// Beats missed before a process counts as dead.
const LEASE_BEATS: i64 = 3;

/// A name for this process in the heartbeats: unique per start.
pub fn instance_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{}", std::process::id(), &id[..8])
}

/// Records the current minute once (at start, before traffic), then spawns the ticker.
pub async fn spawn(state: Arc<AppState>) -> JoinHandle<()> {
    beat(&state).await;
    tokio::spawn(async move {
        let every = Duration::from_millis(state.config.state.heartbeat_ms);
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // immediate: done above
        loop {
            ticker.tick().await;
            beat(&state).await;
        }
    })
}

async fn beat(state: &AppState) {
    let now = state.clock.now_ms();
    let minute = minute_of(now);
    let store = state.directory.store();
    if let Err(e) = store.record_heartbeat(&state.instance, minute).await {
        // Not fatal: the next beat may land. A minute nobody recorded reads as unobserved.
        tracing::error!(target: "switchyard::sla", error = %e, minute, "cannot record the gateway's heartbeat");
    }
    // Liveness is wall-clock time: it is about processes, not about SLA minutes.
    let wall = switchyard_metering::directory::unix_ms();
    let lease = i64::try_from(state.config.state.heartbeat_ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(LEASE_BEATS);
    if let Err(e) = store
        .instance_alive(&state.instance, state.started_at_ms, wall, lease)
        .await
    {
        tracing::error!(target: "switchyard::ledger", error = %e, "cannot renew this gateway's sign of life");
    }
    // Another process is judged by the lease it promised (replicas may beat at different
    // intervals); one never seen alive, by this process's own.
    match store
        .reconcile_interrupted(&state.instance, wall, lease)
        .await
    {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(target: "switchyard::ledger", requests = n, "settled requests left open by a gateway process that stopped (billed at their last checkpoint, status interrupted)")
        }
        Err(e) => {
            tracing::error!(target: "switchyard::ledger", error = %e, "cannot settle requests left open by stopped gateways")
        }
    }
}
