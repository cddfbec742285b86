//! Limits shared by three replicas in the machine's Redis: what one replica reserves, the
//! others see, so a limit holds for the deployment as a whole, not per replica.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod redis;

use std::time::{Duration, Instant};

use redis::*;
use switchyard_metering::admission::{admit_shared, DecidedBy, Refusal, Reservation};
use switchyard_metering::limiter::Denial;
use switchyard_metering::money::usd_to_nanos;

/// Fires `per_replica` admissions of `tokens` (and `credit`) at each replica at once; returns
/// the reservations granted and the refusals.
async fn burst(
    replicas: &[&Replica],
    per_replica: usize,
    tokens: u64,
    credit: i64,
) -> (Vec<Reservation>, Vec<Refusal>) {
    let mut tasks = tokio::task::JoinSet::new();
    for r in replicas {
        for _ in 0..per_replica {
            let (shared, key) = (r.shared.clone(), r.key.clone());
            tasks.spawn(async move {
                let (outcome, by) = admit_shared(&shared, &key, tokens, credit).await;
                assert_eq!(by, DecidedBy::Shared, "Redis is up: it decides");
                outcome
            });
        }
    }
    let (mut granted, mut refused) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok((reservation, _)) => granted.push(reservation),
            Err(refusal) => refused.push(refusal),
        }
    }
    (granted, refused)
}

async fn three(limits: &switchyard_metering::Limits, prefix: &str) -> [Replica; 3] {
    let (store, secret) = store_with_key(false).await;
    let s = Settings::new(prefix);
    [
        replica(&store, &secret, limits, &s, false).await,
        replica(&store, &secret, limits, &s, false).await,
        replica(&store, &secret, limits, &s, false).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_minute_hold_exactly_across_three_replicas() {
    let prefix = fresh_prefix();
    let [a, b, c] = three(&limits(30, 1_000_000, 1_000), &prefix).await;
    let began = Instant::now();
    let (granted, refused) = burst(&[&a, &b, &c], 50, 10, 0).await;
    // 30 per minute refill one every 2 s: a burst slower than that may earn one more.
    let refilled = (began.elapsed().as_secs_f64() / 2.0).floor() as usize;
    assert!(
        (30..=30 + refilled).contains(&granted.len()),
        "150 requests over three replicas against 30/min admitted {} (refill allowance {refilled})",
        granted.len()
    );
    assert!(refused.iter().all(|r| matches!(
        r,
        Refusal::Limit {
            denial: Denial::Requests { .. },
            ..
        }
    )));
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_burst_is_exact_to_one_reservation() {
    let prefix = fresh_prefix();
    let [a, b, c] = three(&limits(10_000, 1_000, 1_000), &prefix).await;
    // 300 tokens each: three fit in 1,000, a fourth does not (the refill over a burst is a few
    // tokens, not the 200 missing).
    let (granted, refused) = burst(&[&a, &b, &c], 10, 300, 0).await;
    assert_eq!(granted.len(), 3);
    match &refused[0] {
        Refusal::Limit {
            denial: Denial::Tokens { retry_after },
            rate,
        } => {
            assert!(*retry_after > Duration::from_secs(10), "{retry_after:?}");
            assert_eq!(rate.limit_tokens, 1_000);
            assert!(rate.remaining_tokens < 300, "{rate:?}");
        }
        other => panic!("{other:?}"),
    }
    // Settled with 100 used each, 200 × 3 come back for everyone.
    for r in granted {
        r.settle(100, 0);
    }
    let back = admits_within(&c, 300, Duration::from_secs(5)).await;
    assert!(
        back,
        "tokens given back by settlement were not seen by another replica"
    );
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_cap_of_four_holds_across_three_replicas() {
    let prefix = fresh_prefix();
    let [a, b, c] = three(&limits(10_000, 1_000_000, 4), &prefix).await;
    let (mut granted, refused) = burst(&[&a, &b, &c], 4, 10, 0).await;
    assert_eq!(granted.len(), 4, "12 at once against a cap of 4");
    assert!(refused.iter().all(|r| matches!(
        r,
        Refusal::Limit {
            denial: Denial::Concurrency { limit: 4 },
            ..
        }
    )));
    // One ends: one slot, anywhere.
    granted.pop().unwrap().settle(10, 0);
    let freed = admits_within(&b, 10, Duration::from_secs(5)).await;
    assert!(freed, "a settled slot never came free");
    let (again, _) = burst(&[&a, &b, &c], 1, 10, 0).await;
    assert!(again.is_empty(), "the cap of 4 was exceeded");
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_own_tighter_cap_holds_across_three_replicas() {
    // The tier allows 100 at once; this key only 3. A key's limits are counted in Redis only
    // when they are tighter than its tenant's: this one is.
    let prefix = fresh_prefix();
    let (store, secret) = store_with_key_limited(
        false,
        switchyard_metering::model::LimitOverrides {
            max_concurrent: Some(3),
            ..Default::default()
        },
    )
    .await;
    let s = Settings::new(&prefix);
    let tier = limits(10_000, 1_000_000, 100);
    let a = replica(&store, &secret, &tier, &s, false).await;
    let b = replica(&store, &secret, &tier, &s, false).await;
    let c = replica(&store, &secret, &tier, &s, false).await;
    let (mut granted, refused) = burst(&[&a, &b, &c], 4, 10, 0).await;
    assert_eq!(granted.len(), 3, "12 at once against the key's cap of 3");
    assert!(refused.iter().all(|r| matches!(
        r,
        Refusal::Limit {
            denial: Denial::Concurrency { limit: 3 },
            ..
        }
    )));
    // Settling gives the key's slot back too, on any replica.
    granted.pop().unwrap().settle(10, 0);
    assert!(
        admits_within(&c, 10, Duration::from_secs(5)).await,
        "a settled slot of the key never came free"
    );
    let (again, _) = burst(&[&a, &b, &c], 1, 10, 0).await;
    assert!(again.is_empty(), "the key's cap of 3 was exceeded");
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_request_leaks_its_slot_no_longer_than_the_lease() {
    let prefix = fresh_prefix();
    let (store, secret) = store_with_key(false).await;
    let lim = limits(10_000, 1_000_000, 2);
    let mut s = Settings::new(&prefix);
    s.lease = Duration::from_secs(3);
    // The doomed replica runs on a runtime of its own: dropping it stops its lease renewals
    // as a kill -9 would, with the two requests still open.
    let doomed = {
        let (store, secret, lim) = (store.clone(), secret.clone(), lim.clone());
        let s = Settings {
            lease: s.lease,
            ..Settings::new(&prefix)
        };
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let r = replica(&store, &secret, &lim, &s, false).await;
                for _ in 0..2 {
                    let (reservation, _) = admit_shared(&r.shared, &r.key, 10, 0).await.0.unwrap();
                    std::mem::forget(reservation);
                }
            });
            drop(rt);
            Instant::now()
        })
    };
    let killed_at = doomed.join().unwrap();
    let survivor = replica(&store, &secret, &lim, &s, false).await;
    assert!(
        matches!(
            admit_shared(&survivor.shared, &survivor.key, 10, 0).await.0,
            Err(Refusal::Limit {
                denial: Denial::Concurrency { limit: 2 },
                ..
            })
        ),
        "the dead replica's slots are still leased"
    );
    let freed = admits_within(&survivor, 10, Duration::from_secs(10)).await;
    let leaked = killed_at.elapsed();
    assert!(freed, "the dead replica's slots never came back");
    assert!(
        leaked <= s.lease + Duration::from_secs(1),
        "slots leaked for {leaked:?}, the lease is {:?}",
        s.lease
    );
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_request_keeps_its_slot_past_the_lease_by_renewing_it() {
    let prefix = fresh_prefix();
    let (store, secret) = store_with_key(false).await;
    let lim = limits(10_000, 1_000_000, 1);
    let mut s = Settings::new(&prefix);
    s.lease = Duration::from_secs(3);
    let a = replica(&store, &secret, &lim, &s, false).await;
    let b = replica(&store, &secret, &lim, &s, false).await;
    let (held, _) = admit_shared(&a.shared, &a.key, 10, 0).await.0.unwrap();
    // Two leases long: the slot is still taken, because the request is still running.
    tokio::time::sleep(2 * s.lease).await;
    assert!(
        admit_shared(&b.shared, &b.key, 10, 0).await.0.is_err(),
        "a running request's slot expired"
    );
    held.settle(10, 0);
    assert!(admits_within(&b, 10, Duration::from_secs(5)).await);
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepaid_credit_and_the_monthly_quota_are_one_balance_for_all_replicas() {
    let prefix = fresh_prefix();
    let (store, secret) = store_with_key(true).await;
    store
        .add_credit("acme", usd_to_nanos(1.0), "")
        .await
        .unwrap();
    let lim = switchyard_metering::Limits {
        monthly_tokens: 10_000,
        ..limits(10_000, 1_000_000, 1_000)
    };
    let s = Settings::new(&prefix);
    let a = replica(&store, &secret, &lim, &s, false).await;
    let b = replica(&store, &secret, &lim, &s, false).await;
    let c = replica(&store, &secret, &lim, &s, false).await;
    // $0.30 worst case each: three fit in $1, not nine.
    let (granted, refused) = burst(&[&a, &b, &c], 3, 10, usd_to_nanos(0.30)).await;
    assert_eq!(granted.len(), 3);
    assert!(matches!(refused[0], Refusal::InsufficientCredit { .. }));
    // Each cost $0.25: $0.25 is left for everyone, and what one replica spent the others see.
    for r in granted {
        r.settle(10, usd_to_nanos(0.25));
    }
    let (shared, key) = (a.shared.clone(), a.key.clone());
    let seen = eventually(Duration::from_secs(5), || {
        let (shared, key) = (shared.clone(), key.clone());
        async move {
            matches!(
                admit_shared(&shared, &key, 10, usd_to_nanos(0.30)).await.0,
                Err(Refusal::InsufficientCredit { balance, .. }) if balance == usd_to_nanos(0.25)
            )
        }
    })
    .await;
    assert!(seen, "the shared balance did not come to $0.25");

    // The quota: 30 used so far; 4,000-token reservations, two fit in what is left of 10,000.
    let (granted, refused) = burst(&[&a, &b, &c], 2, 4_000, 0).await;
    assert_eq!(granted.len(), 2, "{refused:?}");
    assert!(refused.iter().all(|r| matches!(
        r,
        Refusal::Limit {
            denial: Denial::MonthlyQuota { limit: 10_000 },
            ..
        }
    )));
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_retried_after_a_timeout_or_from_last_month_charges_once() {
    use switchyard_metering::directory::unix_ms;
    use switchyard_metering::limiter::month_index;
    use switchyard_metering::shared_limits::{AdmitArgs, SettleArgs};

    let prefix = fresh_prefix();
    let (store, secret) = store_with_key(true).await;
    store
        .add_credit("acme", usd_to_nanos(1.0), "")
        .await
        .unwrap();
    let lim = switchyard_metering::Limits {
        monthly_tokens: 1_000,
        ..limits(10_000, 1_000_000, 1_000)
    };
    let r = replica(&store, &secret, &lim, &Settings::new(&prefix), false).await;
    let (shared, key) = (&r.shared, &r.key);
    let month = month_index(unix_ms());
    let keys = || shared.keys("acme", Some("key_1"));
    let admit = |member: String| {
        let keys = keys();
        async move {
            shared
                .admit(&AdmitArgs {
                    keys: &keys,
                    done: &shared.settled_mark("acme", &member),
                    member: &member,
                    tokens: 100,
                    credit: usd_to_nanos(0.30),
                    month,
                    tenant_limits: &key.tenant.limits,
                    tenant_month_seed: 0,
                    key_limits: &key.limits,
                    key_month_seed: 0,
                    prepaid: true,
                    balance_seed: usd_to_nanos(1.0),
                })
                .await
                .unwrap()
        }
    };
    let settle = |member: &str, used: u64, cost: i64, month: u32| SettleArgs {
        keys: keys(),
        done: shared.settled_mark("acme", member),
        member: member.to_string(),
        reserved: 100,
        used,
        credit: usd_to_nanos(0.30),
        cost,
        month,
        tenant_limits: key.tenant.limits.clone(),
        key_limits: key.limits.clone(),
        prepaid: true,
        cancel: false,
    };
    let member = shared.lease_member(100, usd_to_nanos(0.30));
    assert_eq!(admit(member.clone()).await.code, 0);
    // The first settlement ran but its answer was lost: the retry must change nothing.
    let once = settle(&member, 700, usd_to_nanos(0.30), month);
    shared.settle(&once).await.unwrap();
    shared.settle(&once).await.unwrap();
    // A request admitted last month, settling now (a stream open at midnight UTC).
    let late = shared.lease_member(100, 0);
    shared
        .settle(&settle(&late, 50, 0, month - 1))
        .await
        .unwrap();

    // $0.70 left (not $0.40): a $0.65 worst case fits.
    let (ok, _) = admit_shared(shared, key, 10, usd_to_nanos(0.65)).await;
    assert!(ok.is_ok(), "charged twice: {:?}", ok.err());
    // 700 of 1,000 tokens used this month (not wiped by last month's settlement): 400 more
    // do not fit.
    match admit_shared(shared, key, 400, 0).await.0 {
        Err(Refusal::Limit {
            denial: Denial::MonthlyQuota { limit: 1_000 },
            ..
        }) => {}
        other => panic!(
            "the month's usage was lost or doubled: {:?}",
            other.map(|_| ())
        ),
    }
    cleanup(&prefix).await;
}
