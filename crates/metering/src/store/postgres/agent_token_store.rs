//! Agent tokens on Postgres (see [`crate::store::agent_tokens`]).

use async_trait::async_trait;

use super::PgStore;
use crate::store::agent_tokens::{AgentToken, AgentTokenStore};
use crate::store::rows::{agent_token_from_row, constraint_error, to_json};
use crate::store::Result;

const COLUMNS: &str = "id, name, hash, prefix, scope, created_at_ms, revoked_at_ms";

#[async_trait]
impl AgentTokenStore for PgStore {
    async fn create_agent_token(&self, token: &AgentToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO agent_tokens (id, name, hash, prefix, scope, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(&token.hash[..])
        .bind(&token.prefix)
        .bind(to_json(&token.scope, "agent token scope")?)
        .bind(token.created_at_ms)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            constraint_error(
                e,
                || format!("agent token {} exists", token.id),
                "agent token",
            )
        })?;
        Ok(())
    }

    async fn agent_token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<AgentToken>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM agent_tokens WHERE hash = $1"
        ))
        .bind(&hash[..])
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| agent_token_from_row(&r)).transpose()
    }

    async fn agent_tokens(&self) -> Result<Vec<AgentToken>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM agent_tokens ORDER BY created_at_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(agent_token_from_row).collect()
    }

    async fn revoke_agent_token(&self, id: &str, at_ms: i64) -> Result<Option<AgentToken>> {
        let row = sqlx::query(&format!(
            "UPDATE agent_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $2) \
             WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(at_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| agent_token_from_row(&r)).transpose()
    }
}
