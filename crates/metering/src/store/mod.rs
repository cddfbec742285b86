//! Where tenants, keys, credits, the ledger and the shared fleet live: one trait per consumer's
//! concern ([`TenantStore`], [`LedgerStore`], [`SliStore`], [`IncidentStore`], [`ContentStore`],
//! [`FleetStore`] in [`fleet`]), so that a second backend (Postgres, for several gateway
//! replicas) can be added trait by trait, and [`Store`], all of them at once.

pub mod agent_tokens;
pub mod fleet;
pub mod postgres;
mod rows;
pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

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

pub use agent_tokens::{AgentScope, AgentToken, AgentTokenStore};
pub use fleet::{DrainKind, DrainRecord, FleetState, FleetStore, WorkerRegistration};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The store cannot take writes now (locked, full, disconnected): nothing about the
    /// request is wrong, and the same request may succeed later.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound("row".into()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            // The row, not the store: the ledger writer dead-letters such a record instead of
            // retrying its batch (see `ledger::writer`).
            sqlx::Error::Database(db) if refuses_the_row(db.as_ref()) => {
                StoreError::Invalid(db.message().to_string())
            }
            sqlx::Error::Database(db) if store_state(db.as_ref()) => {
                StoreError::Unavailable(db.message().to_string())
            }
            sqlx::Error::Encode(_) => StoreError::Invalid(e.to_string()),
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::InvalidSavePointStatement
            | sqlx::Error::BeginFailed => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// Whether the database refused a statement for the values it carries (a constraint, a
/// datatype, a size) rather than for its own state (locked, full, gone).
fn refuses_the_row(db: &dyn sqlx::error::DatabaseError) -> bool {
    use sqlx::error::ErrorKind;
    match db.kind() {
        ErrorKind::CheckViolation
        | ErrorKind::NotNullViolation
        | ErrorKind::ForeignKeyViolation => true,
        _ => {
            let Some(code) = db.code() else {
                return false;
            };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // Primary result codes (the low byte of an extended one): SQLITE_TOOBIG,
                // SQLITE_MISMATCH, SQLITE_RANGE.
                matches!(code.parse::<u32>().map(|c| c & 0xff), Ok(18 | 20 | 25))
            } else {
                // SQLSTATE class 22 (data exception: out of range, bad encoding, NUL in text)
                // and 23 (integrity constraint).
                code.starts_with("22") || code.starts_with("23")
            }
        }
    }
}

/// Whether the database failed for its own state (busy, full, read-only, I/O, gone), which a
/// retry of the same statement may get past.
fn store_state(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else {
        return false;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLITE_BUSY, _LOCKED, _NOMEM, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN,
        // _PROTOCOL.
        matches!(
            code.parse::<u32>().map(|c| c & 0xff),
            Ok(5 | 6 | 7 | 8 | 10 | 11 | 13 | 14 | 15)
        )
    } else {
        // SQLSTATE: connection exception, transaction rollback (serialization, deadlock),
        // insufficient resources (disk full), operator intervention (shutdown), system error.
        ["08", "40", "53", "57", "58"]
            .iter()
            .any(|class| code.starts_with(class))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What the ledger writer stores at once (see [`LedgerStore::write_ledger_batch`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct LedgerBatch<'a> {
    pub opens: &'a [OpenRequest],
    pub checkpoints: &'a [Checkpoint],
    pub usage: &'a [UsageRecord],
    pub refusals: &'a [Refusal],
}

impl LedgerBatch<'_> {
    pub fn len(&self) -> usize {
        self.opens.len() + self.checkpoints.len() + self.usage.len() + self.refusals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Aggregation period of a usage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Month,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsageQuery {
    pub tenant_id: Option<String>,
    /// Inclusive lower bound, unix ms.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound, unix ms.
    pub to_ms: Option<i64>,
}

/// Usage summed per tenant, period and model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    pub tenant_id: String,
    /// "2026-11-28" for days, "2026-11" for months (UTC).
    pub period: String,
    pub model: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: Nanos,
    pub cogs: Nanos,
}

/// Revenue against cost of goods per model and provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarginRow {
    pub model: String,
    pub provider: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub revenue: Nanos,
    pub cogs: Nanos,
}

/// Minutes in which a gateway was alive (see [`SliStore::heartbeats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heartbeats {
    pub minutes: std::collections::BTreeSet<i64>,
    /// The first minute with a heartbeat, ever; `None` before the first one.
    pub since_minute: Option<i64>,
}

/// Tokens a key used over a period (see [`LedgerStore::tokens_by_key_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTokens {
    pub tenant_id: String,
    pub key_id: String,
    pub tokens: u64,
}

/// Tenants, their keys (hashes only) and prepaid credit: what the key directory and the
/// admin API read and write. The credit balance is top-ups minus the ledger's costs, so it
/// cannot drift from what was billed.
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()>;
    async fn update_tenant(
        &self,
        id: &str,
        tier: Option<&str>,
        overrides: Option<&LimitOverrides>,
        prepaid: Option<bool>,
        content_logging: Option<ContentLogging>,
    ) -> Result<Tenant>;
    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;
    async fn add_credit(&self, tenant_id: &str, amount: Nanos, note: &str) -> Result<()>;
    async fn credit_balance(&self, tenant_id: &str) -> Result<Nanos>;
    async fn create_key(&self, key: &ApiKey) -> Result<()>;
    async fn list_keys(&self, tenant_id: Option<&str>) -> Result<Vec<ApiKey>>;
    async fn get_key(&self, id: &str) -> Result<Option<ApiKey>>;
    async fn revoke_key(&self, id: &str, at: i64) -> Result<()>;
    /// A feed of changes to tenants, keys and credit made by any process sharing this store
    /// (another gateway replica, or this one), for backends that have one (Postgres
    /// `LISTEN/NOTIFY`); `None` where they do not (SQLite: one gateway per file). The feed
    /// ends when the receiver is dropped.
    async fn changes(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Change>>> {
        Ok(None)
    }
}

/// One item of [`TenantStore::changes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Something changed: reload.
    Changed,
    /// The feed lost its connection and got it back: changes may have been missed, reload.
    Reconnected,
}

/// The usage ledger: what the ledger writer stores (usage rows, refusals, crash accounting's
/// open requests and process leases, dead letters) and the usage reports read from it.
#[async_trait]
pub trait LedgerStore: Send + Sync + 'static {
    /// A ledger batch of every kind in one transaction (one commit, one fsync): opens, then
    /// checkpoints, then usage rows, then refusals, each as its own method would write it.
    /// The ledger writer tries this first and falls back to the kinds one by one (to isolate
    /// a refused record) when it fails.
    async fn write_ledger_batch(&self, batch: &LedgerBatch<'_>) -> Result<()>;
    /// Writes a batch in one transaction; records whose `request_id` is already stored are
    /// skipped, so a retried batch never counts twice. The per-minute SLI rollups of the
    /// records actually inserted are updated in the same transaction.
    async fn insert_usage(&self, batch: &[UsageRecord]) -> Result<()>;
    /// Records requests refused before any worker, idempotently per `request_id`, and adds
    /// the new ones to the per-minute SLI rollups in the same transaction.
    async fn insert_refusals(&self, batch: &[Refusal]) -> Result<()>;
    async fn usage(&self, query: &UsageQuery, period: Period) -> Result<Vec<UsageRow>>;
    async fn usage_records(&self, query: &UsageQuery) -> Result<Vec<UsageRecord>>;
    async fn margin(&self, query: &UsageQuery) -> Result<Vec<MarginRow>>;
    /// Tokens used since `from_ms` per (tenant, key), for restoring every tenant's and key's
    /// monthly quota at start in one query.
    async fn tokens_by_key_since(&self, from_ms: i64) -> Result<Vec<KeyTokens>>;
    /// Records admitted requests as open (skipping any whose final record, usage row,
    /// refusal or dead letter, exists already).
    async fn insert_open(&self, batch: &[OpenRequest]) -> Result<()>;
    /// Updates open requests with their latest checkpoint.
    async fn checkpoint_open(&self, batch: &[Checkpoint]) -> Result<()>;
    /// Renews gateway process `instance`'s sign of life at `now_ms`; it counts as dead once
    /// `lease_ms` has passed without another.
    async fn instance_alive(
        &self,
        instance: &str,
        started_at_ms: i64,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<()>;
    /// Gateway processes alive at `now_ms` (within the lease of their last sign of life):
    /// how a replica that cannot reach Redis learns how many share the limits.
    async fn live_instances(&self, now_ms: i64) -> Result<u32>;
    /// Settles as `interrupted` usage rows the open requests of processes other than `own`
    /// that are dead at `now_ms`: past their own lease, or never seen alive and opened more
    /// than `unseen_lease_ms` ago. Returns how many.
    async fn reconcile_interrupted(
        &self,
        own: &str,
        now_ms: i64,
        unseen_lease_ms: i64,
    ) -> Result<u64>;
    /// Keeps records the store refused, with the reason (see `ledger`). A final record
    /// (usage, refusal) kept so closes its request's open row: the dead letter is its record
    /// now, not an interrupted request.
    async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<()>;
    /// The newest `limit` dead letters, newest first.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>>;
}

/// SLI rollups: per-minute counts and latency histograms (kept by the ledger writes above),
/// the minutes gateways were alive, and black-box probers' minutes: what the SLA report, the
/// status page and burn-rate alerts read.
#[async_trait]
pub trait SliStore: Send + Sync + 'static {
    /// Per tenant and minute, summed over models, regions and providers; only minutes with
    /// traffic. The query's bounds are unix ms, rounded down to their minute.
    async fn sli_minutes(&self, query: &UsageQuery) -> Result<Vec<MinuteCounts>>;
    /// Latency histograms per tenant, hour and metric.
    async fn sli_latency(&self, query: &UsageQuery) -> Result<Vec<LatencyCount>>;
    /// Fleet-wide counts per minute over `[from_ms, to_ms)` (every tenant, model, region
    /// summed), only minutes with traffic: the public status page's history, tenant-free.
    async fn sli_fleet_minutes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<FleetMinute>>;
    /// Fleet-wide histogram of `metric` per chart bucket of `bucket_minutes` minutes counted
    /// from `from_ms`'s minute, summed in the database so a month is a few thousand rows.
    async fn sli_fleet_latency(
        &self,
        from_ms: i64,
        to_ms: i64,
        metric: Metric,
        bucket_minutes: i64,
    ) -> Result<Vec<BucketLatency>>;
    /// Counts per model and region over `[from_ms, to_ms)`, every tenant summed.
    async fn sli_scopes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ScopeCounts>>;
    /// Counts per tier and model over `[from_ms, to_ms)`, exact to the millisecond: whole
    /// minutes from the rollups, the edges from raw rows. What burn-rate alerts are made of.
    async fn sli_window(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ScopedCounts>>;
    /// Notes that gateway process `instance` is alive in unix minute `minute` (idempotent).
    async fn record_heartbeat(&self, instance: &str, minute: i64) -> Result<()>;
    /// Which minutes of `[from_ms, to_ms)` some gateway was alive in, and the first minute
    /// any heartbeat was ever recorded (before it, minutes are not judged).
    async fn heartbeats(&self, from_ms: i64, to_ms: i64) -> Result<Heartbeats>;
    /// Records what black-box probers saw (see `switchyard probe`); a minute pushed again
    /// replaces its earlier counts.
    async fn put_probe_minutes(&self, minutes: &[ProbeMinute]) -> Result<()>;
    /// Probers' minutes in `[from_ms, to_ms)`.
    async fn probe_minutes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<ProbeMinute>>;
}

/// Incidents (see [`crate::incident`]) and maintenance windows: what the alerting and the
/// SLA report's exclusions read and write.
#[async_trait]
pub trait IncidentStore: Send + Sync + 'static {
    /// Opens an incident with its first alert; returns its id. At most one is open at a time.
    async fn open_incident(&self, incident: &NewIncident) -> Result<i64>;
    /// Adds (or updates: same name, scope and firing time) an alert of incident `id`, widening
    /// its scopes, severity and SLO, and moving its start back to `started_at_ms` if earlier.
    async fn put_incident_alert(
        &self,
        id: i64,
        alert: &IncidentAlert,
        slo_bp: u32,
        started_at_ms: i64,
    ) -> Result<()>;
    /// Ends an incident with its impact.
    async fn close_incident(&self, id: i64, ended_at_ms: i64, impact: &Impact) -> Result<()>;
    async fn get_incident(&self, id: i64) -> Result<Option<Incident>>;
    /// The open incident, if any.
    async fn open_incident_now(&self) -> Result<Option<Incident>>;
    /// Incidents overlapping `[from_ms, to_ms)` (unbounded where `None`), newest first.
    async fn list_incidents(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<Incident>>;
    /// Requests, failures, bad minutes and tenants hit in `[from_ms, to_ms)` within `scope`
    /// (`budget_spent_bp` is left 0: it needs the SLO and the month).
    async fn incident_impact(
        &self,
        from_ms: i64,
        to_ms: i64,
        scope: &ImpactScope,
    ) -> Result<Impact>;
    async fn add_maintenance(&self, window: &NewMaintenance) -> Result<Maintenance>;
    /// Windows overlapping `[from_ms, to_ms)` (unbounded where `None`), by start.
    async fn list_maintenance(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<Maintenance>>;
    /// Deletes a window that has not started by `now_ms`; one that has is a `Conflict` (it
    /// was announced, and the report's exclusions must not change after the fact).
    async fn delete_maintenance(&self, id: i64, now_ms: i64) -> Result<()>;
}

/// Opt-in content logs (see [`crate::content`]); records arrive already redacted.
#[async_trait]
pub trait ContentStore: Send + Sync + 'static {
    /// Writes a batch in one transaction; a request id already stored is skipped.
    async fn insert_content(&self, batch: &[ContentRecord]) -> Result<()>;
    /// A tenant's records, newest first, at most `limit`; one request's with `request_id`.
    async fn content_records(
        &self,
        tenant_id: &str,
        request_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ContentRecord>>;
    /// Erases every content record of a tenant; returns how many there were.
    async fn erase_content(&self, tenant_id: &str) -> Result<u64>;
    /// Deletes records whose `expires_at_ms` is at or before `now_ms`; returns how many.
    async fn delete_expired_content(&self, now_ms: i64) -> Result<u64>;
}

/// Every store trait at once: what a backend implements, trait by trait, and what the
/// gateway holds (`Arc<dyn Store>`). A consumer that needs one concern names that trait.
pub trait Store:
    TenantStore + LedgerStore + SliStore + IncidentStore + ContentStore + FleetStore + AgentTokenStore
{
}

impl<
        T: TenantStore
            + LedgerStore
            + SliStore
            + IncidentStore
            + ContentStore
            + FleetStore
            + AgentTokenStore,
    > Store for T
{
}

/// Every store trait, for code that calls a concrete store's methods (tools, tests).
pub mod prelude {
    pub use super::{
        AgentTokenStore, ContentStore, FleetStore, IncidentStore, LedgerStore, SliStore, Store,
        TenantStore,
    };
}
