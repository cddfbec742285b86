//! Which workers this gateway is changing, or changed since a reconcile read the store: that
//! reconcile leaves them alone, since this gateway's view of them is the newer. An operation
//! claims its workers before it writes the store (the store's change feed may start a
//! reconcile before the change is made here) and releases them once it has changed the
//! registry, or when it is dropped (an error, a client gone).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use switchyard_fleet::Fleet;

#[derive(Debug, Default)]
pub struct Local {
    /// Changes made here so far: a reconcile notes the count before it reads the store.
    changes: u64,
    touched: HashMap<String, Touch>,
}

#[derive(Debug, Default)]
struct Touch {
    /// The change count when it was last changed here.
    at: u64,
    /// Operations on it still under way.
    in_flight: u32,
}

impl Local {
    /// The count a reconcile reads the store after.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Whether a reconcile that read the store after change `since` must leave `name` alone.
    pub fn newer_here(&self, name: &str, since: u64) -> bool {
        self.touched
            .get(name)
            .is_some_and(|t| t.in_flight > 0 || t.at > since)
    }

    /// Forgets what a reconcile that read the store after change `since` has covered.
    pub fn covered(&mut self, since: u64) {
        self.touched.retain(|_, t| t.in_flight > 0 || t.at > since);
    }

    fn release(&mut self, names: &[String]) {
        self.changes += 1;
        let at = self.changes;
        for name in names {
            let t = self.touched.entry(name.clone()).or_default();
            t.in_flight = t.in_flight.saturating_sub(1);
            t.at = at;
        }
    }
}

fn lock(local: &Mutex<Local>) -> MutexGuard<'_, Local> {
    local.lock().unwrap_or_else(|e| e.into_inner())
}

/// An operation's hold on the workers it changes.
pub struct Claim<'a> {
    local: &'a Mutex<Local>,
    fleet: &'a Fleet,
    names: Vec<String>,
    released: bool,
}

impl<'a> Claim<'a> {
    pub fn new(local: &'a Mutex<Local>, fleet: &'a Fleet, names: &[&str]) -> Self {
        let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
        let mut l = lock(local);
        for name in &names {
            l.touched.entry(name.clone()).or_default().in_flight += 1;
        }
        Self {
            local,
            fleet,
            names,
            released: false,
        }
    }

    /// Makes the change to the registry, and releases the workers.
    pub fn apply<T>(mut self, change: impl FnOnce(&Fleet) -> T) -> T {
        let mut l = lock(self.local);
        let out = change(self.fleet);
        l.release(&self.names);
        self.released = true;
        out
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.released {
            lock(self.local).release(&self.names);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_leaves_alone_what_is_being_changed_and_what_changed_after_its_read() {
        let local = Mutex::new(Local::default());
        let fleet = Fleet::default();
        let since = lock(&local).changes();
        let claim = Claim::new(&local, &fleet, &["a"]);
        assert!(lock(&local).newer_here("a", since), "under way");
        assert!(!lock(&local).newer_here("b", since));
        claim.apply(|_| ());
        assert!(
            lock(&local).newer_here("a", since),
            "changed after the read"
        );
        let later = lock(&local).changes();
        assert!(
            !lock(&local).newer_here("a", later),
            "a later read covers it"
        );
        lock(&local).covered(later);
        // Dropped without applying (an error): released all the same.
        drop(Claim::new(&local, &fleet, &["b"]));
        let now = lock(&local).changes();
        assert!(!lock(&local).newer_here("b", now));
    }
}
