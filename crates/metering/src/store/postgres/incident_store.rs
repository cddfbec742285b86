//! [`IncidentStore`] on PostgreSQL: incidents and maintenance windows, with the SQLite store's
//! meaning, made safe for several gateway replicas whose alert evaluators all see the same
//! alert:
//! - At most one incident is open (`incidents_one_open`). Opening one while another is open
//!   is a `Conflict`, as on SQLite, also when two replicas open at the same moment: the
//!   insert waits for the other's and then inserts nothing (`ON CONFLICT DO NOTHING`), so the
//!   loser gets `Conflict`, never a raw unique-violation or an aborted transaction.
//! - Adding an alert reads the incident's scopes, severity and SLO and writes them back
//!   widened: the row is locked first (`SELECT ... FOR UPDATE`), so alerts put by two replicas
//!   at once both widen it instead of one overwriting the other's scope.
//! - Deleting a maintenance window checks it has not started in the `DELETE` itself.
//! - An incident and its alerts are read in one snapshot (`REPEATABLE READ`), so a reader never
//!   sees an alert the incident's scopes do not yet cover.

mod impact;
mod incidents;
mod maintenance;

use async_trait::async_trait;

use super::PgStore;
use crate::incident::{Impact, ImpactScope, Incident, IncidentAlert, NewIncident};
use crate::maintenance::{Maintenance, NewMaintenance};
use crate::store::{IncidentStore, Result};

#[async_trait]
impl IncidentStore for PgStore {
    async fn open_incident(&self, incident: &NewIncident) -> Result<i64> {
        incidents::open(&self.pool, incident).await
    }

    async fn put_incident_alert(
        &self,
        id: i64,
        alert: &IncidentAlert,
        slo_bp: u32,
        started_at_ms: i64,
    ) -> Result<()> {
        incidents::put_alert(&self.pool, id, alert, slo_bp, started_at_ms).await
    }

    async fn close_incident(&self, id: i64, ended_at_ms: i64, impact: &Impact) -> Result<()> {
        incidents::close(&self.pool, id, ended_at_ms, impact).await
    }

    async fn get_incident(&self, id: i64) -> Result<Option<Incident>> {
        incidents::get(&self.pool, id).await
    }

    async fn open_incident_now(&self) -> Result<Option<Incident>> {
        incidents::open_one(&self.pool).await
    }

    async fn list_incidents(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<Incident>> {
        incidents::list(&self.pool, from_ms, to_ms).await
    }

    async fn incident_impact(
        &self,
        from_ms: i64,
        to_ms: i64,
        scope: &ImpactScope,
    ) -> Result<Impact> {
        impact::impact(&self.pool, from_ms, to_ms, scope).await
    }

    async fn add_maintenance(&self, window: &NewMaintenance) -> Result<Maintenance> {
        maintenance::add(&self.pool, window).await
    }

    async fn list_maintenance(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<Maintenance>> {
        maintenance::list(&self.pool, from_ms, to_ms).await
    }

    async fn delete_maintenance(&self, id: i64, now_ms: i64) -> Result<()> {
        maintenance::delete(&self.pool, id, now_ms).await
    }
}
