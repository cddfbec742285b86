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
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};

mod batch;
mod content;
mod dead_letters;
mod incidents;
mod open;
mod sli;
mod sli_fleet;
mod sli_window;

use super::{
    Heartbeats, KeyTokens, LedgerBatch, MarginRow, Period, Result, Store, StoreError, UsageQuery,
    UsageRow,
};
use crate::content::{ContentLogging, ContentRecord};
use crate::incident::{Impact, ImpactScope, Incident, IncidentAlert, NewIncident, ScopedCounts};
use crate::maintenance::{Maintenance, NewMaintenance};
use crate::model::{
    ApiKey, DeadLetter, LimitOverrides, Scopes, Tenant, UsageRecord, UsageSource, UsageStatus,
};
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

/// An `INTEGER` read back as a count; negative means the file was written by something else.
fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Database(format!("{what} is negative ({v})")))
}

fn to_json<T: serde::Serialize>(v: &T, what: &str) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("{what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Database(format!("stored {what}: {e}")))
}

/// Maps a constraint error to what the caller did wrong; anything else goes through the
/// generic `From<sqlx::Error>`.
fn constraint_error(
    e: sqlx::Error,
    conflict: impl FnOnce() -> String,
    missing: &str,
) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Conflict(conflict());
        }
        if db.is_foreign_key_violation() {
            return StoreError::NotFound(missing.to_string());
        }
    }
    e.into()
}

fn tenant_from_row(row: &SqliteRow) -> Result<Tenant> {
    let overrides: String = row.try_get("overrides")?;
    Ok(Tenant {
        id: row.try_get("id")?,
        tier: row.try_get("tier")?,
        overrides: from_json(&overrides, "tenant overrides")?,
        prepaid: row.try_get("prepaid")?,
        created_at: row.try_get("created_at")?,
        content_logging: {
            let days: i64 = row.try_get("content_log_days")?;
            ContentLogging::from_days(days).ok_or_else(|| {
                StoreError::Database(format!("content_log_days is {days}, not 0, 7 or 30"))
            })?
        },
    })
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKey> {
    let id: String = row.try_get("id")?;
    let hash: Vec<u8> = row.try_get("hash")?;
    let hash: [u8; 32] = hash.try_into().map_err(|h: Vec<u8>| {
        StoreError::Database(format!("key {id}: hash of {} bytes", h.len()))
    })?;
    let scopes: String = row.try_get("scopes")?;
    let limits: String = row.try_get("limits")?;
    Ok(ApiKey {
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        hash,
        scopes: from_json::<Scopes>(&scopes, "key scopes")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        created_at: row.try_get("created_at")?,
        limits: from_json::<LimitOverrides>(&limits, "key limits")?,
        id,
    })
}

fn usage_from_row(row: &SqliteRow) -> Result<UsageRecord> {
    let status: String = row.try_get("status")?;
    let http_status: i64 = row.try_get("http_status")?;
    let ttft_ms: Option<i64> = row.try_get("ttft_ms")?;
    Ok(UsageRecord {
        request_id: row.try_get("request_id")?,
        started_at_ms: row.try_get("started_at_ms")?,
        tenant_id: row.try_get("tenant_id")?,
        key_id: row.try_get("key_id")?,
        model: row.try_get("model")?,
        endpoint: row.try_get("endpoint")?,
        stream: row.try_get("stream")?,
        worker: row.try_get("worker")?,
        provider: row.try_get("provider")?,
        region: row.try_get("region")?,
        prompt_tokens: to_u64(row.try_get("prompt_tokens")?, "prompt_tokens")?,
        completion_tokens: to_u64(row.try_get("completion_tokens")?, "completion_tokens")?,
        usage_estimated: row.try_get("usage_estimated")?,
        usage_source: {
            let source: String = row.try_get("usage_source")?;
            UsageSource::parse(&source)
                .ok_or_else(|| StoreError::Database(format!("unknown usage source {source:?}")))?
        },
        usage_note: row.try_get("usage_note")?,
        ttft_ms: ttft_ms.map(|v| to_u64(v, "ttft_ms")).transpose()?,
        ttft_exempt: row.try_get("ttft_exempt")?,
        total_ms: to_u64(row.try_get("total_ms")?, "total_ms")?,
        status: UsageStatus::parse(&status)
            .ok_or_else(|| StoreError::Database(format!("unknown usage status {status:?}")))?,
        http_status: u16::try_from(http_status)
            .map_err(|_| StoreError::Database(format!("http_status {http_status}")))?,
        finish_reason: row.try_get("finish_reason")?,
        cost: row.try_get("cost_nanos")?,
        cogs: row.try_get("cogs_nanos")?,
    })
}

/// A usage record's integer columns, checked before anything is written.
struct CheckedUsage<'a> {
    rec: &'a UsageRecord,
    prompt_tokens: i64,
    completion_tokens: i64,
    ttft_ms: Option<i64>,
    total_ms: i64,
}

impl<'a> CheckedUsage<'a> {
    fn new(rec: &'a UsageRecord) -> Result<Self> {
        // The message is built only for a value that does not fit: this runs per record.
        let fit = |v: u64, field: &str| {
            i64::try_from(v).map_err(|_| {
                StoreError::Invalid(format!(
                    "usage {}: {field} = {v} does not fit in i64",
                    rec.request_id
                ))
            })
        };
        Ok(Self {
            rec,
            prompt_tokens: fit(rec.prompt_tokens, "prompt_tokens")?,
            completion_tokens: fit(rec.completion_tokens, "completion_tokens")?,
            ttft_ms: rec.ttft_ms.map(|v| fit(v, "ttft_ms")).transpose()?,
            total_ms: fit(rec.total_ms, "total_ms")?,
        })
    }
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

#[async_trait]
impl Store for SqliteStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()> {
        sqlx::query(
            "INSERT INTO tenants (id, tier, overrides, prepaid, created_at, content_log_days) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&tenant.id)
        .bind(&tenant.tier)
        .bind(to_json(&tenant.overrides, "tenant overrides")?)
        .bind(tenant.prepaid)
        .bind(tenant.created_at)
        .bind(tenant.content_logging.days())
        .execute(&self.writer)
        .await
        .map_err(|e| constraint_error(e, || format!("tenant {}", tenant.id), "tenant"))?;
        Ok(())
    }

    async fn update_tenant(
        &self,
        id: &str,
        tier: Option<&str>,
        overrides: Option<&LimitOverrides>,
        prepaid: Option<bool>,
        content_logging: Option<ContentLogging>,
    ) -> Result<Tenant> {
        let overrides = overrides
            .map(|o| to_json(o, "tenant overrides"))
            .transpose()?;
        // One statement, so the read of the unchanged fields and the write are atomic.
        let row = sqlx::query(
            "UPDATE tenants SET \
                 tier = COALESCE(?2, tier), \
                 overrides = COALESCE(?3, overrides), \
                 prepaid = COALESCE(?4, prepaid), \
                 content_log_days = COALESCE(?5, content_log_days) \
             WHERE id = ?1 \
             RETURNING id, tier, overrides, prepaid, created_at, content_log_days",
        )
        .bind(id)
        .bind(tier)
        .bind(overrides)
        .bind(prepaid)
        .bind(content_logging.map(ContentLogging::days))
        .fetch_optional(&self.writer)
        .await?;
        match row {
            Some(row) => tenant_from_row(&row),
            None => Err(StoreError::NotFound(format!("tenant {id}"))),
        }
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query(
            "SELECT id, tier, overrides, prepaid, created_at, content_log_days \
             FROM tenants WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query(
            "SELECT id, tier, overrides, prepaid, created_at, content_log_days \
                 FROM tenants ORDER BY id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn insert_content(&self, batch: &[ContentRecord]) -> Result<()> {
        content::insert(&self.writer, batch).await
    }

    async fn content_records(
        &self,
        tenant_id: &str,
        request_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ContentRecord>> {
        content::list(&self.reader, tenant_id, request_id, limit).await
    }

    async fn erase_content(&self, tenant_id: &str) -> Result<u64> {
        content::erase(&self.writer, tenant_id).await
    }

    async fn delete_expired_content(&self, now_ms: i64) -> Result<u64> {
        content::delete_expired(&self.writer, now_ms).await
    }

    async fn add_credit(&self, tenant_id: &str, amount: Nanos, note: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO credits (tenant_id, amount_nanos, note, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(tenant_id)
        .bind(amount)
        .bind(note)
        .bind(now_ms())
        .execute(&self.writer)
        .await
        .map_err(|e| {
            constraint_error(
                e,
                || format!("credit for {tenant_id}"),
                &format!("tenant {tenant_id}"),
            )
        })?;
        Ok(())
    }

    async fn credit_balance(&self, tenant_id: &str) -> Result<Nanos> {
        // One statement, so both sums come from the same snapshot.
        let row = sqlx::query(
            "SELECT \
                 EXISTS (SELECT 1 FROM tenants WHERE id = ?1) AS known, \
                 (SELECT COALESCE(SUM(amount_nanos), 0) FROM credits WHERE tenant_id = ?1) \
                     AS credits, \
                 (SELECT COALESCE(SUM(cost_nanos), 0) FROM usage WHERE tenant_id = ?1) AS costs",
        )
        .bind(tenant_id)
        .fetch_one(&self.reader)
        .await?;
        let known: bool = row.try_get("known")?;
        if !known {
            return Err(StoreError::NotFound(format!("tenant {tenant_id}")));
        }
        let credits: i64 = row.try_get("credits")?;
        let costs: i64 = row.try_get("costs")?;
        credits
            .checked_sub(costs)
            .ok_or_else(|| StoreError::Database(format!("balance of {tenant_id} overflows i64")))
    }

    async fn create_key(&self, key: &ApiKey) -> Result<()> {
        let sql = format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        );
        sqlx::query(&sql)
            .bind(&key.id)
            .bind(&key.tenant_id)
            .bind(&key.name)
            .bind(&key.prefix)
            .bind(&key.hash[..])
            .bind(to_json(&key.scopes, "key scopes")?)
            .bind(to_json(&key.limits, "key limits")?)
            .bind(key.expires_at)
            .bind(key.revoked_at)
            .bind(key.created_at)
            .execute(&self.writer)
            .await
            .map_err(|e| {
                // The id and the hash are both unique; say which without echoing the hash.
                constraint_error(
                    e,
                    || format!("key {} (or a key with the same secret)", key.id),
                    &format!("tenant {}", key.tenant_id),
                )
            })?;
        Ok(())
    }

    async fn list_keys(&self, tenant_id: Option<&str>) -> Result<Vec<ApiKey>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {KEY_COLUMNS} FROM api_keys"));
        if let Some(t) = tenant_id {
            qb.push(" WHERE tenant_id = ").push_bind(t);
        }
        qb.push(" ORDER BY tenant_id, created_at, id");
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn get_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn revoke_key(&self, id: &str, at: i64) -> Result<()> {
        // Revoking twice keeps the first time: that is when the key stopped working.
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1")
                .bind(id)
                .bind(at)
                .execute(&self.writer)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("key {id}")));
        }
        Ok(())
    }

    async fn write_ledger_batch(&self, batch: &LedgerBatch<'_>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let checked = batch
            .usage
            .iter()
            .map(CheckedUsage::new)
            .collect::<Result<Vec<_>>>()?;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        open::insert_in(&mut tx, batch.opens).await?;
        open::checkpoint_in(&mut tx, batch.checkpoints).await?;
        if !checked.is_empty() {
            insert_usage_in(&mut tx, &checked).await?;
        }
        sli::insert_refusals_in(&mut tx, batch.refusals).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_usage(&self, batch: &[UsageRecord]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // Check every record before writing any, so a bad one fails the batch cleanly.
        let checked = batch
            .iter()
            .map(CheckedUsage::new)
            .collect::<Result<Vec<_>>>()?;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        insert_usage_in(&mut tx, &checked).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn usage(&self, query: &UsageQuery, period: Period) -> Result<Vec<UsageRow>> {
        // Integer division: whole seconds, then the UTC calendar day or month.
        let format = match period {
            Period::Day => "%Y-%m-%d",
            Period::Month => "%Y-%m",
        };
        let mut qb = QueryBuilder::<Sqlite>::new(format!(
            "SELECT tenant_id, \
                 strftime('{format}', started_at_ms / 1000, 'unixepoch') AS period, \
                 model, \
                 COUNT(*) AS requests, \
                 SUM(prompt_tokens) AS prompt_tokens, \
                 SUM(completion_tokens) AS completion_tokens, \
                 SUM(cost_nanos) AS cost, \
                 SUM(cogs_nanos) AS cogs \
             FROM usage"
        ));
        push_usage_filter(&mut qb, query);
        qb.push(" GROUP BY tenant_id, period, model ORDER BY tenant_id, period, model");
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter()
            .map(|row| {
                Ok(UsageRow {
                    tenant_id: row.try_get("tenant_id")?,
                    period: row.try_get("period")?,
                    model: row.try_get("model")?,
                    requests: to_u64(row.try_get("requests")?, "requests")?,
                    prompt_tokens: to_u64(row.try_get("prompt_tokens")?, "prompt_tokens")?,
                    completion_tokens: to_u64(
                        row.try_get("completion_tokens")?,
                        "completion_tokens",
                    )?,
                    cost: row.try_get("cost")?,
                    cogs: row.try_get("cogs")?,
                })
            })
            .collect()
    }

    async fn usage_records(&self, query: &UsageQuery) -> Result<Vec<UsageRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {USAGE_COLUMNS} FROM usage"));
        push_usage_filter(&mut qb, query);
        qb.push(" ORDER BY started_at_ms, request_id");
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter().map(usage_from_row).collect()
    }

    async fn margin(&self, query: &UsageQuery) -> Result<Vec<MarginRow>> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT model, provider, \
                 COUNT(*) AS requests, \
                 SUM(prompt_tokens) AS prompt_tokens, \
                 SUM(completion_tokens) AS completion_tokens, \
                 SUM(cost_nanos) AS revenue, \
                 SUM(cogs_nanos) AS cogs \
             FROM usage",
        );
        push_usage_filter(&mut qb, query);
        qb.push(" GROUP BY model, provider ORDER BY model, provider");
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter()
            .map(|row| {
                Ok(MarginRow {
                    model: row.try_get("model")?,
                    provider: row.try_get("provider")?,
                    requests: to_u64(row.try_get("requests")?, "requests")?,
                    prompt_tokens: to_u64(row.try_get("prompt_tokens")?, "prompt_tokens")?,
                    completion_tokens: to_u64(
                        row.try_get("completion_tokens")?,
                        "completion_tokens",
                    )?,
                    revenue: row.try_get("revenue")?,
                    cogs: row.try_get("cogs")?,
                })
            })
            .collect()
    }

    async fn tokens_by_key_since(&self, from_ms: i64) -> Result<Vec<KeyTokens>> {
        let rows = sqlx::query(
            "SELECT tenant_id, key_id, SUM(prompt_tokens + completion_tokens) AS tokens \
             FROM usage WHERE started_at_ms >= ?1 GROUP BY tenant_id, key_id",
        )
        .bind(from_ms)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(KeyTokens {
                    tenant_id: row.try_get("tenant_id")?,
                    key_id: row.try_get("key_id")?,
                    tokens: to_u64(row.try_get("tokens")?, "tokens")?,
                })
            })
            .collect()
    }

    async fn insert_open(&self, batch: &[OpenRequest]) -> Result<()> {
        open::insert(&self.writer, batch).await
    }

    async fn checkpoint_open(&self, batch: &[Checkpoint]) -> Result<()> {
        open::checkpoint(&self.writer, batch).await
    }

    async fn instance_alive(
        &self,
        instance: &str,
        started_at_ms: i64,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<()> {
        open::alive(&self.writer, instance, started_at_ms, now_ms, lease_ms).await
    }

    async fn reconcile_interrupted(
        &self,
        own: &str,
        now_ms: i64,
        unseen_lease_ms: i64,
    ) -> Result<u64> {
        open::reconcile(&self.writer, own, now_ms, unseen_lease_ms).await
    }

    async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<()> {
        dead_letters::insert(&self.writer, letters).await
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>> {
        dead_letters::list(&self.reader, limit).await
    }

    async fn insert_refusals(&self, batch: &[Refusal]) -> Result<()> {
        sli::insert_refusals(&self.writer, batch).await
    }

    async fn sli_minutes(&self, query: &UsageQuery) -> Result<Vec<MinuteCounts>> {
        sli::minutes(&self.reader, query).await
    }

    async fn sli_latency(&self, query: &UsageQuery) -> Result<Vec<LatencyCount>> {
        sli::latency(&self.reader, query).await
    }

    async fn sli_fleet_minutes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<FleetMinute>> {
        sli_fleet::minutes(&self.reader, from_ms, to_ms).await
    }

    async fn sli_fleet_latency(
        &self,
        from_ms: i64,
        to_ms: i64,
        metric: Metric,
        bucket_minutes: i64,
    ) -> Result<Vec<BucketLatency>> {
        sli_fleet::latency(&self.reader, from_ms, to_ms, metric, bucket_minutes).await
    }

    async fn sli_scopes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ScopeCounts>> {
        sli_fleet::scopes(&self.reader, from_ms, to_ms).await
    }

    async fn record_heartbeat(&self, instance: &str, minute: i64) -> Result<()> {
        sqlx::query("INSERT OR IGNORE INTO gateway_heartbeats (minute, instance) VALUES (?1, ?2)")
            .bind(minute)
            .bind(instance)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn heartbeats(&self, from_ms: i64, to_ms: i64) -> Result<Heartbeats> {
        let minutes: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT minute FROM gateway_heartbeats WHERE minute >= ?1 AND minute < ?2",
        )
        .bind(crate::sli::minute_of(from_ms))
        .bind(crate::sli::minute_of(to_ms))
        .fetch_all(&self.reader)
        .await?;
        let since_minute: Option<i64> =
            sqlx::query_scalar("SELECT MIN(minute) FROM gateway_heartbeats")
                .fetch_one(&self.reader)
                .await?;
        Ok(Heartbeats {
            minutes: minutes.into_iter().collect(),
            since_minute,
        })
    }

    async fn put_probe_minutes(&self, minutes: &[ProbeMinute]) -> Result<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        for m in minutes {
            let count = |v: u64| {
                i64::try_from(v).map_err(|_| StoreError::Invalid(format!("probe count {v}")))
            };
            sqlx::query(
                "INSERT INTO probe_minutes (minute, prober, region, probes, failed) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (minute, prober) DO UPDATE SET region = excluded.region, \
                     probes = excluded.probes, failed = excluded.failed",
            )
            .bind(m.minute)
            .bind(&m.prober)
            .bind(&m.region)
            .bind(count(m.probes)?)
            .bind(count(m.failed)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn probe_minutes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ProbeMinute>> {
        let rows = sqlx::query(
            "SELECT minute, prober, region, probes, failed FROM probe_minutes \
             WHERE minute >= ?1 AND minute < ?2 ORDER BY minute, prober",
        )
        .bind(crate::sli::minute_of(from_ms))
        .bind(crate::sli::minute_of(to_ms))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ProbeMinute {
                    minute: row.try_get("minute")?,
                    prober: row.try_get("prober")?,
                    region: row.try_get("region")?,
                    probes: to_u64(row.try_get("probes")?, "probes")?,
                    failed: to_u64(row.try_get("failed")?, "failed")?,
                })
            })
            .collect()
    }

    async fn add_maintenance(&self, window: &NewMaintenance) -> Result<Maintenance> {
        sli::add_maintenance(&self.writer, window).await
    }

    async fn list_maintenance(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<Maintenance>> {
        sli::list_maintenance(&self.reader, from_ms, to_ms).await
    }

    async fn delete_maintenance(&self, id: i64, now_ms: i64) -> Result<()> {
        sli::delete_maintenance(&self.writer, id, now_ms).await
    }

    async fn sli_window(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ScopedCounts>> {
        sli_window::window(&self.reader, from_ms, to_ms).await
    }

    async fn open_incident(&self, incident: &NewIncident) -> Result<i64> {
        incidents::open(&self.writer, incident).await
    }

    async fn put_incident_alert(
        &self,
        id: i64,
        alert: &IncidentAlert,
        slo_bp: u32,
        started_at_ms: i64,
    ) -> Result<()> {
        incidents::put_alert(&self.writer, id, alert, slo_bp, started_at_ms).await
    }

    async fn close_incident(&self, id: i64, ended_at_ms: i64, impact: &Impact) -> Result<()> {
        incidents::close(&self.writer, id, ended_at_ms, impact).await
    }

    async fn get_incident(&self, id: i64) -> Result<Option<Incident>> {
        incidents::get(&self.reader, id).await
    }

    async fn open_incident_now(&self) -> Result<Option<Incident>> {
        incidents::open_one(&self.reader).await
    }

    async fn list_incidents(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<Incident>> {
        incidents::list(&self.reader, from_ms, to_ms).await
    }

    async fn incident_impact(
        &self,
        from_ms: i64,
        to_ms: i64,
        scope: &ImpactScope,
    ) -> Result<Impact> {
        incidents::impact(&self.reader, from_ms, to_ms, scope).await
    }
}
