//! One Redis connection that is replaced when it has gone silent.
//!
//! `ConnectionManager` reconnects on I/O errors only. A half-open socket (a peer gone without
//! a reset: a NAT or load balancer dropping the flow, a partition) gives none: every call
//! waits out its timeout, for as long as the operating system keeps the socket (minutes).
//! So a call that times out with nothing answered on its connection since it was sent retires
//! that connection, and the next call opens a fresh one. A Redis that is merely slow (other
//! calls on the connection still answered meanwhile) keeps its connection: reconnecting
//! would only add a handshake to the next call's wait.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::SharedLimitsError;

struct Current {
    manager: ConnectionManager,
    /// When a call on this connection last got an answer, in µs since `Connection::epoch`.
    answered_us: AtomicU64,
}

pub struct Connection {
    client: redis::Client,
    config: ConnectionManagerConfig,
    timeout: Duration,
    epoch: Instant,
    current: ArcSwap<Current>,
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
            epoch: Instant::now(),
            current: ArcSwap::from_pointee(Current {
                manager: first,
                answered_us: AtomicU64::new(0),
            }),
        })
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Runs `call` on the current connection within the timeout.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, SharedLimitsError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let used = self.current.load_full();
        let sent_us = self.now_us();
        let outcome = tokio::time::timeout(self.timeout, call(used.manager.clone())).await;
        match outcome {
            Ok(answer) => {
                // Anything but silence (a reply, an error reply, an I/O error the manager
                // reconnects on by itself) shows the connection is not half-open.
                used.answered_us.fetch_max(self.now_us(), Ordering::Relaxed);
                Ok(answer?)
            }
            Err(_) => {
                if used.answered_us.load(Ordering::Relaxed) < sent_us {
                    self.retire(&used);
                }
                Err(SharedLimitsError::Timeout(self.timeout))
            }
        }
    }

    /// Replaces `stale` by a fresh (lazy) connection, unless another call already did: many
    /// calls timing out on one connection replace it once.
    fn retire(&self, stale: &Arc<Current>) {
        if !Arc::ptr_eq(&self.current.load(), stale) {
            return;
        }
        let Ok(manager) =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
        else {
            return;
        };
        let fresh = Arc::new(Current {
            manager,
            answered_us: AtomicU64::new(0),
        });
        let previous = self.current.compare_and_swap(stale, fresh);
        if Arc::ptr_eq(&previous, stale) {
            tracing::warn!(target: "switchyard::limits", timeout = ?self.timeout, "Redis answered nothing on a connection for a whole timeout: it is replaced");
        }
    }
}
