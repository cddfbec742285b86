//! One Redis connection that is replaced when a call on it times out.
//!
//! `ConnectionManager` reconnects on I/O errors only. A half-open socket (a peer gone without
//! a reset: a NAT or load balancer dropping the flow, a partition) gives none: every call
//! waits out its timeout, for as long as the operating system keeps the socket (minutes).
//! So a timeout also retires the connection, and the next call opens a fresh one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::SharedLimitsError;

pub struct Connection {
    client: redis::Client,
    config: ConnectionManagerConfig,
    timeout: Duration,
    current: ArcSwap<ConnectionManager>,
}

impl Connection {
    /// Connects lazily: nothing is dialled until the first call.
    pub fn new(
        client: redis::Client,
        config: ConnectionManagerConfig,
        timeout: Duration,
    ) -> Result<Self, SharedLimitsError> {
        let first = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Self {
            client,
            config,
            timeout,
            current: ArcSwap::from_pointee(first),
        })
    }

    /// Runs `call` on the current connection within the timeout; a timeout retires it.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, SharedLimitsError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let used = self.current.load_full();
        match tokio::time::timeout(self.timeout, call((*used).clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                self.retire(&used);
                Err(SharedLimitsError::Timeout(self.timeout))
            }
        }
    }

    /// Replaces `stale` by a fresh (lazy) connection, unless another call already did: many
    /// calls timing out on one connection replace it once.
    fn retire(&self, stale: &Arc<ConnectionManager>) {
        let Ok(fresh) =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
        else {
            return;
        };
        let previous = self.current.compare_and_swap(stale, Arc::new(fresh));
        if Arc::ptr_eq(&previous, stale) {
            tracing::warn!(target: "switchyard::limits", timeout = ?self.timeout, "a call to Redis timed out: its connection is replaced");
        }
    }
}
