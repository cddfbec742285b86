//! Replicas of the limiter for tests: each is a key directory (on one shared store) and a
//! `SharedLimits` on the machine's Redis (`SWITCHYARD_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`), under a key prefix of its own per test. The tests need Redis
//! running (`scripts/test` checks it and starts it if it is not); they fail, not skip, without it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_metering::directory::{Directory, KeyEntry};
use switchyard_metering::keys::{display_prefix, generate_secret, hash_secret};
use switchyard_metering::model::{ApiKey, LimitOverrides, Limits, Scopes, Tenant};
use switchyard_metering::shared_limits::{DownPolicy, SharedLimits, SharedLimitsSettings};
use switchyard_metering::store::sqlite::SqliteStore;
use switchyard_metering::Store;

pub const URL_ENV: &str = "SWITCHYARD_TEST_REDIS_URL";

pub fn url() -> String {
    std::env::var(URL_ENV).unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

pub fn fresh_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

pub fn limits(rpm: u32, tpm: u64, concurrent: u32) -> Limits {
    Limits {
        requests_per_minute: rpm,
        tokens_per_minute: tpm,
        max_concurrent: concurrent,
        ..Limits::default()
    }
}

/// One store with tenant `acme` (on tier `t` with `limits`) and one key; returns the store and
/// the key's secret.
pub async fn store_with_key(prepaid: bool) -> (Arc<dyn Store>, String) {
    store_with_key_limited(prepaid, LimitOverrides::default()).await
}

/// [`store_with_key`] with the key's own limits `key_limits` (tighter than its tier's or not).
pub async fn store_with_key_limited(
    prepaid: bool,
    key_limits: LimitOverrides,
) -> (Arc<dyn Store>, String) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    store
        .create_tenant(&Tenant {
            id: "acme".into(),
            tier: "t".into(),
            overrides: LimitOverrides::default(),
            prepaid,
            created_at: 0,
            content_logging: Default::default(),
        })
        .await
        .unwrap();
    let secret = generate_secret();
    store
        .create_key(&ApiKey {
            id: "key_1".into(),
            tenant_id: "acme".into(),
            name: "k".into(),
            prefix: display_prefix(&secret),
            hash: hash_secret(&secret),
            scopes: Scopes::default(),
            expires_at: None,
            revoked_at: None,
            created_at: 0,
            limits: key_limits,
        })
        .await
        .unwrap();
    (store, secret)
}

pub struct Replica {
    pub directory: Arc<Directory>,
    pub shared: Arc<SharedLimits>,
    pub key: Arc<KeyEntry>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

pub struct Settings {
    pub url: String,
    pub prefix: String,
    pub policy: DownPolicy,
    pub lease: Duration,
    /// Generous: these tests count admissions exactly, and a loaded CI machine can take longer
    /// than the production default (250 ms) to answer, which would hand a decision to the
    /// local fallback. The outage tests kill their server, which refuses at once.
    pub timeout: Duration,
}

impl Settings {
    pub fn new(prefix: &str) -> Self {
        Self {
            url: url(),
            prefix: prefix.to_string(),
            policy: DownPolicy::Local,
            lease: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }
}

/// A replica on `store` with tier `t` = `limits`; `heartbeat` counts it among the replicas.
pub async fn replica(
    store: &Arc<dyn Store>,
    secret: &str,
    limits: &Limits,
    s: &Settings,
    heartbeat: bool,
) -> Replica {
    let tiers = BTreeMap::from([("t".to_string(), limits.clone())]);
    let directory = Arc::new(Directory::load(store.clone(), tiers, vec![]).await.unwrap());
    let shared = SharedLimits::new(SharedLimitsSettings {
        url: s.url.clone(),
        prefix: s.prefix.clone(),
        policy: s.policy,
        timeout: s.timeout,
        retry: Duration::from_millis(200),
        lease: s.lease,
        instance: format!("replica-{}", uuid::Uuid::new_v4().simple()),
    })
    .unwrap();
    let heartbeat = heartbeat.then(|| shared.spawn_heartbeat(directory.clone()));
    let key = directory.authenticate(secret, 0).unwrap();
    Replica {
        directory,
        shared,
        key,
        heartbeat,
    }
}

/// Polls `cond` every 20 ms until it holds or `deadline` passes; whether it held.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    deadline: Duration,
    mut cond: impl FnMut() -> F,
) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `r` admits a request of `tokens`, keeping the slot it gets (never settled);
/// whether that happened within `deadline`.
pub async fn admits_within(r: &Replica, tokens: u64, deadline: Duration) -> bool {
    eventually(deadline, || async {
        match switchyard_metering::admission::admit_shared(&r.shared, &r.key, tokens, 0)
            .await
            .0
        {
            Ok((reservation, _)) => {
                std::mem::forget(reservation);
                true
            }
            Err(_) => false,
        }
    })
    .await
}

/// Concurrency leases tenant `acme` holds in Redis under `prefix`, read directly.
pub async fn leases_held(prefix: &str) -> usize {
    let client = redis::Client::open(url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("ZCARD")
        .arg(format!("{prefix}{{t:acme}}:tl"))
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Deletes every key under `prefix`.
pub async fn cleanup(prefix: &str) {
    let client = redis::Client::open(url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// A TCP relay in front of the machine's Redis that can stop relaying answers on every
/// connection open so far, as a half-open connection does (requests still reach Redis and
/// run; their answers never come back). Connections opened afterwards work normally.
pub struct LosingProxy {
    pub url: String,
    lose_below: Arc<std::sync::atomic::AtomicU64>,
    next: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl LosingProxy {
    pub async fn start() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let lose_below = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(0));
        let (lose, ids) = (lose_below.clone(), next.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let id = ids.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let lose = lose.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        // Swallowed, never written: the socket stays open and silent.
                        if id < lose.load(Ordering::SeqCst) {
                            continue;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self {
            url: format!("redis://127.0.0.1:{port}"),
            lose_below,
            next,
            task,
        }
    }

    /// From now on, the connections open so far get no more answers.
    pub fn lose_answers(&self) {
        use std::sync::atomic::Ordering;
        self.lose_below
            .store(self.next.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

impl Drop for LosingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
