//! Incidents from alert transitions: the first alert to fire opens one, every alert firing
//! while it is open joins it (one outage, one incident, however many scopes it shows in),
//! and it closes when the last of them resolves, with its impact measured then. The store is
//! the record: after a restart the open incident and its firing alerts are taken over.
//!
//! A store failure is logged and does not stop the alert from going out: a page that could
//! not be written down must still wake someone.

use switchyard_metering::incident::{IncidentAlert, NewIncident};
use switchyard_metering::{Store, StoreError};

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
                let opened = match store
                    .open_incident(&NewIncident {
                        started_at_ms: a.alert.began_at_ms,
                        detected_at_ms: a.fired_at_ms,
                        title: a.alert.summary.clone(),
                        slo_bp: a.alert.slo_bp,
                        first_alert: alert.clone(),
                    })
                    .await
                {
                    // Another gateway sharing the store (or this one before a restart) opened
                    // the incident first: one outage is one incident, so the alert joins it.
                    Err(StoreError::Conflict(_)) => match store.open_incident_now().await {
                        Ok(Some(open)) => store
                            .put_incident_alert(
                                open.id,
                                &alert,
                                a.alert.slo_bp,
                                a.alert.began_at_ms,
                            )
                            .await
                            .map(|()| open.id),
                        Ok(None) => Err(StoreError::Conflict(
                            "an incident was open, and closed before this alert could join it"
                                .into(),
                        )),
                        Err(e) => Err(e),
                    },
                    other => other,
                };
                if let Ok(id) = opened {
                    tracing::warn!(target: "switchyard::alerts", incident = id, "incident opened or joined");
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use switchyard_metering::store::prelude::*;
    use switchyard_metering::store::sqlite::SqliteStore;
    use switchyard_slo::burn::Severity;

    use super::*;

    fn fired(scope: &str, at_ms: i64) -> Transition {
        Transition::Fired(Active {
            alert: Alert {
                name: super::super::alert::PROBE_FAILED,
                scope: scope.into(),
                severity: Severity::Page,
                summary: format!("probe of {scope} failed"),
                began_at_ms: at_ms,
                slo_bp: 9990,
                burns: None,
                affected: Vec::new(),
            },
            fired_at_ms: at_ms,
        })
    }

    #[tokio::test]
    async fn an_alert_seen_by_a_second_gateway_joins_the_open_incident() {
        let store = SqliteStore::in_memory().await.unwrap();
        // Two gateways on one store, neither knowing of an incident yet.
        let (mut first, _) = Recorder::load(&store).await;
        let (mut second, _) = Recorder::load(&store).await;
        let opened = first.record(&store, &fired("worker:a", 1_000)).await;
        let joined = second.record(&store, &fired("worker:b", 2_000)).await;
        assert!(opened.is_some());
        assert_eq!(joined, opened, "one outage, one incident");
        let incident = store.open_incident_now().await.unwrap().unwrap();
        let scopes: Vec<&str> = incident.alerts.iter().map(|a| a.scope.as_str()).collect();
        assert_eq!(scopes, ["worker:a", "worker:b"]);
        assert_eq!(store.list_incidents(None, None).await.unwrap().len(), 1);
    }
}
