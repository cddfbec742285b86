//! The adaptive choice of a worker for one request.
//!
//! Eligible: routable (ready, or on probation with nothing outstanding), not already tried by
//! this request, allowed for the request's tier (reserved capacity), in the requested pool
//! (main or canary), and below its declared concurrency. Among the eligible, in order of
//! importance:
//!
//! 1. not a provider this request already failed on (a provider-wide outage is common on
//!    rented GPUs: the retry goes elsewhere);
//! 2. not a provider whose breaker is open: half or more of its workers for this model out of
//!    rotation (ejected, unhealthy). Its healthy workers are used only when no other provider
//!    has room. Computed from the workers' own states on every choice, so it closes as soon as
//!    they recover and cannot stick;
//! 3. in the gateway's region;
//! 4. the conversation's sticky worker (its KV cache holds the prefix), unless its expected
//!    wait is more than twice the best: a popular prompt template must not pile every user of
//!    an app onto one worker;
//! 5. the smallest expected wait, (outstanding + 1) × TTFT EWMA — where waits within
//!    `cost_slack` of the best count as equal and the cheaper worker wins (cost, when the SLO
//!    allows);
//! 6. round-robin among the rest (the scan starts at a rotating offset).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::breaker::WorkerState;
use crate::registry::{Fleet, WorkerLease};
use crate::worker::{Pool, Worker};

/// What the request asks of the fleet.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub model: &'a str,
    pub tier: &'a str,
    pub pool: Pool,
    /// Workers that already failed this request.
    pub tried: &'a [Arc<Worker>],
    /// The gateway's region; workers there are preferred.
    pub region: Option<&'a str>,
    /// The worker this conversation went to last time.
    pub sticky: Option<&'a str>,
    /// Waits within this factor of the best count as equal, and the cheaper worker wins
    /// (1.0 = latency only).
    pub cost_slack: f64,
}

impl<'a> Query<'a> {
    pub fn new(model: &'a str, tier: &'a str) -> Self {
        Self {
            model,
            tier,
            pool: Pool::Main,
            tried: &[],
            region: None,
            sticky: None,
            cost_slack: 1.0,
        }
    }
}

/// The outcome of a choice.
#[derive(Debug)]
pub enum Pick {
    Worker(WorkerLease),
    /// Workers are up but every eligible one is at its concurrency: queue or shed.
    Saturated,
    /// No worker of this model (for this tier and pool) is in rotation.
    Unavailable,
}

struct Candidate<'w> {
    worker: &'w Arc<Worker>,
    /// Lower is better, compared before the wait.
    rank: (bool, bool, bool),
    wait: u128,
}

/// Times a choice is made again after losing its worker's last free slot to a concurrent
/// request; past that the fleet is as good as saturated.
const PICK_RACES: usize = 4;

impl Fleet {
    pub fn pick(&self, q: &Query<'_>) -> Pick {
        for _ in 0..PICK_RACES {
            if let Some(pick) = self.pick_once(q) {
                return pick;
            }
        }
        Pick::Saturated
    }

    /// One choice; `None` when the chosen worker's last free slot went to another request
    /// between the look and the lease.
    fn pick_once(&self, q: &Query<'_>) -> Option<Pick> {
        let members = self.members.load();
        let Some(all) = members.by_model.get(q.model) else {
            return Some(Pick::Unavailable);
        };
        let fastest = all
            .iter()
            .filter_map(|w| w.ttft_ewma_us())
            .min()
            .unwrap_or(1);
        let tripped = tripped_providers(all);
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut saturated = false;
        let mut eligible: Vec<Candidate<'_>> = Vec::with_capacity(all.len());
        for i in 0..all.len() {
            let w = &all[(start + i) % all.len()];
            if w.spec.pool != q.pool
                || !w.spec.serves_tier(q.tier)
                || q.tried.iter().any(|t| Arc::ptr_eq(t, w))
            {
                continue;
            }
            if !w.is_routable() {
                // On probation with its one request in flight: busy, not gone. Counting it as
                // gone would shed requests for a model whose only worker is proving itself.
                saturated |= w.state() == WorkerState::Probation;
                continue;
            }
            if w.is_saturated() {
                saturated = true;
                continue;
            }
            // On probation a worker counts as the fastest: it must get requests to prove
            // itself (it takes one at a time), or low traffic would keep it there.
            let ewma = match w.state() {
                WorkerState::Probation => fastest,
                _ => w.ttft_ewma_us().unwrap_or(fastest),
            };
            let failed_provider = q.tried.iter().any(|t| t.spec.provider == w.spec.provider);
            let out_of_region = q.region.is_some_and(|r| r != w.spec.region);
            let provider_open = tripped.iter().any(|p| *p == w.spec.provider);
            eligible.push(Candidate {
                worker: w,
                rank: (failed_provider, provider_open, out_of_region),
                wait: u128::from(w.outstanding() + 1) * u128::from(ewma.max(1)),
            });
        }
        let Some(best_rank) = eligible.iter().map(|c| c.rank).min() else {
            return Some(if saturated {
                Pick::Saturated
            } else {
                Pick::Unavailable
            });
        };
        eligible.retain(|c| c.rank == best_rank);
        let best_wait = eligible.iter().map(|c| c.wait).min().unwrap_or(0);
        if let Some(sticky) = q.sticky {
            if let Some(c) = eligible
                .iter()
                .find(|c| c.worker.spec.name == sticky && c.wait <= best_wait.saturating_mul(2))
            {
                return WorkerLease::try_new(c.worker).map(Pick::Worker);
            }
        }
        let slack = (best_wait as f64 * q.cost_slack.max(1.0)) as u128;
        let chosen = eligible
            .iter()
            .filter(|c| c.wait <= slack.max(best_wait))
            // The first of the cheapest keeps the rotation's order among equals.
            .min_by(|a, b| {
                let by_price = a
                    .worker
                    .spec
                    .price_per_hour
                    .total_cmp(&b.worker.spec.price_per_hour);
                if q.cost_slack > 1.0 {
                    by_price.then(a.wait.cmp(&b.wait))
                } else {
                    a.wait.cmp(&b.wait)
                }
            });
        match chosen {
            Some(c) => WorkerLease::try_new(c.worker).map(Pick::Worker),
            None => Some(Pick::Unavailable),
        }
    }
}

impl Fleet {
    /// Whether some worker of `model` could take a request now, whatever its pool or tiers.
    /// A queued request that cannot use it lets the next one look (see the gateway's queue).
    pub fn has_free_worker(&self, model: &str) -> bool {
        self.members
            .load()
            .by_model
            .get(model)
            .is_some_and(|all| all.iter().any(|w| w.is_routable() && !w.is_saturated()))
    }
}

/// Providers with at least two workers in this pool, half or more of them out of rotation.
fn tripped_providers(pool: &[Arc<Worker>]) -> Vec<&str> {
    let mut counts: Vec<(&str, u32, u32)> = Vec::new();
    for w in pool {
        let out = u32::from(!w.is_healthy());
        match counts.iter_mut().find(|(p, _, _)| *p == w.spec.provider) {
            Some((_, total, down)) => {
                *total += 1;
                *down += out;
            }
            None => counts.push((&w.spec.provider, 1, out)),
        }
    }
    counts
        .into_iter()
        .filter(|(_, total, down)| *total >= 2 && down * 2 >= *total)
        .map(|(p, _, _)| p)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runtime::{PromptFormat, RuntimeKind};
    use crate::worker::WorkerSpec;

    fn spec(name: &str, provider: &str, region: &str, price: f64) -> WorkerSpec {
        WorkerSpec {
            name: name.into(),
            url: "http://127.0.0.1:1".into(),
            runtime: RuntimeKind::Vllm,
            model: "m".into(),
            upstream_model: None,
            provider: provider.into(),
            region: region.into(),
            gpu: "g".into(),
            price_per_hour: price,
            max_concurrency: 2,
            api_key: None,
            prompt_format: PromptFormat::default(),
            tiers: Vec::new(),
            pool: Pool::Main,
            trust: Default::default(),
        }
    }

    fn fleet(specs: Vec<WorkerSpec>) -> Fleet {
        let f = Fleet::new(specs).unwrap();
        f.workers().iter().for_each(|w| w.set_healthy(true));
        f
    }

    fn name(p: Pick) -> String {
        match p {
            Pick::Worker(l) => l.worker().name().to_string(),
            other => format!("{other:?}"),
        }
    }

    /// Requests racing for a worker's last free slot: never more leases than its
    /// `max_concurrency` (a look-then-take would let two through).
    #[test]
    fn concurrent_picks_never_exceed_max_concurrency() {
        let f = std::sync::Arc::new(fleet(vec![spec("a", "p", "r", 1.0)]));
        let worker = f.workers()[0].clone();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (f, worker) = (f.clone(), worker.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if let Pick::Worker(lease) = f.pick(&Query::new("m", "pro")) {
                            assert!(worker.outstanding() <= 2, "{}", worker.outstanding());
                            drop(lease);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(worker.outstanding(), 0);
    }

    #[test]
    fn least_expected_wait_and_saturation() {
        let f = fleet(vec![spec("a", "p", "r", 1.0), spec("b", "p", "r", 1.0)]);
        let q = Query::new("m", "pro");
        let l1 = f.pick(&q);
        let l2 = f.pick(&q);
        let names = [name_of(&l1), name_of(&l2)];
        assert!(names.contains(&"a".to_string()) && names.contains(&"b".to_string()));
        let _l3 = f.pick(&q);
        let _l4 = f.pick(&q);
        assert!(
            matches!(f.pick(&q), Pick::Saturated),
            "2 × max_concurrency 2"
        );
        drop(l1);
        assert!(matches!(f.pick(&q), Pick::Worker(_)), "a slot freed");
        assert!(matches!(
            f.pick(&Query::new("other", "pro")),
            Pick::Unavailable
        ));
    }

    fn name_of(p: &Pick) -> String {
        match p {
            Pick::Worker(l) => l.worker().name().to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn slow_workers_get_less_and_unmeasured_ones_get_measured() {
        let f = fleet(vec![
            spec("fast", "p", "r", 1.0),
            spec("slow", "p", "r", 1.0),
        ]);
        f.worker("fast")
            .unwrap()
            .record_ttft(std::time::Duration::from_millis(10), 10);
        f.worker("slow")
            .unwrap()
            .record_ttft(std::time::Duration::from_millis(500), 10);
        for _ in 0..5 {
            assert_eq!(name(f.pick(&Query::new("m", "pro"))), "fast");
        }
        let f = fleet(vec![
            spec("measured", "p", "r", 1.0),
            spec("new", "p", "r", 1.0),
        ]);
        f.worker("measured")
            .unwrap()
            .record_ttft(std::time::Duration::from_millis(10), 10);
        let picks: Vec<String> = (0..4)
            .map(|_| name(f.pick(&Query::new("m", "pro"))))
            .collect();
        assert!(picks.contains(&"new".to_string()), "{picks:?}");
    }

    #[test]
    fn retries_avoid_the_failed_provider_and_region_is_preferred() {
        let f = fleet(vec![
            spec("a1", "a", "eu", 1.0),
            spec("a2", "a", "eu", 1.0),
            spec("b1", "b", "us", 1.0),
        ]);
        let tried = vec![f.worker("a1").unwrap()];
        let q = Query {
            tried: &tried,
            ..Query::new("m", "pro")
        };
        for _ in 0..4 {
            assert_eq!(
                name(f.pick(&q)),
                "b1",
                "another provider, even out of region"
            );
        }
        let q = Query {
            region: Some("us"),
            ..Query::new("m", "pro")
        };
        for _ in 0..4 {
            assert_eq!(name(f.pick(&q)), "b1");
        }
    }

    #[test]
    fn a_provider_with_half_its_workers_down_is_used_last() {
        let f = fleet(vec![
            spec("a1", "a", "r", 1.0),
            spec("a2", "a", "r", 1.0),
            spec("b1", "b", "r", 1.0),
        ]);
        // b1 is slower, so without the breaker a2 would win.
        f.worker("a1")
            .unwrap()
            .record_ttft(std::time::Duration::from_millis(20), 10);
        f.worker("a2")
            .unwrap()
            .record_ttft(std::time::Duration::from_millis(10), 10);
        f.worker("b1")
            .unwrap()
            .record_ttft(std::time::Duration::from_millis(50), 10);
        assert_eq!(name(f.pick(&Query::new("m", "pro"))), "a2");
        f.worker("a1").unwrap().health_failed("probe refused");
        for _ in 0..3 {
            assert_eq!(
                name(f.pick(&Query::new("m", "pro"))),
                "b1",
                "breaker open on a"
            );
        }
        f.worker("a1").unwrap().set_healthy(true);
        assert_eq!(name(f.pick(&Query::new("m", "pro"))), "a2", "closed again");
    }

    #[test]
    fn reserved_capacity_pools_stickiness_and_cost() {
        let mut reserved = spec("reserved", "p", "r", 1.0);
        reserved.tiers = vec!["business".into()];
        let mut canary = spec("canary", "p", "r", 1.0);
        canary.pool = Pool::Canary;
        let f = fleet(vec![reserved, canary, spec("shared", "p", "r", 1.0)]);
        for _ in 0..4 {
            assert_eq!(name(f.pick(&Query::new("m", "hobby"))), "shared");
        }
        let business: Vec<String> = (0..4)
            .map(|_| name(f.pick(&Query::new("m", "business"))))
            .collect();
        assert!(business.contains(&"reserved".to_string()), "{business:?}");
        let q = Query {
            pool: Pool::Canary,
            ..Query::new("m", "hobby")
        };
        assert_eq!(name(f.pick(&q)), "canary");
        let q = Query {
            sticky: Some("shared"),
            ..Query::new("m", "business")
        };
        for _ in 0..4 {
            assert_eq!(name(f.pick(&q)), "shared");
        }
        // ...but not onto a worker that would make it wait more than twice the best.
        f.worker("reserved")
            .unwrap()
            .record_ttft(std::time::Duration::from_millis(10), 10);
        f.worker("shared")
            .unwrap()
            .record_ttft(std::time::Duration::from_millis(100), 10);
        assert_eq!(name(f.pick(&q)), "reserved");

        let f = fleet(vec![
            spec("dear", "p", "r", 4.0),
            spec("cheap", "q", "r", 1.0),
        ]);
        f.worker("dear")
            .unwrap()
            .record_ttft(std::time::Duration::from_millis(100), 10);
        f.worker("cheap")
            .unwrap()
            .record_ttft(std::time::Duration::from_millis(120), 10);
        let q = Query {
            cost_slack: 1.5,
            ..Query::new("m", "pro")
        };
        assert_eq!(name(f.pick(&q)), "cheap", "20% slower is within the slack");
        assert_eq!(
            name(f.pick(&Query::new("m", "pro"))),
            "dear",
            "no slack: latency"
        );
    }
}
