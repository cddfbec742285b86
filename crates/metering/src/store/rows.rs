//! Rows read the same way from either backend: the [`Columns`] a row offers, the conversions
//! between columns and Rust values, and the records built from them (tenants, keys, usage),
//! written once for SQLite and Postgres.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::fleet::{DrainKind, DrainRecord, WorkerRegistration};
use super::{Result, StoreError};
use crate::content::{ContentLogging, ContentRecord};
use crate::incident::{Impact, Incident, IncidentAlert};
use crate::maintenance::{Maintenance, MaintenanceScope};
use crate::model::{ApiKey, LimitOverrides, Scopes, Tenant, UsageRecord, UsageSource, UsageStatus};
use crate::open::{Checkpoint, OpenRequest, OpenRow};

/// A row's columns by name, as the store's types: integers are 64-bit, flags are booleans
/// (SQLite stores them as 0/1, Postgres as `BOOLEAN`; sqlx decodes both).
pub(crate) trait Columns {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn flag(&self, col: &str) -> Result<bool>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>>;
}

macro_rules! columns_of {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, col: &str) -> Result<String> {
                Ok(self.try_get(col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>> {
                Ok(self.try_get(col)?)
            }
            fn int(&self, col: &str) -> Result<i64> {
                Ok(self.try_get(col)?)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>> {
                Ok(self.try_get(col)?)
            }
            fn flag(&self, col: &str) -> Result<bool> {
                Ok(self.try_get(col)?)
            }
            fn bytes(&self, col: &str) -> Result<Vec<u8>> {
                Ok(self.try_get(col)?)
            }
        }
    };
}

columns_of!(SqliteRow);
columns_of!(PgRow);

/// An integer read back as a count; negative means the row was written by something else.
pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Database(format!("{what} is negative ({v})")))
}

/// A count to store; one beyond `i64::MAX` is refused (`Invalid`: the record is at fault, so
/// the ledger writer dead-letters it) rather than wrapped.
pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} = {v} does not fit in i64")))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T, what: &str) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("{what}: {e}")))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Database(format!("stored {what}: {e}")))
}

pub(crate) fn tenant_from_row(row: &impl Columns) -> Result<Tenant> {
    let days = row.int("content_log_days")?;
    Ok(Tenant {
        id: row.text("id")?,
        tier: row.text("tier")?,
        overrides: from_json(&row.text("overrides")?, "tenant overrides")?,
        prepaid: row.flag("prepaid")?,
        created_at: row.int("created_at")?,
        content_logging: ContentLogging::from_days(days).ok_or_else(|| {
            StoreError::Database(format!("content_log_days is {days}, not 0, 7 or 30"))
        })?,
    })
}

pub(crate) fn key_from_row(row: &impl Columns) -> Result<ApiKey> {
    let id = row.text("id")?;
    let hash: [u8; 32] = row.bytes("hash")?.try_into().map_err(|h: Vec<u8>| {
        StoreError::Database(format!("key {id}: hash of {} bytes", h.len()))
    })?;
    Ok(ApiKey {
        tenant_id: row.text("tenant_id")?,
        name: row.text("name")?,
        prefix: row.text("prefix")?,
        hash,
        scopes: from_json::<Scopes>(&row.text("scopes")?, "key scopes")?,
        expires_at: row.opt_int("expires_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        created_at: row.int("created_at")?,
        limits: from_json::<LimitOverrides>(&row.text("limits")?, "key limits")?,
        id,
    })
}

pub(crate) fn usage_from_row(row: &impl Columns) -> Result<UsageRecord> {
    let status = row.text("status")?;
    let source = row.text("usage_source")?;
    let http_status = row.int("http_status")?;
    Ok(UsageRecord {
        request_id: row.text("request_id")?,
        started_at_ms: row.int("started_at_ms")?,
        tenant_id: row.text("tenant_id")?,
        key_id: row.text("key_id")?,
        model: row.text("model")?,
        endpoint: row.text("endpoint")?,
        stream: row.flag("stream")?,
        worker: row.text("worker")?,
        provider: row.text("provider")?,
        region: row.text("region")?,
        prompt_tokens: to_u64(row.int("prompt_tokens")?, "prompt_tokens")?,
        completion_tokens: to_u64(row.int("completion_tokens")?, "completion_tokens")?,
        usage_estimated: row.flag("usage_estimated")?,
        usage_source: UsageSource::parse(&source)
            .ok_or_else(|| StoreError::Database(format!("unknown usage source {source:?}")))?,
        usage_note: row.opt_text("usage_note")?,
        ttft_ms: row
            .opt_int("ttft_ms")?
            .map(|v| to_u64(v, "ttft_ms"))
            .transpose()?,
        ttft_exempt: row.flag("ttft_exempt")?,
        total_ms: to_u64(row.int("total_ms")?, "total_ms")?,
        status: UsageStatus::parse(&status)
            .ok_or_else(|| StoreError::Database(format!("unknown usage status {status:?}")))?,
        http_status: u16::try_from(http_status)
            .map_err(|_| StoreError::Database(format!("http_status {http_status}")))?,
        finish_reason: row.opt_text("finish_reason")?,
        cost: row.int("cost_nanos")?,
        cogs: row.int("cogs_nanos")?,
    })
}

/// Maps a constraint error to what the caller did wrong (a name taken, a tenant missing);
/// anything else goes through the generic `From<sqlx::Error>`.
pub(crate) fn constraint_error(
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

/// A usage record's unsigned columns, converted to 64-bit integers before anything is
/// written; one that does not fit is `Invalid`, so the ledger writer dead-letters the record.
pub(crate) struct CheckedUsage<'a> {
    pub rec: &'a UsageRecord,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub ttft_ms: Option<i64>,
    pub total_ms: i64,
}

impl<'a> CheckedUsage<'a> {
    pub fn new(rec: &'a UsageRecord) -> Result<Self> {
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

pub(crate) fn content_from_row(row: &impl Columns) -> Result<ContentRecord> {
    Ok(ContentRecord {
        request_id: row.text("request_id")?,
        tenant_id: row.text("tenant_id")?,
        model: row.text("model")?,
        endpoint: row.text("endpoint")?,
        stream: row.flag("stream")?,
        status: row.text("status")?,
        created_at_ms: row.int("created_at_ms")?,
        expires_at_ms: row.int("expires_at_ms")?,
        prompt: row.text("prompt")?,
        prompt_truncated: row.flag("prompt_truncated")?,
        completion: row.text("completion")?,
        completion_truncated: row.flag("completion_truncated")?,
    })
}

pub(crate) fn maintenance_from_row(row: &impl Columns) -> Result<Maintenance> {
    let scope = row.text("scope")?;
    Ok(Maintenance {
        id: row.int("id")?,
        start_ms: row.int("start_ms")?,
        end_ms: row.int("end_ms")?,
        scope: MaintenanceScope::parse(&scope)
            .ok_or_else(|| StoreError::Database(format!("unknown maintenance scope {scope:?}")))?,
        note: row.text("note")?,
        announced_at_ms: row.int("announced_at_ms")?,
        created_at_ms: row.int("created_at_ms")?,
    })
}

fn opt_u64(row: &impl Columns, col: &str) -> Result<Option<u64>> {
    row.opt_int(col)?.map(|v| to_u64(v, col)).transpose()
}

/// An incident row with its alerts (read separately).
pub(crate) fn incident_from_row(
    row: &impl Columns,
    alerts: Vec<IncidentAlert>,
) -> Result<Incident> {
    let slo_bp = row.int("slo_bp")?;
    // The impact columns are written together when the incident closes: all set or none.
    let impact = match (
        opt_u64(row, "requests")?,
        opt_u64(row, "requests_failed")?,
        opt_u64(row, "bad_minutes")?,
        opt_u64(row, "budget_spent_bp")?,
        opt_u64(row, "tenants_affected")?,
    ) {
        (Some(requests), Some(requests_failed), Some(bad_minutes), Some(spent), Some(tenants)) => {
            Some(Impact {
                requests,
                requests_failed,
                bad_minutes,
                budget_spent_bp: spent,
                tenants_affected: tenants,
            })
        }
        _ => None,
    };
    Ok(Incident {
        id: row.int("id")?,
        started_at_ms: row.int("started_at_ms")?,
        detected_at_ms: row.int("detected_at_ms")?,
        ended_at_ms: row.opt_int("ended_at_ms")?,
        scopes: from_json(&row.text("scopes")?, "incident scopes")?,
        severity: row.text("severity")?,
        title: row.text("title")?,
        slo_bp: u32::try_from(slo_bp)
            .map_err(|_| StoreError::Database(format!("slo_bp {slo_bp}")))?,
        alerts,
        impact,
    })
}

/// A request left open, with its last checkpoint if a worker had it.
pub(crate) fn open_from_row(row: &impl Columns) -> Result<OpenRow> {
    let request_id = row.text("request_id")?;
    let checkpoint = match row.opt_text("worker")? {
        None => None,
        Some(worker) => Some(Checkpoint {
            request_id: request_id.clone(),
            worker,
            provider: row.opt_text("provider")?.unwrap_or_default(),
            region: row.opt_text("region")?.unwrap_or_default(),
            worker_price_nanos: row.int("worker_price_nanos")?,
            worker_slots: u32::try_from(row.int("worker_slots")?).unwrap_or(1),
            relayed_tokens: to_u64(row.int("relayed_tokens")?, "relayed_tokens")?,
            ttft_ms: row
                .opt_int("ttft_ms")?
                .map(|t| to_u64(t, "ttft_ms"))
                .transpose()?,
            at_ms: row.opt_int("checkpoint_at_ms")?.unwrap_or_default(),
        }),
    };
    Ok(OpenRow {
        open: OpenRequest {
            request_id,
            instance: row.text("instance")?,
            started_at_ms: row.int("started_at_ms")?,
            tenant_id: row.text("tenant_id")?,
            key_id: row.text("key_id")?,
            model: row.text("model")?,
            endpoint: row.text("endpoint")?,
            stream: row.flag("stream")?,
            prompt_estimate: to_u64(row.int("prompt_estimate")?, "prompt_estimate")?,
            price_in_nanos: row.int("price_in_nanos")?,
            price_out_nanos: row.int("price_out_nanos")?,
        },
        checkpoint,
    })
}

/// An agent token as both stores hold it.
pub(crate) fn agent_token_from_row(
    row: &impl Columns,
) -> Result<crate::store::agent_tokens::AgentToken> {
    let id = row.text("id")?;
    let hash: [u8; 32] = row.bytes("hash")?.try_into().map_err(|h: Vec<u8>| {
        StoreError::Database(format!("agent token {id}: hash of {} bytes", h.len()))
    })?;
    Ok(crate::store::agent_tokens::AgentToken {
        name: row.text("name")?,
        hash,
        prefix: row.text("prefix")?,
        scope: from_json(&row.text("scope")?, "agent token scope")?,
        created_at_ms: row.int("created_at_ms")?,
        revoked_at_ms: row.opt_int("revoked_at_ms")?,
        id,
    })
}

/// A registration with its lease left (`lease_left_ms`, computed by the database).
pub(crate) fn registration_from_row(row: &impl Columns) -> Result<WorkerRegistration> {
    Ok(WorkerRegistration {
        name: row.text("name")?,
        spec: row.text("spec")?,
        generation: row.int("generation")?,
        lease_left_ms: row.int("lease_left_ms")?,
    })
}

pub(crate) fn drain_from_row(row: &impl Columns) -> Result<DrainRecord> {
    let kind = row.text("kind")?;
    Ok(DrainRecord {
        kind: DrainKind::parse(&kind)
            .ok_or_else(|| StoreError::Database(format!("drain of unknown kind '{kind}'")))?,
        value: row.text("value")?,
        draining: row.flag("draining")?,
        reason: row.text("reason")?,
        seq: row.int("seq")?,
    })
}
