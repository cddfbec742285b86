//! Incidents from alert transitions: the first alert to fire opens one, every alert firing
//! while it is open joins it (one outage, one incident, however many scopes it shows in),
//! and it closes when the last of them resolves, with its impact measured then. The store is
//! the record: after a restart the open incident and its firing alerts are taken over.
//!
//! A store failure is logged and does not stop the alert from going out: a page that could
//! not be written down must still wake someone.

use switchyard_metering::incident::{IncidentAlert, NewIncident};
use switchyard_metering::Store;

use super::alert::{static_name, Alert};
use super::impact::measure;
use super::tracker::{severity, Active, Transition};

#[derive(Debug, Default)]
pub struct Recorder {
    open: Option<i64>,
}

fn row(a: &Active, resolved_at_ms: Option<i64>) -> IncidentAlert {
    IncidentAlert {
        name: a.alert.name.to_string(),
        scope: a.alert.scope.clone(),
        severity: a.alert.severity.as_str().to_string(),
        summary: a.alert.summary.clone(),
        fired_at_ms: a.fired_at_ms,
        resolved_at_ms,
    }
}

impl Recorder {
    /// The open incident left by the last run, and its alerts still firing.
    pub async fn load(store: &dyn Store) -> (Self, Vec<Active>) {
        match store.open_incident_now().await {
            Ok(Some(inc)) => {
                let active = inc
                    .alerts
                    .iter()
                    .filter(|a| a.resolved_at_ms.is_none())
                    .map(|a| Active {
                        alert: Alert {
                            name: static_name(&a.name),
                            scope: a.scope.clone(),
                            severity: severity(&a.severity),
                            summary: a.summary.clone(),
                            began_at_ms: inc.started_at_ms,
                            slo_bp: inc.slo_bp,
                            burns: None,
                            affected: Vec::new(),
                        },
                        fired_at_ms: a.fired_at_ms,
                    })
                    .collect();
                (Self { open: Some(inc.id) }, active)
            }
            Ok(None) => (Self::default(), Vec::new()),
            Err(e) => {
                tracing::error!(target: "switchyard::alerts", error = %e, "cannot read the open incident");
                (Self::default(), Vec::new())
            }
        }
    }

    /// Writes a transition down; returns the incident it belongs to.
    pub async fn record(&mut self, store: &dyn Store, t: &Transition) -> Option<i64> {
        let (a, resolved_at) = match t {
            Transition::Fired(a) | Transition::Escalated(a) => (a, None),
            Transition::Resolved { active, at_ms } => (active, Some(*at_ms)),
        };
        let alert = row(a, resolved_at);
        let result = match self.open {
            Some(id) => store
                .put_incident_alert(id, &alert, a.alert.slo_bp, a.alert.began_at_ms)
                .await
                .map(|()| id),
            None if resolved_at.is_none() => {
                let opened = store
                    .open_incident(&NewIncident {
                        started_at_ms: a.alert.began_at_ms,
                        detected_at_ms: a.fired_at_ms,
                        title: a.alert.summary.clone(),
                        slo_bp: a.alert.slo_bp,
                        first_alert: alert,
                    })
                    .await;
                if let Ok(id) = opened {
                    tracing::warn!(target: "switchyard::alerts", incident = id, "incident opened");
                    self.open = Some(id);
                }
                opened
            }
            // Resolved with no incident open: its opening failed to be written.
            None => return None,
        };
        match result {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(target: "switchyard::alerts", error = %e, alert = a.alert.name,
                    scope = %a.alert.scope, "cannot record the alert in the incident log");
                self.open
            }
        }
    }

    /// No alert is firing any more: closes the open incident with its impact.
    pub async fn close(&mut self, store: &dyn Store, now_ms: i64) {
        let Some(id) = self.open else {
            return;
        };
        let closed = async {
            let Some(mut inc) = store.get_incident(id).await? else {
                return Ok(None);
            };
            inc.ended_at_ms = Some(now_ms);
            let impact = measure(store, &inc, now_ms).await?;
            store.close_incident(id, now_ms, &impact).await?;
            Ok::<_, switchyard_metering::StoreError>(Some(impact))
        }
        .await;
        match closed {
            Ok(impact) => {
                self.open = None;
                if let Some(i) = impact {
                    tracing::warn!(target: "switchyard::alerts", incident = id,
                        requests_failed = i.requests_failed, bad_minutes = i.bad_minutes,
                        budget_spent_bp = i.budget_spent_bp, tenants_affected = i.tenants_affected,
                        "incident closed");
                }
            }
            // Retried on the next evaluation.
            Err(e) => {
                tracing::error!(target: "switchyard::alerts", incident = id, error = %e, "cannot close the incident")
            }
        }
    }
}
