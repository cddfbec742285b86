//! Tenants, their keys and prepaid credit on SQLite.

use super::*;
use crate::store::rows::{key_from_row, tenant_from_row};
use crate::store::TenantStore;

#[async_trait]
impl TenantStore for SqliteStore {
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
}
