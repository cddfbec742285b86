//! The embedded ledger: [`Store`] on one SQLite file (or in memory, for tests).
//!
//! # Connections
//! SQLite has one writer at a time. Writes go through a pool of exactly one connection, so
//! writers in this process queue on the pool instead of racing for the file lock and getting
//! `SQLITE_BUSY`; reads go through a small separate pool and, in WAL mode, never wait for the
//! writer. Another process on the same file (the CLI next to a running server) is handled by
//! `busy_timeout`, and write transactions start with `BEGIN IMMEDIATE`, so they take the write
//! lock up front (where the busy handler applies) rather than upgrading from a read snapshot
//! (which fails at once with `SQLITE_BUSY_SNAPSHOT` if another writer got in between).
//!
//! # Durability
//! WAL journal with `synchronous = FULL`. With `NORMAL`, WAL is already safe against a crash of
//! the process (a commit is in the OS's page cache before it returns), but a power loss or
//! kernel crash can roll back the last few commits. This is the ledger an operator invoices
//! from and the record of prepaid top-ups: a batch the writer was told is settled, or a top-up
//! the admin API acknowledged, must survive the machine going down too. `FULL` costs one fsync
//! of the WAL per commit, and usage arrives in batches (one transaction per batch), so that is
//! one fsync per batch, not per request.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};

mod agent_token_store;
mod batch;
mod content;
mod content_store;
mod dead_letters;
mod fleet_store;
mod incident_store;
mod incidents;
mod ledger_store;
mod open;
mod sli;
mod sli_fleet;
mod sli_store;
mod sli_window;
mod tenant_store;

use super::rows::{constraint_error, from_json, to_json, to_u64, CheckedUsage};
use super::{
    Heartbeats, KeyTokens, LedgerBatch, MarginRow, Period, Result, StoreError, UsageQuery, UsageRow,
};
use crate::content::{ContentLogging, ContentRecord};
use crate::incident::{Impact, ImpactScope, Incident, IncidentAlert, NewIncident, ScopedCounts};
use crate::maintenance::{Maintenance, NewMaintenance};
use crate::model::{ApiKey, DeadLetter, LimitOverrides, Tenant, UsageRecord};
use crate::money::Nanos;
use crate::open::{Checkpoint, OpenRequest};
use crate::sli::{
    BucketLatency, FleetMinute, LatencyCount, Metric, MinuteCounts, ProbeMinute, Refusal,
    ScopeCounts,
};

/// The migrations, embedded in the binary at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another process's write lock before failing with
/// `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Read connections. Reads in WAL mode run concurrently with each other and with the writer;
/// a few are enough for reports and auth lookups on a small machine.
const READ_CONNECTIONS: u32 = 4;

/// Rows per multi-row `INSERT` in [`Store::insert_usage`]. 23 columns each, so 50 rows bind
/// 1,150 parameters, far below SQLite's limit of 32,766, and a batch of 1,000 records is 20
/// statements in one transaction instead of 1,000 round trips to the connection's thread.
const INSERT_CHUNK: usize = 50;

const USAGE_COLUMNS: &str = "request_id, started_at_ms, tenant_id, key_id, model, endpoint, \
     stream, worker, provider, region, prompt_tokens, completion_tokens, usage_estimated, \
     usage_source, usage_note, ttft_ms, ttft_exempt, total_ms, status, http_status, \
     finish_reason, cost_nanos, cogs_nanos";

const KEY_COLUMNS: &str =
    "id, tenant_id, name, prefix, hash, scopes, limits, expires_at, revoked_at, created_at";

/// [`Store`] on SQLite. Cheap to clone (the pools are shared).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: every write in this process goes through it.
    writer: SqlitePool,
    /// Reads. For an in-memory store this is the writer's pool (one connection, one database).
    reader: SqlitePool,
    /// The size cap [`SqliteStore::cap_pages`] set (0: none), applied to every new writer
    /// connection too.
    page_cap: Arc<AtomicU32>,
    /// In memory: a connection held open for the store's life. The database lives while one
    /// is open, and the pool closes its connection whenever a query is cancelled (a client
    /// that went away): without this one, the next connection would find an empty database.
    _memory_anchor: Option<Arc<tokio::sync::Mutex<sqlx::SqliteConnection>>>,
}

impl SqliteStore {
    /// Opens the ledger at `path`, creating the file (and its directory) if missing, and
    /// brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::Database(format!("creating {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Statement journals (and `RETURNING`'s scratch tables) in memory: on files,
            // every ledger batch created, wrote and unlinked a temporary file. Durability is
            // the WAL's business and is unaffected.
            .pragma("temp_store", "MEMORY");

        // `secure_delete` on the writer: an erased or expired content log is overwritten with
        // zeros, not left readable in the file's free pages. Deletes are rare elsewhere (the
        // ledger only appends), so this costs next to nothing.
        let page_cap = Arc::new(AtomicU32::new(0));
        let writer = writer_pool(page_cap.clone())
            .connect_with(options.clone().pragma("secure_delete", "ON"))
            .await
            .map_err(|e| open_error(path, e))?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Database(format!("migrating {}: {e}", path.display())))?;

        // Opened after the migrations, so no reader ever sees an older schema. `query_only`
        // makes a write sent to the wrong pool an error instead of a second writer.
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.pragma("query_only", "ON"))
            .await
            .map_err(|e| open_error(path, e))?;

        Ok(Self {
            writer,
            reader,
            page_cap,
            _memory_anchor: None,
        })
    }

    /// A private in-memory ledger, for tests and throwaway runs.
    ///
    /// Each SQLite connection to `:memory:` is its own database, so this store has exactly one
    /// connection, used for reads and writes, which is never closed for being idle or old
    /// (closing it would drop the database).
    pub async fn in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| StoreError::Database(e.to_string()))?
            .foreign_keys(true);
        let anchor = sqlx::SqliteConnection::connect_with(&options).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrating in-memory ledger: {e}")))?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
            page_cap: Arc::new(AtomicU32::new(0)),
            _memory_anchor: Some(Arc::new(tokio::sync::Mutex::new(anchor))),
        })
    }

    /// Caps the database at `pages` pages (SQLite's `max_page_count`, never below the current
    /// size; `None` lifts the cap), so that writes needing more room fail as on a full disk.
    /// For fault-injection tests; returns the cap in force.
    pub async fn cap_pages(&self, pages: Option<u32>) -> Result<u32> {
        let pages = pages.unwrap_or(MAX_PAGES).clamp(1, MAX_PAGES);
        self.page_cap.store(pages, Ordering::Relaxed);
        let cap: i64 = sqlx::query_scalar(&format!("PRAGMA max_page_count = {pages}"))
            .fetch_one(&self.writer)
            .await?;
        Ok(u32::try_from(cap).unwrap_or(u32::MAX))
    }

    /// Waits for queries in flight, then closes every connection (checkpointing the WAL).
    /// Dropping the store without this is safe too: every acknowledged commit is durable.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// SQLite's largest `max_page_count`.
const MAX_PAGES: u32 = 4_294_967_294;

/// The pool of the one write connection of a file store.
fn writer_pool(page_cap: Arc<AtomicU32>) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .after_connect(move |conn, _| {
            let cap = page_cap.load(Ordering::Relaxed);
            Box::pin(async move {
                if cap > 0 {
                    sqlx::query(&format!("PRAGMA max_page_count = {cap}"))
                        .execute(conn)
                        .await?;
                }
                Ok(())
            })
        })
        // SQLite rolls a transaction back by itself on some errors (SQLITE_FULL, SQLITE_IOERR,
        // SQLITE_NOMEM, a failed COMMIT). sqlx then still counts it open: its own ROLLBACK
        // fails ("no transaction is active") and every later `begin_with` on the connection
        // is refused, so one full disk would stop the ledger until a restart. Such a
        // connection is closed on release and the pool opens a fresh one.
        .after_release(|conn, _| {
            Box::pin(async move {
                if !conn.is_in_transaction() {
                    return Ok(true);
                }
                // Queued behind the dropped transaction's ROLLBACK: afterwards the count says
                // whether that rollback took.
                sqlx::query("SELECT 1").execute(&mut *conn).await?;
                let desynced = conn.is_in_transaction();
                if desynced {
                    tracing::warn!("ledger write connection lost its transaction; reopening it");
                }
                Ok(!desynced)
            })
        })
}

fn open_error(path: &Path, e: sqlx::Error) -> StoreError {
    StoreError::Database(format!("opening {}: {e}", path.display()))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Appends ` WHERE ...` for a usage query. Only the filters that are set are written, so
/// SQLite can use the (tenant_id, started_at_ms) and (started_at_ms) indexes.
fn push_usage_filter(qb: &mut QueryBuilder<'_, Sqlite>, q: &UsageQuery) {
    qb.push(" WHERE 1 = 1");
    if let Some(t) = &q.tenant_id {
        qb.push(" AND tenant_id = ").push_bind(t.clone());
    }
    if let Some(from) = q.from_ms {
        qb.push(" AND started_at_ms >= ").push_bind(from);
    }
    if let Some(to) = q.to_ms {
        qb.push(" AND started_at_ms < ").push_bind(to);
    }
}

/// Writes checked usage records in the caller's transaction: rows not stored before, their
/// SLI rollups, and the deletion of their open-request rows (see [`crate::open`]).
async fn insert_usage_in(
    tx: &mut sqlx::SqliteConnection,
    checked: &[CheckedUsage<'_>],
) -> Result<()> {
    let ids = || checked.iter().map(|c| c.rec.request_id.as_str());
    let stored = batch::stored_ids(&mut *tx, &batch::USAGE, ids()).await?;
    for chunk in checked.chunks(INSERT_CHUNK) {
        let sql = batch::insert_sql(&batch::USAGE, USAGE_COLUMNS, chunk.len());
        let mut query = sqlx::query(&sql);
        for c in chunk {
            let r = c.rec;
            query = query
                .bind(r.request_id.as_str())
                .bind(r.started_at_ms)
                .bind(r.tenant_id.as_str())
                .bind(r.key_id.as_str())
                .bind(r.model.as_str())
                .bind(r.endpoint.as_str())
                .bind(r.stream)
                .bind(r.worker.as_str())
                .bind(r.provider.as_str())
                .bind(r.region.as_str())
                .bind(c.prompt_tokens)
                .bind(c.completion_tokens)
                .bind(r.usage_estimated)
                .bind(r.usage_source.as_str())
                .bind(r.usage_note.as_deref())
                .bind(c.ttft_ms)
                .bind(r.ttft_exempt)
                .bind(c.total_ms)
                .bind(r.status.as_str())
                .bind(i64::from(r.http_status))
                .bind(r.finish_reason.as_deref())
                .bind(r.cost)
                .bind(r.cogs);
        }
        query.execute(&mut *tx).await?;
    }
    // Only records stored for the first time count: a retried batch adds nothing twice.
    let new = batch::unstored(
        checked.iter().map(|c| c.rec),
        |r| r.request_id.as_str(),
        &stored,
    );
    sli::apply(&mut *tx, &crate::sli::fold(new, [])).await?;
    open::close(&mut *tx, ids()).await
}
