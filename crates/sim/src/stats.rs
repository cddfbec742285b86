//! Counters of what the worker did, kept in atomics so the hot path never locks.
//! Every generation request ends exactly once as either completed or failed; the
//! [`RequestGuard`] makes that true even when the client disconnects and the handler
//! future is simply dropped.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A snapshot of the worker's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Generation requests received (any endpoint, valid or not).
    pub requests: u64,
    /// Requests received and not yet finished, including those waiting for KV space.
    pub in_flight: u64,
    /// Requests currently waiting for KV space.
    pub queued: u64,
    /// Requests whose whole response was handed to the connection.
    pub completed: u64,
    /// Requests that ended any other way: rejected, faulted, cut, or abandoned by the client.
    pub failed: u64,
    /// Prompt tokens of admitted requests (counted once per request, not per choice).
    pub prompt_tokens: u64,
    /// Every completion token handed to a client, including those of streams that were
    /// cut or cancelled mid-way (billing tests compare ledgers against it).
    pub completion_tokens_generated: u64,
    /// Health checks answered (`GET /health`).
    #[serde(default)]
    pub health_checks: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    in_flight: AtomicU64,
    pub(crate) queued: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    health_checks: AtomicU64,
    /// Woken whenever a request starts or ends, tokens are generated or a health check is
    /// answered, for [`crate::SimHandle::wait_until`].
    pub(crate) changed: tokio::sync::Notify,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> SimStats {
        SimStats {
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens_generated: self.completion_tokens.load(Ordering::Relaxed),
            health_checks: self.health_checks.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn health_check(&self) {
        self.health_checks.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) fn add_prompt_tokens(&self, n: u64) {
        self.prompt_tokens.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_completion_tokens(&self, n: u64) {
        self.completion_tokens.fetch_add(n, Ordering::Relaxed);
        self.changed.notify_waiters();
    }
}

/// Lives as long as one generation request; its Drop settles the request's outcome.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    counters: Arc<Counters>,
    completed: bool,
}

impl RequestGuard {
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        counters.changed.notify_waiters();
        Self {
            counters,
            completed: false,
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The whole response was handed over; Drop will count it as completed.
    pub(crate) fn complete(&mut self) {
        self.completed = true;
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let outcome = if self.completed {
            &self.counters.completed
        } else {
            &self.counters.failed
        };
        // Count the outcome before leaving in_flight, so an observer that sees
        // in_flight == 0 also sees the final completed/failed numbers.
        outcome.fetch_add(1, Ordering::Relaxed);
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.counters.changed.notify_waiters();
    }
}
