//! Bringing this gateway's registry in line with the store's view of the fleet: registered
//! workers added, renewed, replaced or removed, and drains applied. Health stays this
//! gateway's own: a worker it already has keeps its breaker and figures when renewed, and one
//! it learns of starts unready until its own health check passes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_fleet::{DrainTarget, Fleet, FleetError, Worker, WorkerSource, WorkerState};
use switchyard_metering::store::FleetState;

use super::record;

/// Applies `state` to `fleet`, leaving alone the workers `skip` names (changed here since
/// `state` was read: this gateway's view of them is the newer). Static workers are never
/// added, replaced or removed; drains apply to them too. Returns the workers it added.
pub fn apply(fleet: &Fleet, state: &FleetState, skip: impl Fn(&str) -> bool) -> Vec<Arc<Worker>> {
    let mut generations: HashMap<&str, i64> = HashMap::new();
    let mut added = Vec::new();
    for reg in &state.registrations {
        if skip(&reg.name) {
            continue;
        }
        let (spec, labels) = match record::decode(&reg.spec) {
            Ok(decoded) if decoded.0.name == reg.name => decoded,
            Ok(_) => {
                tracing::warn!(worker = %reg.name, "stored registration names another worker; left as it is");
                continue;
            }
            Err(e) => {
                tracing::warn!(worker = %reg.name, error = %e, "cannot read a stored registration; left as it is");
                continue;
            }
        };
        // Renews (same registration), replaces (changed) or adds.
        match fleet.register(spec, labels, lease(reg.lease_left_ms)) {
            Ok((worker, new)) => {
                generations.insert(&reg.name, reg.generation);
                if new {
                    added.push(worker);
                }
            }
            Err(FleetError::StaticName(name)) => {
                tracing::debug!(worker = %name, "registered through another gateway under the name of one of this gateway's configured workers; ignored here");
            }
            Err(e) => {
                tracing::warn!(worker = %reg.name, error = %e, "cannot add a stored registration")
            }
        }
    }
    // Registered workers the store no longer has: removed through another gateway, or their
    // lease ran out. (One whose stored registration could not be read is still there.)
    for w in fleet.workers() {
        let name = w.spec.name.as_str();
        if w.source == WorkerSource::Registered
            && !skip(name)
            && !state.registrations.iter().any(|r| r.name == name)
        {
            fleet.remove(name);
        }
    }
    for w in fleet.workers() {
        let name = w.spec.name.as_str();
        if skip(name) {
            continue;
        }
        // Drains recorded before a registration do not apply to it: a worker registered
        // anew starts undrained, as it always has. Configured workers predate every record.
        let since = match w.source {
            WorkerSource::Static => 0,
            WorkerSource::Registered => match generations.get(name) {
                Some(g) => *g,
                None => continue,
            },
        };
        let newest = state
            .drains
            .iter()
            .filter(|d| d.seq > since && record::target_of(d).matches(&w))
            .max_by_key(|d| d.seq);
        let (draining, why) = match newest {
            Some(d) => (d.draining, d.reason.as_str()),
            None => (false, "no drain in force for this registration"),
        };
        if (w.state() == WorkerState::Draining) != draining {
            fleet.drain(&DrainTarget::Worker(name.to_string()), draining, why);
        }
    }
    added
}

fn lease(left_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(left_ms).unwrap_or(0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use switchyard_fleet::{RuntimeKind, WorkerSpec};
    use switchyard_metering::store::{DrainKind, DrainRecord, WorkerRegistration};

    use super::*;

    fn spec(name: &str, provider: &str) -> WorkerSpec {
        WorkerSpec {
            name: name.into(),
            url: "http://127.0.0.1:1".into(),
            runtime: RuntimeKind::Vllm,
            model: "m".into(),
            upstream_model: None,
            provider: provider.into(),
            region: "eu".into(),
            gpu: "g".into(),
            price_per_hour: 1.0,
            max_concurrency: 8,
            api_key: None,
            prompt_format: Default::default(),
            tiers: Vec::new(),
            pool: Default::default(),
            trust: Default::default(),
        }
    }

    fn reg(name: &str, provider: &str, generation: i64) -> WorkerRegistration {
        WorkerRegistration {
            name: name.into(),
            spec: record::encode(&spec(name, provider), &BTreeMap::new()).unwrap(),
            generation,
            lease_left_ms: 60_000,
        }
    }

    fn drain(kind: DrainKind, value: &str, draining: bool, seq: i64) -> DrainRecord {
        DrainRecord {
            kind,
            value: value.into(),
            draining,
            reason: format!("record {seq}"),
            seq,
        }
    }

    fn draining(fleet: &Fleet, name: &str) -> bool {
        fleet.worker(name).unwrap().state() == WorkerState::Draining
    }

    #[test]
    fn the_registry_follows_the_store_and_leaves_static_and_skipped_workers_alone() {
        let fleet = Fleet::new(vec![spec("static-1", "p1")]).unwrap();
        let state = FleetState {
            registrations: vec![
                reg("a", "p1", 5),
                reg("b", "p2", 6),
                reg("static-1", "p9", 7),
            ],
            drains: vec![
                // Older than b's registration: not for b.
                drain(DrainKind::Provider, "p2", true, 4),
                // For a and for the configured worker of p1.
                drain(DrainKind::Provider, "p1", true, 8),
            ],
        };
        let added = apply(&fleet, &state, |_| false);
        assert_eq!(added.len(), 2);
        assert!(draining(&fleet, "a"));
        assert!(!draining(&fleet, "b"), "a drain before it registered");
        assert!(draining(&fleet, "static-1"));
        let s = fleet.worker("static-1").unwrap();
        assert_eq!(s.source, WorkerSource::Static, "never replaced");
        assert_eq!(s.spec.provider, "p1");

        // a renewed (the same worker, its lease from the store), b gone, p1 undrained except
        // for a's own newer drain; c changed here since the read: left alone.
        let a = fleet.worker("a").unwrap();
        let mut renewed = reg("a", "p1", 5);
        renewed.lease_left_ms = 1_000;
        let state = FleetState {
            registrations: vec![renewed],
            drains: vec![
                drain(DrainKind::Provider, "p1", false, 9),
                drain(DrainKind::Worker, "a", true, 10),
            ],
        };
        fleet
            .register(spec("c", "p3"), BTreeMap::new(), Duration::from_secs(60))
            .unwrap();
        let added = apply(&fleet, &state, |n| n == "c");
        assert!(added.is_empty());
        assert!(
            Arc::ptr_eq(&a, &fleet.worker("a").unwrap()),
            "renewed, not replaced"
        );
        assert!(a.lease_left_ms().unwrap() <= 1_000);
        assert!(fleet.worker("b").is_none(), "removed elsewhere");
        assert!(fleet.worker("c").is_some(), "skipped");
        assert!(draining(&fleet, "a"));
        assert!(!draining(&fleet, "static-1"));

        // Registered anew (a new generation): earlier drains no longer apply.
        let state = FleetState {
            registrations: vec![reg("a", "p1", 11)],
            drains: vec![drain(DrainKind::Worker, "a", true, 10)],
        };
        apply(&fleet, &state, |_| false);
        assert!(!draining(&fleet, "a"));
        assert!(fleet.worker("c").is_none(), "not skipped any more: gone");
    }
}
