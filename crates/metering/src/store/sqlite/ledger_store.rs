//! The usage ledger on SQLite: usage rows, refusals, crash accounting's open requests and
//! process leases, dead letters, and the reports read from them.

use super::*;
use crate::store::rows::usage_from_row;
use crate::store::LedgerStore;

#[async_trait]
impl LedgerStore for SqliteStore {
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

    async fn live_instances(&self, now_ms: i64) -> Result<u32> {
        open::live(&self.reader, now_ms).await
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
}
