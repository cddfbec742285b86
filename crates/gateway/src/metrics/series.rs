//! Handles of the series a settled request records into, kept per label set.
//!
//! A `counter!`/`histogram!` call with owned labels allocates its label strings, hashes the key
//! and looks it up in the recorder's registry: about 12k instructions per request over the
//! half-dozen series a request touches, 6% of the gateway's work on a request. The label sets
//! are few (route × status × model × tier × the worker's region and provider × arm), so each
//! set's handles are looked up once and kept here; a request then costs one hash of its labels
//! and atomic adds. The map is copy-on-write: the first request of a label set pays for the
//! copy, every later one reads without a lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use metrics::{Counter, Histogram};

/// The labels of one settled request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Labels<'a> {
    pub route: &'static str,
    pub status: &'static str,
    pub model: &'a str,
    pub tier: &'a str,
    pub region: &'a str,
    pub provider: &'a str,
    pub arm: &'static str,
}

#[derive(Debug, Clone)]
struct OwnedLabels {
    route: &'static str,
    status: &'static str,
    model: String,
    tier: String,
    region: String,
    provider: String,
    arm: &'static str,
}

impl OwnedLabels {
    fn of(l: &Labels) -> Self {
        Self {
            route: l.route,
            status: l.status,
            model: l.model.to_owned(),
            tier: l.tier.to_owned(),
            region: l.region.to_owned(),
            provider: l.provider.to_owned(),
            arm: l.arm,
        }
    }

    fn is(&self, l: &Labels) -> bool {
        self.route == l.route
            && self.status == l.status
            && self.model == l.model
            && self.tier == l.tier
            && self.region == l.region
            && self.provider == l.provider
            && self.arm == l.arm
    }
}

/// One label set's handles. Each is registered on first use, so a series that a request of
/// this set never records into (TTFT of an unstreamed request, say) does not appear empty in
/// `/metrics`.
#[derive(Debug, Default)]
pub struct Series {
    pub requests: OnceLock<Counter>,
    pub ttft: OnceLock<Histogram>,
    pub ttlt: OnceLock<Histogram>,
    pub inter_token: OnceLock<Histogram>,
    pub tokens_in: OnceLock<Counter>,
    pub tokens_out: OnceLock<Counter>,
}

type Buckets = HashMap<u64, Vec<(OwnedLabels, Arc<Series>)>>;

#[derive(Debug, Default)]
pub struct SeriesCache {
    hasher: RandomState,
    map: ArcSwap<Buckets>,
}

impl SeriesCache {
    /// The handles of `labels`' series.
    pub fn get(&self, labels: &Labels) -> Arc<Series> {
        let hash = self.hasher.hash_one(labels);
        if let Some(series) = find(&self.map.load(), hash, labels) {
            return series;
        }
        let mut added = None;
        self.map.rcu(|map| {
            // Another request may have added it since the load above.
            if let Some(series) = find(map, hash, labels) {
                added = Some(series);
                return Arc::clone(map);
            }
            let series = Arc::new(Series::default());
            added = Some(series.clone());
            let mut map = Buckets::clone(map);
            map.entry(hash)
                .or_default()
                .push((OwnedLabels::of(labels), series));
            Arc::new(map)
        });
        added.unwrap_or_default()
    }

    /// Label sets held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.load().values().map(Vec::len).sum()
    }
}

fn find(map: &Buckets, hash: u64, labels: &Labels) -> Option<Arc<Series>> {
    map.get(&hash)?
        .iter()
        .find(|(owned, _)| owned.is(labels))
        .map(|(_, series)| series.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn labels<'a>(model: &'a str, status: &'static str) -> Labels<'a> {
        Labels {
            route: "/v1/chat/completions",
            status,
            model,
            tier: "pro",
            region: "eu",
            provider: "p",
            arm: "main",
        }
    }

    #[test]
    fn one_entry_per_label_set_and_the_same_handles_each_time() {
        let cache = SeriesCache::default();
        let a = cache.get(&labels("m1", "200"));
        let again = cache.get(&labels(&String::from("m1"), "200"));
        assert!(Arc::ptr_eq(&a, &again));
        let b = cache.get(&labels("m1", "503"));
        let c = cache.get(&labels("m2", "200"));
        assert!(!Arc::ptr_eq(&a, &b) && !Arc::ptr_eq(&a, &c));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn concurrent_first_requests_share_one_entry() {
        let cache = Arc::new(SeriesCache::default());
        let got: Vec<Arc<Series>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| cache.get(&labels("m", "200"))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(got.iter().all(|s| Arc::ptr_eq(s, &got[0])));
        assert_eq!(cache.len(), 1);
    }
}
