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
    let keys = || shared.keys("acme", "key_1", true);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_gives_back_what_its_admission_took_and_stops_one_not_yet_run() {
    use switchyard_metering::directory::unix_ms;
    use switchyard_metering::limiter::month_index;
    use switchyard_metering::shared_limits::{AdmitArgs, SettleArgs};

    let prefix = fresh_prefix();
    let (store, secret) = store_with_key(false).await;
    // Two requests a minute: a request taken and not given back would leave one.
    let r = replica(
        &store,
        &secret,
        &limits(2, 1_000_000, 10),
        &Settings::new(&prefix),
        false,
    )
    .await;
    let (shared, key) = (&r.shared, &r.key);
    let month = month_index(unix_ms());
    let keys = || shared.keys("acme", "key_1", false);
    let admit = |member: String| {
        let keys = keys();
        async move {
            shared
                .admit(&AdmitArgs {
                    keys: &keys,
                    done: &shared.settled_mark("acme", &member),
                    member: &member,
                    tokens: 100,
                    credit: 0,
                    month,
                    tenant_limits: &key.tenant.limits,
                    tenant_month_seed: 0,
                    key_limits: &key.limits,
                    key_month_seed: 0,
                    prepaid: false,
                    balance_seed: 0,
                })
                .await
                .unwrap()
                .code
        }
    };
    let cancel = |member: &str| SettleArgs {
        keys: keys(),
        done: shared.settled_mark("acme", member),
        member: member.to_string(),
        reserved: 100,
        used: 0,
        credit: 0,
        cost: 0,
        month,
        tenant_limits: key.tenant.limits.clone(),
        key_limits: key.limits.clone(),
        prepaid: false,
        cancel: true,
    };

    // Admitted, its answer lost, then cancelled (twice: a retry): slot and request given back.
    let lost = shared.lease_member(100, 0);
    assert_eq!(admit(lost.clone()).await, 0);
    assert_eq!(leases_held(&prefix).await, 1);
    shared.settle(&cancel(&lost)).await.unwrap();
    shared.settle(&cancel(&lost)).await.unwrap();
    assert_eq!(leases_held(&prefix).await, 0);

    // A cancellation that reaches Redis first stops its admission: nothing is taken.
    let overtaken = shared.lease_member(100, 0);
    shared.settle(&cancel(&overtaken)).await.unwrap();
    assert_eq!(admit(overtaken).await, 7);
    assert_eq!(leases_held(&prefix).await, 0);

    // Both requests of the minute are still there.
    let (granted, refused) = burst(&[&r], 3, 10, 0).await;
    assert_eq!(granted.len(), 2, "{refused:?}");
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_not_counted_keeps_its_month_for_a_quota_set_later() {
    // Replica `a` knows the key with no limits of its own (not counted at admission); replica
    // `b` already has the new quota of 1,000 tokens a month on it.
    let prefix = fresh_prefix();
    let tier = limits(10_000, 1_000_000, 100);
    let (store_a, secret) = store_with_key(false).await;
    let a = replica(&store_a, &secret, &tier, &Settings::new(&prefix), false).await;
    let (granted, _) = burst(&[&a], 1, 800, 0).await;
    for g in granted {
        g.settle(700, 0);
    }
    let (store_b, secret_b) = store_with_key_limited(
        false,
        switchyard_metering::model::LimitOverrides {
            monthly_tokens: Some(1_000),
            ..Default::default()
        },
    )
    .await;
    let b = replica(&store_b, &secret_b, &tier, &Settings::new(&prefix), false).await;
    // 700 used through `a`: 400 more do not fit under the key's new quota.
    let refused = eventually(Duration::from_secs(5), || async {
        matches!(
            admit_shared(&b.shared, &b.key, 400, 0).await.0,
            Err(Refusal::Limit {
                denial: Denial::MonthlyQuota { limit: 1_000 },
                ..
            })
        )
    })
    .await;
    assert!(refused, "the key's usage while it was not counted was lost");
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_looser_than_its_tenant_reports_the_tenants_rate_headers() {
    let prefix = fresh_prefix();
    let (store, secret) = store_with_key_limited(
        false,
        switchyard_metering::model::LimitOverrides {
            requests_per_minute: Some(1_200),
            ..Default::default()
        },
    )
    .await;
    let r = replica(
        &store,
        &secret,
        &limits(60, 1_000_000, 100),
        &Settings::new(&prefix),
        false,
    )
    .await;
    let (ok, _) = admit_shared(&r.shared, &r.key, 10, 0).await;
    let (_, rate) = ok.unwrap();
    assert_eq!(rate.limit_requests, 60);
    assert_eq!(rate.remaining_requests, 59);
    // One of 60 a minute used: full again in about a second, not in the key's terms.
    assert!(
        rate.reset_requests <= Duration::from_secs(2),
        "{:?}",
        rate.reset_requests
    );
    cleanup(&prefix).await;
}
