//! A Postgres that goes down and comes back while the ledger writes loses no usage row and
//! doubles none: the writer keeps each batch it could not store and retries it until the
//! database is back.
//!
//! The test runs a private cluster (`initdb` in a temporary directory, its own port), so the
//! restart disturbs no other test. Postgres refuses to run as root: as root, the cluster runs
//! as the `postgres` user, which Debian's packages create.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use switchyard_metering::ledger::{Ledger, LedgerConfig};
use switchyard_metering::store::postgres::PgStore;
use switchyard_metering::store::prelude::*;
use switchyard_metering::store::UsageQuery;
use switchyard_metering::{UsageRecord, UsageStatus};

/// The newest installed server's binaries (`/usr/lib/postgresql/<version>/bin`).
fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres server binaries under /usr/lib/postgresql")
        .map(|e| e.unwrap().path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a Postgres binary, as `postgres` when we are root.
fn pg(bin: &Path, tool: &str, args: &[&str]) {
    let exe = bin.join(tool);
    let status = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&exe)
            .args(args)
            .status()
    } else {
        Command::new(&exe).args(args).status()
    }
    .unwrap_or_else(|e| panic!("{tool}: {e}"));
    assert!(status.success(), "{tool} {args:?}: {status}");
}

struct Cluster {
    bin: PathBuf,
    data: String,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn start() -> Self {
        let bin = pg_bin();
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the cluster's directory to postgres");
        }
        let data = dir.path().join("data").display().to_string();
        pg(
            &bin,
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self {
            bin,
            data,
            port,
            _dir: dir,
        };
        cluster.ctl(&["start"]);
        cluster
    }

    fn ctl(&self, action: &[&str]) {
        let log = format!("{}/../log", self.data);
        let opts = format!(
            "-p {} -k {}/.. -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port, self.data
        );
        let mut args = vec!["-D", &self.data, "-l", &log, "-o", &opts, "-w"];
        args.extend_from_slice(action);
        pg(&self.bin, "pg_ctl", &args);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.ctl(&["-m", "immediate", "stop"]);
    }
}

fn record(i: u64) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{i:05}"),
        started_at_ms: 1_795_852_800_000 + i as i64,
        tenant_id: "t".into(),
        key_id: "k".into(),
        model: "m".into(),
        endpoint: "/v1/chat/completions".into(),
        stream: true,
        worker: "w".into(),
        provider: "p".into(),
        region: "r".into(),
        prompt_tokens: 10,
        completion_tokens: i % 11,
        usage_estimated: false,
        usage_source: Default::default(),
        usage_note: None,
        ttft_ms: Some(40),
        ttft_exempt: false,
        total_ms: 200,
        status: UsageStatus::Completed,
        http_status: 200,
        finish_reason: Some("stop".into()),
        cost: 3,
        cogs: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_loses_and_doubles_no_usage_row() {
    let cluster = Arc::new(Cluster::start());
    let pg = PgStore::connect(&cluster.url()).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(pg.clone());
    let (ledger, task) = Ledger::spawn(
        store.clone(),
        LedgerConfig {
            batch: 64,
            flush_deadline: Duration::from_secs(60),
            ..LedgerConfig::default()
        },
    );
    let n = 4_000u64;
    // Records arrive over about 4 s. After the first second the database goes down for longer
    // than the store waits for a connection (5 s), so writes fail and must be retried; a
    // quick restart is hidden by the connection pool, which waits for the server.
    let restart = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let c = cluster.clone();
            tokio::task::spawn_blocking(move || c.ctl(&["-m", "fast", "stop"]))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(7)).await;
            tokio::task::spawn_blocking(move || cluster.ctl(&["start"]))
                .await
                .unwrap();
        })
    };
    for i in 0..n {
        ledger.record(record(i));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    restart.await.unwrap();
    let stats = ledger.stats();
    let failed = stats.failed_writes.load(Ordering::Relaxed);
    task.shutdown(Duration::from_secs(60)).await;

    let rows = store.usage_records(&UsageQuery::default()).await.unwrap();
    assert_eq!(
        rows.len() as u64,
        n,
        "one row per record, none lost, none doubled"
    );
    let completion: u64 = rows.iter().map(|r| r.completion_tokens).sum();
    assert_eq!(completion, (0..n).map(|i| i % 11).sum::<u64>());
    assert!(
        failed > 0,
        "the restart made some writes fail (else this test did not test a restart)"
    );
    pg.close().await;
}
