//! [`Store`](super::Store) on PostgreSQL: the state several gateway replicas share.
//!
//! Same tables and meaning as the SQLite store (`migrations/postgres/0001_init.sql` is the
//! SQLite migrations in one step); the differences are where replicas meet:
//! - Migrations run at start under sqlx's advisory lock (`pg_advisory_lock`), so replicas
//!   starting together apply them once.
//! - Rows keyed by request id are inserted with `ON CONFLICT DO NOTHING RETURNING`, and the
//!   SLI rollups take only the rows that statement returned: two replicas writing (or
//!   reconciling) the same request store it, and count it, once.
//! - Sums are cast back to `BIGINT` (`SUM(bigint)` is `NUMERIC` in Postgres).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

mod agent_token_store;
mod changes;
mod content_store;
mod fleet_store;
mod incident_store;
mod ledger_store;
mod sli_store;
mod tenant_store;

use super::{Result, StoreError};

/// The migrations, embedded in the binary at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per replica: the ledger writer, reports, auth refreshes and alerting at once,
/// while 10 replicas stay well under Postgres's default `max_connections` of 100.
const CONNECTIONS: u32 = 8;

/// How long a statement may wait for a free connection before the store counts as unavailable
/// (the ledger writer then retries its batch).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The advisory lock key schema creation is serialised by ("swyd" in ASCII).
const SCHEMA_LOCK: i64 = 0x7377_7964;

/// [`Store`](super::Store) on PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(options(url)?).await
    }

    /// Connects with every table in `schema` (created if missing) instead of `public`: a
    /// private, disposable database for each test, on one server.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self> {
        if !schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::Invalid(format!(
                "schema {schema:?}: lowercase letters, digits and '_' only"
            )));
        }
        let base = options(url)?;
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(base.clone())
            .await
            .map_err(|e| connect_error(url, e))?;
        // Replicas starting together would race in `CREATE SCHEMA IF NOT EXISTS` (Postgres
        // checks, then inserts: the loser fails on a unique index); one at a time instead.
        let mut tx = admin.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        admin.close().await;
        Self::connect_with(base.options([("search_path", schema)])).await
    }

    async fn connect_with(options: PgConnectOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("connecting to Postgres: {e}")))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrating the Postgres schema: {e}")))?;
        Ok(Self { pool })
    }

    /// Drops `schema` and everything in it, then closes this store (a throwaway store of a
    /// benchmark). Refuses the schema tables live in by default.
    pub async fn drop_schema(&self, schema: &str) -> Result<()> {
        if schema == "public"
            || !schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::Invalid(format!(
                "will not drop schema {schema:?}"
            )));
        }
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&self.pool)
            .await?;
        self.close().await;
        Ok(())
    }

    /// Waits for queries in flight, then closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn options(url: &str) -> Result<PgConnectOptions> {
    PgConnectOptions::from_str(url).map_err(|e| StoreError::Invalid(format!("database URL: {e}")))
}

fn connect_error(url: &str, e: sqlx::Error) -> StoreError {
    // The URL may carry a password: name the host only.
    let host = url.split('@').next_back().unwrap_or(url);
    StoreError::Unavailable(format!("connecting to Postgres at {host}: {e}"))
}
