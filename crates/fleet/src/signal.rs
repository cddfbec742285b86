//! Tells requests queued for a saturated fleet that a worker slot came free.
//!
//! Every request's end releases a slot, so the common case (nobody waiting) must cost one
//! atomic load: `tokio::sync::Notify` is only touched while someone waits.
//!
//! The counter, and a worker's count of outstanding requests, are SeqCst: a releaser decrements
//! `outstanding` then reads `waiting`; a waiter increments `waiting` then reads `outstanding`.
//! With weaker orderings both could miss the other (on ARM), and the waiter would sleep beside
//! a free worker until its deadline.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct ReleaseSignal {
    waiting: AtomicUsize,
    notify: Notify,
}

/// Counts one waiter for as long as it lives.
pub struct Waiting<'a>(&'a ReleaseSignal);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ReleaseSignal {
    pub fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(self)
    }

    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Wakes every waiter (they check in priority order who goes next).
    pub fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Called on every release: wakes waiters only if there are any.
    pub(crate) fn released(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.wake();
        }
    }
}
