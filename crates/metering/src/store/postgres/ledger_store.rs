//! The usage ledger on PostgreSQL: [`LedgerStore`] for [`PgStore`], with the same semantics as
//! the SQLite ledger (`store/sqlite/ledger_store.rs`), made safe for several gateway replicas
//! writing one database at once.
//!
//! The pieces live in `ledger_store/`: usage rows (`usage`), the SLI rollups and refusals
//! written with them (`rollups`), open requests and process leases (`open`), dead letters
//! (`dead_letters`) and the reports (`reports`).
//!
//! # Exactly once across replicas
//! Rows keyed by request id (usage, refusals) are inserted with `ON CONFLICT (request_id) DO
//! NOTHING RETURNING request_id`, and only the rows that statement returned are added to the
//! rollups. Under Postgres's default READ COMMITTED, an insert that meets a row another
//! transaction inserted but has not committed waits for that transaction, then skips the row
//! if it committed (and is not returned) or inserts it if it rolled back: whichever replica
//! stores a request, it is counted by that replica only. A SELECT-then-INSERT (what the SQLite
//! store does, where one writer holds the whole file) would let both replicas count it.
//!
//! # Lock order
//! Replicas lock the same rows (a retried batch, the same hot per-minute rollup row), so every
//! writer takes them in one order: rows sorted by request id, rollup keys in their sorted
//! order, and the rollups last in the transaction, to hold the most shared rows the shortest
//! time. A deadlock that still happens (say a replica wrongly judged dead) is reported by
//! Postgres as SQLSTATE 40P01, which maps to `Unavailable`: the ledger writer retries.

mod dead_letters;
mod open;
mod reports;
mod rollups;
mod usage;

use async_trait::async_trait;

use super::PgStore;
use crate::model::{DeadLetter, UsageRecord};
use crate::open::{Checkpoint, OpenRequest};
use crate::sli::{fold, Refusal};
use crate::store::rows::{to_i64 as fit, to_u64};
use crate::store::{
    KeyTokens, LedgerBatch, LedgerStore, MarginRow, Period, Result, UsageQuery, UsageRow,
};

/// Rows per multi-row statement. The widest row (a usage row) binds 23 parameters, so a full
/// statement binds 23,000, well under Postgres's limit of 65,535 per statement; larger batches
/// are several statements in the same transaction.
const ROWS_PER_STATEMENT: usize = 1_000;

/// Postgres's limit on bind parameters per statement (the wire protocol counts them in 16
/// bits).
const MAX_BINDS: usize = 65_535;

#[async_trait]
impl LedgerStore for PgStore {
    async fn write_ledger_batch(&self, batch: &LedgerBatch<'_>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // Checked before the transaction starts, so a bad record fails the batch cleanly.
        let checked = usage::check(batch.usage)?;
        let mut tx = self.pool.begin().await?;
        open::insert_in(&mut tx, batch.opens).await?;
        open::checkpoint_in(&mut tx, batch.checkpoints).await?;
        let new_usage = usage::insert_in(&mut tx, &checked).await?;
        let new_refusals = rollups::insert_refusals_in(&mut tx, batch.refusals).await?;
        // One pass over the rollups for both kinds: the same final counts as applying them
        // one after the other, with every key locked once, in one order.
        rollups::apply(&mut tx, &fold(new_usage, new_refusals)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_usage(&self, batch: &[UsageRecord]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let checked = usage::check(batch)?;
        let mut tx = self.pool.begin().await?;
        let new = usage::insert_in(&mut tx, &checked).await?;
        rollups::apply(&mut tx, &fold(new, [])).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_refusals(&self, batch: &[Refusal]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let new = rollups::insert_refusals_in(&mut tx, batch).await?;
        rollups::apply(&mut tx, &fold([], new)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn usage(&self, query: &UsageQuery, period: Period) -> Result<Vec<UsageRow>> {
        reports::usage(&self.pool, query, period).await
    }

    async fn usage_records(&self, query: &UsageQuery) -> Result<Vec<UsageRecord>> {
        reports::usage_records(&self.pool, query).await
    }

    async fn margin(&self, query: &UsageQuery) -> Result<Vec<MarginRow>> {
        reports::margin(&self.pool, query).await
    }

    async fn tokens_by_key_since(&self, from_ms: i64) -> Result<Vec<KeyTokens>> {
        reports::tokens_by_key_since(&self.pool, from_ms).await
    }

    async fn insert_open(&self, batch: &[OpenRequest]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        open::insert_in(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn checkpoint_open(&self, batch: &[Checkpoint]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        open::checkpoint_in(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn instance_alive(
        &self,
        instance: &str,
        started_at_ms: i64,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<()> {
        open::alive(&self.pool, instance, started_at_ms, now_ms, lease_ms).await
    }

    async fn live_instances(&self, now_ms: i64) -> Result<u32> {
        open::live(&self.pool, now_ms).await
    }

    async fn reconcile_interrupted(
        &self,
        own: &str,
        now_ms: i64,
        unseen_lease_ms: i64,
    ) -> Result<u64> {
        open::reconcile(&self.pool, own, now_ms, unseen_lease_ms).await
    }

    async fn insert_dead_letters(&self, letters: &[DeadLetter]) -> Result<()> {
        dead_letters::insert(&self.pool, letters).await
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>> {
        dead_letters::list(&self.pool, limit).await
    }
}
