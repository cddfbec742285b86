//! Tenants, their keys and prepaid credit on PostgreSQL, with the SQLite store's semantics
//! (`sqlite/tenant_store.rs`).
//!
//! Several replicas write these tables at once, so no method reads a row and writes it back:
//! every change is a single statement (`UPDATE ... SET col = COALESCE($n, col)`, an `INSERT`),
//! which Postgres applies under the row's lock, re-reading the row if another replica changed
//! it first. The balance is one `SELECT`, so its sums come from one snapshot.
//!
//! Text is ordered with `COLLATE "C"` (byte order), as SQLite's default `BINARY` collation
//! does, so listings come back in the same order whatever the database's locale.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::{Postgres, QueryBuilder, Row};

use super::PgStore;
use crate::content::ContentLogging;
use crate::model::{ApiKey, LimitOverrides, Tenant};
use crate::money::Nanos;
use crate::store::rows::to_json;
use crate::store::rows::{constraint_error, key_from_row, tenant_from_row};
use crate::store::{Change, Result, StoreError, TenantStore};

const TENANT_COLUMNS: &str = "id, tier, overrides, prepaid, created_at, content_log_days";

const KEY_COLUMNS: &str =
    "id, tenant_id, name, prefix, hash, scopes, limits, expires_at, revoked_at, created_at";

/// SQLSTATE `numeric_value_out_of_range`: here, a sum that does not fit back in `BIGINT`.
const OUT_OF_RANGE: &str = "22003";

#[async_trait]
impl TenantStore for PgStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO tenants ({TENANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&tenant.id)
        .bind(&tenant.tier)
        .bind(to_json(&tenant.overrides, "tenant overrides")?)
        .bind(tenant.prepaid)
        .bind(tenant.created_at)
        .bind(tenant.content_logging.days())
        .execute(&self.pool)
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
        // One statement, not a read then a write: the fields left `None` are taken from the
        // row as it is when the update locks it, so two replicas changing different fields at
        // once both keep their change.
        let row = sqlx::query(&format!(
            "UPDATE tenants SET \
                 tier = COALESCE($2, tier), \
                 overrides = COALESCE($3, overrides), \
                 prepaid = COALESCE($4, prepaid), \
                 content_log_days = COALESCE($5, content_log_days) \
             WHERE id = $1 \
             RETURNING {TENANT_COLUMNS}"
        ))
        .bind(id)
        .bind(tier)
        .bind(overrides)
        .bind(prepaid)
        .bind(content_logging.map(ContentLogging::days))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => tenant_from_row(&row),
            None => Err(StoreError::NotFound(format!("tenant {id}"))),
        }
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY id COLLATE \"C\""
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn add_credit(&self, tenant_id: &str, amount: Nanos, note: &str) -> Result<()> {
        // A row per top-up, never an updated total: concurrent top-ups from several replicas
        // are separate inserts, and all of them count.
        sqlx::query(
            "INSERT INTO credits (tenant_id, amount_nanos, note, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant_id)
        .bind(amount)
        .bind(note)
        .bind(now_ms())
        .execute(&self.pool)
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
        // One statement, so both sums come from the same snapshot. `SUM(bigint)` is NUMERIC
        // in Postgres: cast back, and a sum beyond i64 fails the cast rather than wrapping.
        let row = sqlx::query(
            "SELECT \
                 EXISTS (SELECT 1 FROM tenants WHERE id = $1) AS known, \
                 (SELECT COALESCE(SUM(amount_nanos), 0)::BIGINT \
                      FROM credits WHERE tenant_id = $1) AS credits, \
                 (SELECT COALESCE(SUM(cost_nanos), 0)::BIGINT \
                      FROM usage WHERE tenant_id = $1) AS costs",
        )
        .bind(tenant_id)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            // Stored values out of range are the store's fault, not the caller's input (the
            // generic mapping would call SQLSTATE class 22 invalid input).
            if let sqlx::Error::Database(db) = &e {
                if db.code().as_deref() == Some(OUT_OF_RANGE) {
                    return overflow(tenant_id);
                }
            }
            e.into()
        })?;
        let known: bool = row.try_get("known")?;
        if !known {
            return Err(StoreError::NotFound(format!("tenant {tenant_id}")));
        }
        let credits: i64 = row.try_get("credits")?;
        let costs: i64 = row.try_get("costs")?;
        credits
            .checked_sub(costs)
            .ok_or_else(|| overflow(tenant_id))
    }

    async fn create_key(&self, key: &ApiKey) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
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
        .execute(&self.pool)
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
        let mut qb = QueryBuilder::<Postgres>::new(format!("SELECT {KEY_COLUMNS} FROM api_keys"));
        if let Some(t) = tenant_id {
            qb.push(" WHERE tenant_id = ").push_bind(t);
        }
        qb.push(" ORDER BY tenant_id COLLATE \"C\", created_at, id COLLATE \"C\"");
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn get_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn changes(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Change>>> {
        super::changes::feed(&self.pool, "switchyard_directory")
            .await
            .map(Some)
    }

    async fn revoke_key(&self, id: &str, at: i64) -> Result<()> {
        // Revoking twice keeps the first time: that is when the key stopped working. One
        // statement, so of two replicas revoking at once the first to lock the row wins and
        // the other keeps its time.
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("key {id}")));
        }
        Ok(())
    }
}

fn overflow(tenant_id: &str) -> StoreError {
    StoreError::Database(format!("balance of {tenant_id} overflows i64"))
}

/// The process's clock, as the SQLite store stamps top-ups.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
