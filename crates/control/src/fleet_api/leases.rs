//! The task that removes registered workers whose lease ran out (their agent, machine or
//! network died without a word).

use std::sync::Arc;
use std::time::Duration;

use switchyard_fleet::Fleet;
use tokio::task::JoinHandle;

/// Checks leases a few times per lease, at most once a second: a dead worker leaves rotation
/// within about `lease_ms` plus one tick (it is also out sooner if its health checks fail).
pub fn spawn(fleet: Arc<Fleet>, lease_ms: u64) -> JoinHandle<()> {
    let tick = Duration::from_millis((lease_ms / 4).clamp(10, 1_000));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            // Logged by the fleet, one line per worker.
            fleet.expire_leases();
        }
    })
}
