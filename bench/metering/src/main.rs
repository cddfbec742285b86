//! Cost per request of the metering hot path: admission (reserve against tenant and key
//! limits) plus settlement (refund and charge), against a baseline measured in the same run:
//! an uncontended mutex lock/unlock pair, the cheapest thing the path could possibly be. Also
//! the ledger's write throughput to a real SQLite file and to the machine's Postgres
//! (`SWITCHYARD_BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`, a fresh
//! schema per round, dropped after it), without and with crash accounting's open and
//! checkpoint records. And the latency an admission adds when the limits are shared in Redis
//! (`SWITCHYARD_BENCH_REDIS_URL`, default `redis://127.0.0.1:6379`). Run: `bench/metering/run.sh`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use switchyard_metering::admission;
use switchyard_metering::directory::{unix_ms, Directory, KeyEntry};
use switchyard_metering::keys::{display_prefix, hash_secret};
use switchyard_metering::ledger::{Ledger, LedgerConfig};
use switchyard_metering::open::{Checkpoint, OpenRequest};
use switchyard_metering::store::postgres::PgStore;
use switchyard_metering::store::sqlite::SqliteStore;
use switchyard_metering::store::UsageQuery;
use switchyard_metering::{
    ApiKey, LimitOverrides, Limits, Scopes, Store, Tenant, UsageRecord, UsageStatus,
};

type Error = Box<dyn std::error::Error>;

const ROUNDS: usize = 5;
const OPS: u64 = 200_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn key_entry(store: Arc<dyn Store>) -> Result<Arc<KeyEntry>, Error> {
    let limits = Limits {
        requests_per_minute: u32::MAX,
        tokens_per_minute: u64::MAX / 4,
        max_concurrent: u32::MAX,
        ..Limits::default()
    };
    store
        .create_tenant(&Tenant {
            id: "bench".into(),
            tier: "t".into(),
            overrides: LimitOverrides::default(),
            prepaid: true,
            created_at: unix_ms(),
            content_logging: Default::default(),
        })
        .await?;
    store.add_credit("bench", i64::MAX / 4, "bench").await?;
    let secret = "sk-bench-0123456789abcdefghijkl";
    let key = ApiKey {
        id: "key_bench".into(),
        tenant_id: "bench".into(),
        name: "bench".into(),
        prefix: display_prefix(secret),
        hash: hash_secret(secret),
        scopes: Scopes::default(),
        expires_at: None,
        revoked_at: None,
        created_at: unix_ms(),
        limits: LimitOverrides::default(),
    };
    let dir = Directory::load(
        store,
        BTreeMap::from([("t".to_string(), limits)]),
        vec![key],
    )
    .await?;
    Ok(dir.authenticate(secret, unix_ms())?)
}

/// ns per admit+settle, on `threads` threads at once.
fn admit_settle(key: &Arc<KeyEntry>, threads: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for i in 0..OPS {
                    if let Ok((reservation, _rate)) = admission::admit(key, 600, 2_000) {
                        reservation.settle(100 + i % 100, 300);
                    }
                }
            });
        }
    });
    // Wall-clock time per request as one thread sees it.
    start.elapsed().as_nanos() as f64 / OPS as f64
}

fn mutex_baseline() -> f64 {
    let m = Mutex::new(0u64);
    let start = Instant::now();
    for i in 0..OPS {
        if let Ok(mut g) = m.lock() {
            *g = g.wrapping_add(std::hint::black_box(i));
        }
    }
    start.elapsed().as_nanos() as f64 / OPS as f64
}

fn record(i: u64) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{i:012}"),
        started_at_ms: unix_ms(),
        tenant_id: "bench".into(),
        key_id: "key_bench".into(),
        model: "m".into(),
        endpoint: "/v1/chat/completions".into(),
        stream: true,
        worker: "w".into(),
        provider: "p".into(),
        region: "r".into(),
        prompt_tokens: 100,
        completion_tokens: 200,
        usage_estimated: false,
        usage_source: Default::default(),
        usage_note: None,
        ttft_ms: Some(100),
        ttft_exempt: false,
        total_ms: 1000,
        status: UsageStatus::Completed,
        http_status: 200,
        finish_reason: Some("stop".into()),
        cost: 960,
        cogs: 100,
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).await?);
    let key = key_entry(store.clone()).await?;

    let mut base = Vec::new();
    let mut single = Vec::new();
    let mut contended = Vec::new();
    for _ in 0..ROUNDS {
        base.push(mutex_baseline());
        single.push(admit_settle(&key, 1));
        contended.push(admit_settle(&key, 2));
    }
    let (base, single, contended) = (median(base), median(single), median(contended));
    println!("metering hot path, median of {ROUNDS} rounds × {OPS} ops (ns per request)");
    println!("  baseline: uncontended mutex lock+unlock   {base:>8.1} ns");
    println!(
        "  admit + settle, 1 thread                 {single:>8.1} ns  ({:.1}× baseline)",
        single / base
    );
    println!("  admit + settle, 2 threads, same tenant   {contended:>8.1} ns per request per thread (lock contention on one tenant)");
    println!(
        "  target: far below 1 ms = 1,000,000 ns → {:.5}% of it",
        single / 1e6 * 100.0
    );

    redis_admission(&key).await?;

    // The ledger, three ways, each into a fresh file, median of rounds: usage rows alone (the
    // baseline); crash accounting for short requests (each opened and closed within one
    // batch: the open is dropped unwritten); and for long ones (opened, checkpointed and
    // closed in different batches: three writes per request).
    // Rounds interleave the two stores, so both see the same machine.
    let n = 50_000u64;
    let mut rates: BTreeMap<(Backend, Mode), Vec<f64>> = BTreeMap::new();
    for _ in 0..3 {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            for mode in [Mode::RowsOnly, Mode::ShortRequests, Mode::LongRequests] {
                rates
                    .entry((backend, mode))
                    .or_default()
                    .push(ledger_rate(backend, mode, n).await?);
            }
        }
    }
    let rate = |b: Backend, m: Mode| median(rates.get(&(b, m)).cloned().unwrap_or_default());
    let base = rate(Backend::Sqlite, Mode::RowsOnly);
    for backend in [Backend::Sqlite, Backend::Postgres] {
        println!(
            "{}, {n} requests, median of 3 rounds (requests/s):",
            backend.label()
        );
        for mode in [Mode::RowsOnly, Mode::ShortRequests, Mode::LongRequests] {
            let r = rate(backend, mode);
            println!(
                "  {:<58} {r:>9.0}  ({:.2}x SQLite rows only)",
                mode.label(),
                r / base
            );
        }
    }
    let pg = rate(Backend::Postgres, Mode::RowsOnly);
    println!(
        "target: Postgres ledger >= 20,000 rows/s: {} ({pg:.0})",
        if pg >= 20_000.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

fn redis_url() -> String {
    std::env::var("SWITCHYARD_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Latency of one admission (what a request waits for; settlement runs after the response,
/// off the request path) with the limits in the machine's Redis against the in-process
/// limiter, rounds interleaved; and the same with 32 admissions in flight at once.
async fn redis_admission(key: &Arc<KeyEntry>) -> Result<(), Error> {
    use switchyard_metering::shared_limits::{DownPolicy, SharedLimits, SharedLimitsSettings};
    let prefix = format!("bench:{}:", std::process::id());
    let shared = SharedLimits::new(SharedLimitsSettings {
        url: redis_url(),
        prefix: prefix.clone(),
        policy: DownPolicy::Reject,
        timeout: std::time::Duration::from_secs(2),
        retry: std::time::Duration::from_secs(1),
        lease: std::time::Duration::from_secs(30),
        instance: "bench".into(),
    })?;
    const N: usize = 5_000;
    const N_SPACED: usize = 2_000;
    // The floor: a PING's round trip on a connection of the same kind.
    let client = redis::Client::open(redis_url())?;
    let mut ping_conn = client.get_multiplexed_async_connection().await?;
    let (mut ping, mut ping_spaced, mut local, mut redis, mut back_to_back, mut redis32) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for _ in 0..ROUNDS {
        for _ in 0..N {
            let began = Instant::now();
            let _: String = redis::cmd("PING").query_async(&mut ping_conn).await?;
            ping.push(began.elapsed().as_secs_f64() * 1e6);
        }
        for _ in 0..N_SPACED {
            let began = Instant::now();
            let _: String = redis::cmd("PING").query_async(&mut ping_conn).await?;
            ping_spaced.push(began.elapsed().as_secs_f64() * 1e6);
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        for _ in 0..N {
            let began = Instant::now();
            let admitted = admission::admit(key, 600, 2_000);
            local.push(began.elapsed().as_secs_f64() * 1e6);
            drop(admitted);
        }
        // A request's admission as the request path sees it: the previous request's
        // settlement (spawned when its reservation drops) is over. A real request spends at
        // least a worker's answer between the two; here 1 ms.
        for _ in 0..N_SPACED {
            let began = Instant::now();
            let (admitted, _) = admission::admit_shared(&shared, key, 600, 2_000).await;
            redis.push(began.elapsed().as_secs_f64() * 1e6);
            if admitted.is_err() {
                return Err("Redis refused a benchmark admission (is it running?)".into());
            }
            drop(admitted);
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // Back to back: each admission races the previous one's settlement, in this process's
        // CPU and in Redis (both on this machine's two cores).
        for _ in 0..N {
            let began = Instant::now();
            let (admitted, _) = admission::admit_shared(&shared, key, 600, 2_000).await;
            back_to_back.push(began.elapsed().as_secs_f64() * 1e6);
            if admitted.is_err() {
                return Err("Redis refused a benchmark admission (is it running?)".into());
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let (shared, key) = (shared.clone(), key.clone());
            tasks.spawn(async move {
                let mut took = Vec::with_capacity(N / 32);
                for _ in 0..N / 32 {
                    let began = Instant::now();
                    let _ = admission::admit_shared(&shared, &key, 600, 2_000).await;
                    took.push(began.elapsed().as_secs_f64() * 1e6);
                }
                took
            });
        }
        while let Some(took) = tasks.join_next().await {
            redis32.extend(took?);
        }
    }
    for v in [
        &mut ping,
        &mut ping_spaced,
        &mut local,
        &mut redis,
        &mut back_to_back,
        &mut redis32,
    ] {
        v.sort_by(f64::total_cmp);
    }
    let (p50, p99) = (percentile(&ping, 0.5), percentile(&ping, 0.99));
    let (l50, l99) = (percentile(&local, 0.5), percentile(&local, 0.99));
    let (r50, r99) = (percentile(&redis, 0.5), percentile(&redis, 0.99));
    let (b50, b99) = (
        percentile(&back_to_back, 0.5),
        percentile(&back_to_back, 0.99),
    );
    let (c50, c99) = (percentile(&redis32, 0.5), percentile(&redis32, 0.99));
    println!("admission latency, {ROUNDS} rounds × {N} back to back and × {N_SPACED} spaced by 1 ms (µs): Redis on loopback against the in-process limiter");
    println!("  in-process limiter          p50 {l50:>7.1}  p99 {l99:>7.1}");
    println!("  Redis PING (the floor)      p50 {p50:>7.1}  p99 {p99:>7.1}");
    println!(
        "  Redis PING, spaced by 1 ms  p50 {:>7.1}  p99 {:>7.1}",
        percentile(&ping_spaced, 0.5),
        percentile(&ping_spaced, 0.99)
    );
    println!(
        "  Redis, spaced by 1 ms       p50 {r50:>7.1}  p99 {r99:>7.1}  (adds p50 {:.1}, p99 {:.1})",
        r50 - l50,
        r99 - l99
    );
    println!(
        "  Redis, back to back         p50 {b50:>7.1}  p99 {b99:>7.1}  (adds p50 {:.1}, p99 {:.1}; each races the previous settlement)",
        b50 - l50,
        b99 - l99
    );
    println!("  Redis, 32 in flight         p50 {c50:>7.1}  p99 {c99:>7.1}");
    let s50 = percentile(&ping_spaced, 0.5);
    println!(
        "  admission over a PING at p50: spaced +{:.1} ({:.2}x), back to back +{:.1} ({:.2}x)",
        r50 - s50,
        r50 / s50,
        b50 - p50,
        b50 / p50
    );
    println!(
        "target: Redis adds <= 150 µs at p50 to a request's admission: {} ({:.1} µs; back to back {:.1} µs)",
        if r50 - l50 <= 150.0 { "met" } else { "NOT met" },
        r50 - l50,
        b50 - l50
    );
    // Leave nothing behind in the machine's Redis.
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "ledger to SQLite (a file; WAL, synchronous=FULL)",
            Backend::Postgres => {
                "ledger to Postgres (this machine's server over TCP loopback; synchronous_commit on)"
            }
        }
    }
}

fn postgres_url() -> String {
    std::env::var("SWITCHYARD_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    RowsOnly,
    ShortRequests,
    LongRequests,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::RowsOnly => "usage rows only (no crash accounting)",
            Mode::ShortRequests => "opened + closed in one batch (short requests)",
            Mode::LongRequests => "opened, checkpointed, closed in separate batches (long)",
        }
    }
}

/// Requests per second the ledger stores in `mode`; checks that every one has its row and no
/// request is left open.
async fn ledger_rate(backend: Backend, mode: Mode, n: u64) -> Result<f64, Error> {
    let dir = tempfile::tempdir()?;
    let schema = format!("bench_{}_{}", std::process::id(), unix_ms());
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(PgStore::connect_in_schema(&postgres_url(), &schema).await?),
    };
    let store: Arc<dyn Store> = match &pg {
        None => Arc::new(SqliteStore::open(&dir.path().join("ledger.db")).await?),
        Some(pg) => Arc::new(pg.clone()),
    };
    let (ledger, task) = Ledger::spawn(store.clone(), LedgerConfig::default());
    // Long requests overlap: request i opens while i - WINDOW/2 checkpoints and i - WINDOW
    // ends, so the three records of one request land in different batches (512 each).
    const WINDOW: u64 = 4_096;
    let start = Instant::now();
    for i in 0..n + WINDOW {
        match mode {
            Mode::RowsOnly if i < n => ledger.record(record(i)),
            Mode::ShortRequests if i < n => {
                ledger.opened(opened(i));
                ledger.record(record(i));
            }
            Mode::LongRequests => {
                if i < n {
                    ledger.opened(opened(i));
                }
                if let Some(j) = i.checked_sub(WINDOW / 2).filter(|j| *j < n) {
                    ledger.checkpoint(checkpoint(j));
                }
                if let Some(j) = i.checked_sub(WINDOW) {
                    ledger.record(record(j));
                }
            }
            _ => {}
        }
    }
    task.shutdown(std::time::Duration::from_secs(120)).await;
    let secs = start.elapsed().as_secs_f64();
    let stored = store.usage_records(&UsageQuery::default()).await?.len() as u64;
    let left_open = store
        .reconcile_interrupted("bench", i64::MAX / 2, 0)
        .await?;
    if let Some(pg) = pg {
        pg.drop_schema(&schema).await?;
    }
    if stored != n || left_open != 0 {
        return Err(format!(
            "{backend:?} {mode:?}: stored {stored} of {n} rows, {left_open} left open"
        )
        .into());
    }
    Ok(n as f64 / secs)
}

fn opened(i: u64) -> OpenRequest {
    OpenRequest {
        request_id: format!("req-{i:012}"),
        instance: String::new(),
        started_at_ms: unix_ms(),
        tenant_id: "bench".into(),
        key_id: "key_bench".into(),
        model: "m".into(),
        endpoint: "/v1/chat/completions".into(),
        stream: true,
        prompt_estimate: 100,
        price_in_nanos: 3_200,
        price_out_nanos: 3_200,
    }
}

fn checkpoint(i: u64) -> Checkpoint {
    Checkpoint {
        request_id: format!("req-{i:012}"),
        worker: "w".into(),
        provider: "p".into(),
        region: "r".into(),
        worker_price_nanos: 1_000_000_000,
        worker_slots: 8,
        relayed_tokens: 100,
        ttft_ms: Some(100),
        at_ms: unix_ms(),
    }
}
