//! The fleet's registrations, leases and drains on PostgreSQL, shared by every replica (see
//! [`crate::store::fleet`]), with the SQLite store's semantics (`sqlite/fleet_store.rs`).
//!
//! Leases are judged by the database's `now()` only, never a replica's clock: replicas whose
//! clocks disagree by seconds still drop a worker at the same moment. Every change is one
//! statement, so two replicas registering, renewing or removing the same worker at once
//! serialise on its row. Registrations, replacements, removals and drains notify
//! `switchyard_fleet` (migration 0003); renewals do not.

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::store::fleet::{DrainKind, FleetState, FleetStore, WorkerRegistration};
use crate::store::rows::{drain_from_row, registration_from_row};
use crate::store::{Change, Result};

/// The database's now in unix ms: the start of the statement's transaction, the same for
/// every use within one statement.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT";

const REGISTRATION: &str = "r.name, r.spec, r.generation";

#[async_trait]
impl FleetStore for PgStore {
    async fn register_worker(
        &self,
        name: &str,
        spec: &str,
        lease_ms: i64,
    ) -> Result<(WorkerRegistration, bool)> {
        // The next generation is drawn whether or not the row takes it (a renewal keeps its
        // own): numbers are cheap, and one statement keeps the upsert atomic.
        let row = sqlx::query(&format!(
            "WITH next AS (SELECT nextval('fleet_sequence') AS generation) \
             INSERT INTO fleet_registrations AS r (name, spec, generation, expires_at_ms) \
             SELECT $1, $2, next.generation, {NOW_MS} + $3 FROM next \
             ON CONFLICT (name) DO UPDATE SET \
                 generation = CASE WHEN r.spec = EXCLUDED.spec AND r.expires_at_ms > {NOW_MS} \
                                   THEN r.generation ELSE EXCLUDED.generation END, \
                 spec = EXCLUDED.spec, \
                 expires_at_ms = EXCLUDED.expires_at_ms \
             RETURNING {REGISTRATION}, r.expires_at_ms - {NOW_MS} AS lease_left_ms, \
                 r.generation = (SELECT generation FROM next) AS new"
        ))
        .bind(name)
        .bind(spec)
        .bind(lease_ms)
        .fetch_one(&self.pool)
        .await?;
        let new: bool = row.try_get("new")?;
        Ok((registration_from_row(&row)?, new))
    }

    async fn renew_worker(&self, name: &str, lease_ms: i64) -> Result<Option<WorkerRegistration>> {
        let row = sqlx::query(&format!(
            "UPDATE fleet_registrations AS r SET expires_at_ms = {NOW_MS} + $2 \
             WHERE r.name = $1 AND r.expires_at_ms > {NOW_MS} \
             RETURNING {REGISTRATION}, r.expires_at_ms - {NOW_MS} AS lease_left_ms"
        ))
        .bind(name)
        .bind(lease_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(registration_from_row).transpose()
    }

    async fn remove_worker(&self, name: &str) -> Result<bool> {
        let live: Option<bool> = sqlx::query_scalar(&format!(
            "WITH gone AS (DELETE FROM fleet_registrations WHERE name = $1 \
                           RETURNING expires_at_ms > {NOW_MS} AS live), \
                  drains AS (DELETE FROM fleet_drains WHERE kind = 'worker' AND value = $1) \
             SELECT live FROM gone"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(live == Some(true))
    }

    async fn record_drain(
        &self,
        kind: DrainKind,
        value: &str,
        draining: bool,
        reason: &str,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO fleet_drains (kind, value, draining, reason, seq) \
             VALUES ($1, $2, $3, $4, nextval('fleet_sequence')) \
             ON CONFLICT (kind, value) DO UPDATE SET \
                 draining = EXCLUDED.draining, reason = EXCLUDED.reason, seq = EXCLUDED.seq \
             RETURNING seq",
        )
        .bind(kind.as_str())
        .bind(value)
        .bind(draining)
        .bind(reason)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn fleet_state(&self) -> Result<FleetState> {
        // Both tables from one snapshot, and leases by one `now()`.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let registrations = sqlx::query(&format!(
            "SELECT {REGISTRATION}, r.expires_at_ms - {NOW_MS} AS lease_left_ms \
             FROM fleet_registrations AS r WHERE r.expires_at_ms > {NOW_MS} \
             ORDER BY r.name COLLATE \"C\""
        ))
        .fetch_all(&mut *tx)
        .await?;
        let drains =
            sqlx::query("SELECT kind, value, draining, reason, seq FROM fleet_drains ORDER BY seq")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(FleetState {
            registrations: registrations
                .iter()
                .map(registration_from_row)
                .collect::<Result<_>>()?,
            drains: drains.iter().map(drain_from_row).collect::<Result<_>>()?,
        })
    }

    async fn purge_expired_workers(&self, grace_ms: i64) -> Result<u64> {
        let purged: i64 = sqlx::query_scalar(&format!(
            "WITH gone AS (DELETE FROM fleet_registrations \
                           WHERE expires_at_ms + $1 < {NOW_MS} RETURNING name), \
                  drains AS (DELETE FROM fleet_drains \
                             WHERE kind = 'worker' AND value IN (SELECT name FROM gone)) \
             SELECT count(*) FROM gone"
        ))
        .bind(grace_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(purged).unwrap_or(0))
    }

    async fn fleet_changes(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Change>>> {
        super::changes::feed(&self.pool, "switchyard_fleet")
            .await
            .map(Some)
    }
}
