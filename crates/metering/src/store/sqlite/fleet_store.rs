//! The fleet's registrations, leases and drains on SQLite (see [`crate::store::fleet`]). One
//! gateway per file, so there is no change feed: the gateway reconciles from these tables on
//! its periodic backstop and when a lease it holds runs out.

use super::*;
use crate::store::fleet::{DrainKind, FleetState, FleetStore, WorkerRegistration};
use crate::store::rows::{drain_from_row, registration_from_row};

/// The database's now in unix ms. SQLite's `'now'` is fixed for the length of a statement, so
/// every use within one statement agrees. (`julianday` rather than `unixepoch('subsec')`,
/// which needs SQLite 3.42.)
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

/// The next number of the fleet's sequence, in the caller's transaction.
async fn next_seq(tx: &mut sqlx::SqliteConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("UPDATE fleet_sequence SET last = last + 1 WHERE id = 1 RETURNING last")
            .fetch_one(&mut *tx)
            .await?,
    )
}

#[async_trait]
impl FleetStore for SqliteStore {
    async fn register_worker(
        &self,
        name: &str,
        spec: &str,
        lease_ms: i64,
    ) -> Result<(WorkerRegistration, bool)> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let next = next_seq(&mut tx).await?;
        let row = sqlx::query(&format!(
            "INSERT INTO fleet_registrations AS r (name, spec, generation, expires_at_ms) \
             VALUES (?1, ?2, ?3, {NOW_MS} + ?4) \
             ON CONFLICT (name) DO UPDATE SET \
                 generation = CASE WHEN r.spec = excluded.spec AND r.expires_at_ms > {NOW_MS} \
                                   THEN r.generation ELSE excluded.generation END, \
                 spec = excluded.spec, \
                 expires_at_ms = excluded.expires_at_ms \
             RETURNING name, spec, generation, expires_at_ms - {NOW_MS} AS lease_left_ms"
        ))
        .bind(name)
        .bind(spec)
        .bind(next)
        .bind(lease_ms)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let registration = registration_from_row(&row)?;
        let new = registration.generation == next;
        Ok((registration, new))
    }

    async fn renew_worker(&self, name: &str, lease_ms: i64) -> Result<Option<WorkerRegistration>> {
        let row = sqlx::query(&format!(
            "UPDATE fleet_registrations SET expires_at_ms = {NOW_MS} + ?2 \
             WHERE name = ?1 AND expires_at_ms > {NOW_MS} \
             RETURNING name, spec, generation, expires_at_ms - {NOW_MS} AS lease_left_ms"
        ))
        .bind(name)
        .bind(lease_ms)
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(registration_from_row).transpose()
    }

    async fn remove_worker(&self, name: &str) -> Result<bool> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let live: Option<i64> = sqlx::query_scalar(&format!(
            "DELETE FROM fleet_registrations WHERE name = ?1 \
             RETURNING expires_at_ms > {NOW_MS}"
        ))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM fleet_drains WHERE kind = 'worker' AND value = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(live == Some(1))
    }

    async fn record_drain(
        &self,
        kind: DrainKind,
        value: &str,
        draining: bool,
        reason: &str,
    ) -> Result<i64> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let seq = next_seq(&mut tx).await?;
        sqlx::query(
            "INSERT INTO fleet_drains (kind, value, draining, reason, seq) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (kind, value) DO UPDATE SET \
                 draining = excluded.draining, reason = excluded.reason, seq = excluded.seq",
        )
        .bind(kind.as_str())
        .bind(value)
        .bind(draining)
        .bind(reason)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn fleet_state(&self) -> Result<FleetState> {
        // One read transaction: both tables from one snapshot.
        let mut tx = self.reader.begin().await?;
        let registrations = sqlx::query(&format!(
            "SELECT name, spec, generation, expires_at_ms - {NOW_MS} AS lease_left_ms \
             FROM fleet_registrations WHERE expires_at_ms > {NOW_MS} ORDER BY name"
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
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let names: Vec<String> = sqlx::query_scalar(&format!(
            "DELETE FROM fleet_registrations WHERE expires_at_ms + ?1 < {NOW_MS} RETURNING name"
        ))
        .bind(grace_ms)
        .fetch_all(&mut *tx)
        .await?;
        for name in &names {
            sqlx::query("DELETE FROM fleet_drains WHERE kind = 'worker' AND value = ?1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(names.len() as u64)
    }
}
