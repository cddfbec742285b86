//! Keeps this process's view of tenants and keys (the request path's `Directory`) in step with
//! the store when other processes change it: another gateway replica creating, revoking or
//! rotating a key, changing a tenant or its limits. On Postgres every change is notified
//! (`TenantStore::changes`) and reloaded at once; a full reload every
//! `[state] directory_refresh_ms` is the backstop for anything a notification could miss.

use std::sync::Arc;
use std::time::Duration;

use switchyard_metering::directory::Directory;
use switchyard_metering::Change;
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinHandle;

pub fn spawn(directory: Arc<Directory>, backstop: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut feed = open_feed(&directory).await;
        if feed.is_some() {
            // The directory was loaded before this listener existed: a change made in between
            // (a key revoked while this replica started) is in neither. One reload now that
            // every later change will be notified closes that gap.
            if let Err(e) = directory.reload().await {
                tracing::error!(error = %e, "reloading tenants and keys from the store failed");
            }
        }
        let mut tick = tokio::time::interval(backstop.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the directory was loaded at start
        loop {
            tokio::select! {
                change = next(&mut feed) => match change {
                    Some(Change::Changed) => {}
                    Some(Change::Reconnected) => {
                        tracing::info!("directory change feed reconnected; reloading in case a change was missed");
                    }
                    None => {
                        tracing::warn!("directory change feed ended; relying on the periodic reload");
                        feed = None;
                    }
                },
                _ = tick.tick() => {
                    if feed.is_none() {
                        feed = open_feed(&directory).await;
                    }
                }
            }
            // Changes that came meanwhile are covered by this one reload.
            if let Some(f) = feed.as_mut() {
                while f.try_recv().is_ok() {}
            }
            if let Err(e) = directory.reload().await {
                // Kept as it was: the next change or tick tries again.
                tracing::error!(error = %e, "reloading tenants and keys from the store failed");
            }
        }
    })
}

async fn open_feed(directory: &Directory) -> Option<Receiver<Change>> {
    match directory.store().changes().await {
        Ok(feed) => feed,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for tenant and key changes; reloading every backstop interval until it can");
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
