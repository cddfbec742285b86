//! Change feeds: `LISTEN` on a channel the store's triggers notify on every change, from any
//! replica: `switchyard_directory` (tenants, keys and credit: migration 0002) and
//! `switchyard_fleet` (registrations and drains: migration 0003).

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;

use crate::store::{Change, Result};

/// How long the feed waits before listening again after an error (Postgres down).
const RETRY: Duration = Duration::from_secs(1);

/// Listens on its own connection from `pool`, and forwards each notification as
/// [`Change::Changed`], and each reconnection (notifications may have been missed while the
/// connection was down) as [`Change::Reconnected`].
pub(super) async fn feed(pool: &PgPool, channel: &'static str) -> Result<mpsc::Receiver<Change>> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    // A few pending items are enough: any one of them means "reload", so one that finds the
    // channel full is dropped without losing anything.
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let change = match listener.try_recv().await {
                Ok(Some(_)) => Change::Changed,
                // The connection was lost; the next call reconnects and listens again.
                Ok(None) => Change::Reconnected,
                Err(e) => {
                    tracing::warn!(error = %e, channel, "change feed: listening failed; retrying");
                    tokio::time::sleep(RETRY).await;
                    Change::Reconnected
                }
            };
            match tx.try_send(change) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    });
    Ok(rx)
}
