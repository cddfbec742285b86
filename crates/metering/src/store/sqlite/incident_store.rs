//! Incidents and maintenance windows on SQLite.

use super::*;
use crate::store::IncidentStore;

#[async_trait]
impl IncidentStore for SqliteStore {
    async fn add_maintenance(&self, window: &NewMaintenance) -> Result<Maintenance> {
        sli::add_maintenance(&self.writer, window).await
    }

    async fn list_maintenance(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<Maintenance>> {
        sli::list_maintenance(&self.reader, from_ms, to_ms).await
    }

    async fn delete_maintenance(&self, id: i64, now_ms: i64) -> Result<()> {
        sli::delete_maintenance(&self.writer, id, now_ms).await
    }

    async fn open_incident(&self, incident: &NewIncident) -> Result<i64> {
        incidents::open(&self.writer, incident).await
    }

    async fn put_incident_alert(
        &self,
        id: i64,
        alert: &IncidentAlert,
        slo_bp: u32,
        started_at_ms: i64,
    ) -> Result<()> {
        incidents::put_alert(&self.writer, id, alert, slo_bp, started_at_ms).await
    }

    async fn close_incident(&self, id: i64, ended_at_ms: i64, impact: &Impact) -> Result<()> {
        incidents::close(&self.writer, id, ended_at_ms, impact).await
    }

    async fn get_incident(&self, id: i64) -> Result<Option<Incident>> {
        incidents::get(&self.reader, id).await
    }

    async fn open_incident_now(&self) -> Result<Option<Incident>> {
        incidents::open_one(&self.reader).await
    }

    async fn list_incidents(
        &self,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
    ) -> Result<Vec<Incident>> {
        incidents::list(&self.reader, from_ms, to_ms).await
    }

    async fn incident_impact(
        &self,
        from_ms: i64,
        to_ms: i64,
        scope: &ImpactScope,
    ) -> Result<Impact> {
        incidents::impact(&self.reader, from_ms, to_ms, scope).await
    }
}
