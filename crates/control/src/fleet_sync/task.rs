//! The task that keeps this gateway's registry in line with the shared store (see the module
//! above): it reconciles on the store's change feed, when a lease held here runs out, when a
//! handler asks, and every backstop interval; it also takes over what the old lease task did
//! alone, expiring leases by this gateway's own clock, whenever the store cannot be read.

use std::sync::Arc;
use std::time::Duration;

use switchyard_metering::Change;
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinHandle;

use super::FleetSync;

/// `feed`: opened (by [`open_feed`]) before the registry was first reconciled, so that no
/// change made in between is missed. `backstop`: the full reconcile under the change feed
/// (`[state] directory_refresh_ms`). Leases are checked a few times per lease, at most once a
/// second: a dead worker leaves rotation within about `lease_ms` plus one tick (sooner if its
/// health checks fail).
pub fn spawn(
    sync: Arc<FleetSync>,
    feed: Option<Receiver<Change>>,
    backstop: Duration,
    lease_ms: u64,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut feed = feed;
        let mut backstop = tokio::time::interval(backstop.max(Duration::from_millis(100)));
        backstop.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        backstop.tick().await; // reconciled at start
        let mut leases =
            tokio::time::interval(Duration::from_millis((lease_ms / 4).clamp(10, 1_000)));
        leases.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                change = next(&mut feed) => match change {
                    Some(Change::Changed) => {}
                    Some(Change::Reconnected) => {
                        tracing::info!("fleet change feed reconnected; reconciling in case a change was missed");
                    }
                    None => {
                        tracing::warn!("fleet change feed ended; relying on the periodic reconcile");
                        feed = None;
                    }
                },
                _ = backstop.tick() => {
                    if feed.is_none() {
                        feed = open_feed(&sync).await;
                    }
                    sync.purge().await;
                }
                _ = leases.tick() => {
                    // The store may hold a renewal made through another gateway: asked before
                    // the worker goes. Queued changes are retried at this pace too.
                    if !sync.fleet().any_lease_expired() && sync.direct() {
                        continue;
                    }
                }
                () = sync.kick.notified() => {}
            }
            // Changes that came meanwhile are covered by this one reconcile.
            if let Some(f) = feed.as_mut() {
                while f.try_recv().is_ok() {}
            }
            if sync.reconcile().await.is_err() {
                // Logged once per outage by `reconcile`. Without the store this gateway is
                // on its own: leases run out by its copy of them.
                sync.fleet().expire_leases();
            }
        }
    })
}

/// Listens for fleet changes; `None` where the store has no feed or cannot give one now (then
/// the backstop tries again).
pub async fn open_feed(sync: &FleetSync) -> Option<Receiver<Change>> {
    match sync.store().fleet_changes().await {
        Ok(feed) => feed,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for fleet changes; reconciling every backstop interval until it can");
            None
        }
    }
}

/// The next change, or never when there is no feed.
async fn next(feed: &mut Option<Receiver<Change>>) -> Option<Change> {
    match feed {
        Some(f) => f.recv().await,
        None => std::future::pending().await,
    }
}
