//! Redis made unreachable mid-run: a private `redis-server` (on a free port, killed and
//! started again by the test) stands in for the deployment's Redis. The configured policy
//! applies while it is down, nothing panics, and the limits are exact again once it is back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod redis;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::*;
use switchyard_metering::admission::{admit_shared, DecidedBy, Refusal};
use switchyard_metering::shared_limits::DownPolicy;

/// A redis-server of the test's own; killed on drop.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut me = Self { port, child: None };
        me.restart();
        me
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package) must be installed");
        self.child = Some(child);
        let began = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `per_replica` admissions at each replica at once; how many were granted, and by whom.
async fn burst(replicas: &[&Replica], per_replica: usize) -> (usize, Vec<DecidedBy>, Vec<Refusal>) {
    let mut tasks = tokio::task::JoinSet::new();
    for r in replicas {
        for _ in 0..per_replica {
            let (shared, key) = (r.shared.clone(), r.key.clone());
            tasks.spawn(async move {
                let (outcome, by) = admit_shared(&shared, &key, 10, 0).await;
                (outcome.map(|(r, _)| std::mem::forget(r)), by)
            });
        }
    }
    let (mut granted, mut by, mut refused) = (0, Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        let (outcome, decided) = done.unwrap();
        by.push(decided);
        match outcome {
            Ok(()) => granted += 1,
            Err(refusal) => refused.push(refusal),
        }
    }
    (granted, by, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_local_policy_each_replica_enforces_its_share_until_redis_is_back() {
    let mut server = PrivateRedis::start();
    let (store, secret) = store_with_key(false).await;
    let lim = limits(30, 1_000_000, 1_000);
    let mut s = Settings::new("outage:");
    s.url = server.url();
    s.lease = Duration::from_secs(3);
    let a = replica(&store, &secret, &lim, &s, true).await;
    let b = replica(&store, &secret, &lim, &s, true).await;
    let c = replica(&store, &secret, &lim, &s, true).await;
    let all = [&a, &b, &c];
    let counted = eventually(Duration::from_secs(5), || async {
        all.iter().all(|r| r.shared.replicas() == 3)
    })
    .await;
    assert!(counted, "the replicas did not count each other");

    server.kill();
    let (granted, by, _) = burst(&all, 50).await;
    assert!(by.iter().all(|b| *b == DecidedBy::LocalFallback), "{by:?}");
    assert_eq!(
        granted, 30,
        "each of three replicas enforces a third of 30/min"
    );
    assert!(all.iter().all(|r| !r.shared.health().is_up()));

    server.restart();
    let back = eventually(Duration::from_secs(5), || async {
        all.iter()
            .all(|r| r.shared.health().is_up() && r.shared.health().should_try())
    })
    .await;
    assert!(back, "the replicas did not notice Redis was back");
    // A Redis that restarted empty counts from a full minute again: exactly 30, shared.
    let (granted, by, _) = burst(&all, 50).await;
    assert!(by.iter().all(|b| *b == DecidedBy::Shared), "{by:?}");
    assert_eq!(granted, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_reject_policy_admission_refuses_with_retry_after_and_does_not_hang() {
    let mut server = PrivateRedis::start();
    let (store, secret) = store_with_key(false).await;
    let lim = limits(1_000, 1_000_000, 1_000);
    let mut s = Settings::new("outage:");
    s.url = server.url();
    s.policy = DownPolicy::Reject;
    let r = replica(&store, &secret, &lim, &s, true).await;
    assert_eq!(burst(&[&r], 5).await.0, 5);

    server.kill();
    let began = Instant::now();
    let (granted, by, refused) = burst(&[&r], 20).await;
    assert_eq!(granted, 0);
    assert!(by.iter().all(|b| *b == DecidedBy::Unavailable), "{by:?}");
    assert!(refused.iter().all(
        |f| matches!(f, Refusal::LimitsUnavailable { retry_after } if !retry_after.is_zero())
    ));
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "20 refusals took {:?}: requests waited on a dead Redis",
        began.elapsed()
    );

    server.restart();
    let back = eventually(Duration::from_secs(5), || async {
        r.shared.health().is_up() && r.shared.health().should_try()
    })
    .await;
    assert!(back);
    assert_eq!(burst(&[&r], 5).await.0, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_whose_answer_is_lost_gives_its_slot_back_and_the_connection_is_replaced() {
    // Replica `a` reaches Redis through a relay that goes silent (a half-open connection: the
    // admission runs in Redis, its answer never arrives); replica `b` reaches Redis directly.
    // One slot at a time, a lease of 30 s.
    let proxy = LosingProxy::start().await;
    let prefix = fresh_prefix();
    let (store, secret) = store_with_key(false).await;
    let lim = limits(1_000, 1_000_000, 1);
    let mut through_proxy = Settings::new(&prefix);
    through_proxy.url = proxy.url.clone();
    through_proxy.timeout = Duration::from_millis(300);
    let a = replica(&store, &secret, &lim, &through_proxy, false).await;
    let b = replica(&store, &secret, &lim, &Settings::new(&prefix), false).await;
    // Both of a's connections open and working: one admission decided by Redis, settled.
    // (The first calls dial, through the relay, within a short timeout: on a loaded machine
    // they may take more than one try.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let (outcome, by) = admit_shared(&a.shared, &a.key, 10, 0).await;
        if by == DecidedBy::Shared {
            break outcome;
        }
        assert!(
            Instant::now() < deadline,
            "no admission through the relay was decided by Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    first.unwrap().0.settle(10, 0);
    let settled = eventually(Duration::from_secs(5), || async {
        leases_held(&prefix).await == 0
    })
    .await;
    assert!(settled, "the first admission was never settled");

    proxy.lose_answers();
    let began = Instant::now();
    let (lost, by) = admit_shared(&a.shared, &a.key, 10, 0).await;
    assert_eq!(
        by,
        DecidedBy::LocalFallback,
        "no answer: the fallback decides"
    );
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        began.elapsed()
    );
    let lost = lost.unwrap().0;
    // Redis did take the slot for that admission; the replica undoes it rather than leaving
    // it to the 30 s lease, so the other replica gets the slot within seconds.
    assert!(
        admits_within(&b, 10, Duration::from_secs(5)).await,
        "the lost admission kept its slot"
    );
    // And `a` does not stay on the silent connection: it is shared again within seconds.
    let back = eventually(Duration::from_secs(5), || async {
        let (r, by) = admit_shared(&a.shared, &a.key, 10, 0).await;
        drop(r);
        by == DecidedBy::Shared
    })
    .await;
    assert!(
        back,
        "the replica kept using a connection that never answers"
    );
    drop(lost);
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_starting_while_redis_is_down_takes_its_share_of_the_gateways_the_store_knows() {
    // Redis has never answered this replica, so it has not counted the replicas; the store
    // knows three gateways alive (one long dead, not counted).
    let (store, secret) = store_with_key(false).await;
    let now = switchyard_metering::directory::unix_ms();
    for name in ["gw-a", "gw-b", "gw-c"] {
        store.instance_alive(name, now, now, 60_000).await.unwrap();
    }
    store
        .instance_alive("gw-gone", now - 600_000, now - 600_000, 45_000)
        .await
        .unwrap();
    let mut s = Settings::new("outage:");
    s.url = "redis://127.0.0.1:1".into();
    let r = replica(&store, &secret, &limits(30, 1_000_000, 1_000), &s, true).await;
    let counted = eventually(Duration::from_secs(5), || async {
        r.shared.replicas() == 3
    })
    .await;
    assert!(counted, "counted {} replicas", r.shared.replicas());
    let (granted, by, _) = burst(&[&r], 50).await;
    assert!(by.iter().all(|b| *b == DecidedBy::LocalFallback), "{by:?}");
    assert_eq!(granted, 10, "a third of 30/min, not the whole limit");
}
