//! Models that registered workers have served since the gateway started.
//!
//! When the last worker of a model leaves (its lease ran out, its agent is restarting), the
//! model is still the gateway's: a client should hear "503, try again shortly", which every
//! OpenAI client retries, not "404, no such model", which none does. The set only grows, and
//! is read on every request without a lock.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwap;

#[derive(Debug, Default)]
pub struct RegisteredModels {
    models: ArcSwap<BTreeSet<String>>,
}

impl RegisteredModels {
    pub fn contains(&self, model: &str) -> bool {
        self.models.load().contains(model)
    }

    /// Registrations are rare; a copy-on-write insert keeps the reads lock-free.
    pub fn insert(&self, model: &str) {
        self.models.rcu(|current| {
            if current.contains(model) {
                return Arc::clone(current);
            }
            let mut next = BTreeSet::clone(current);
            next.insert(model.to_string());
            Arc::new(next)
        });
    }
}
