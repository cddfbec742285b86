//! `/admin/v1/incidents`: the incidents the alert evaluator opened (see
//! [`crate::alerting`]), with their impact: stored when they closed, measured from the ledger
//! up to now while they are open. `?month=YYYY-MM` keeps those overlapping the month.
//! `/admin/v1/incidents/{id}/postmortem` is the incident as a Markdown post-mortem template.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use switchyard_metering::directory::unix_ms;
use switchyard_metering::incident::{Impact, Incident};
use switchyard_slo::availability::format_bp_percent;

use super::extract::{Admin, Id, Params};
use super::{format_rfc3339, invalid, store_error};
use crate::alerting::impact::{format_budget_bp, measure};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

/// An incident as the admin API shows it, with its impact.
#[derive(Serialize)]
struct IncidentView<'a> {
    object: &'static str,
    id: i64,
    status: &'static str,
    title: &'a str,
    severity: &'a str,
    scopes: &'a [String],
    started_at: String,
    detected_at: String,
    ended_at: Option<String>,
    slo: String,
    requests: u64,
    requests_failed: u64,
    bad_minutes: u64,
    budget_spent_bp: u64,
    budget_spent: String,
    tenants_affected: u64,
    alerts: Vec<AlertView<'a>>,
}

#[derive(Serialize)]
struct AlertView<'a> {
    name: &'a str,
    scope: &'a str,
    severity: &'a str,
    summary: &'a str,
    fired_at: String,
    resolved_at: Option<String>,
}

fn incident_json(inc: &Incident, impact: &Impact) -> Value {
    let alerts = inc
        .alerts
        .iter()
        .map(|a| AlertView {
            name: &a.name,
            scope: &a.scope,
            severity: &a.severity,
            summary: &a.summary,
            fired_at: format_rfc3339(a.fired_at_ms),
            resolved_at: a.resolved_at_ms.map(format_rfc3339),
        })
        .collect();
    json!(IncidentView {
        object: "incident",
        id: inc.id,
        status: if inc.ended_at_ms.is_some() {
            "resolved"
        } else {
            "open"
        },
        title: &inc.title,
        severity: &inc.severity,
        scopes: &inc.scopes,
        started_at: format_rfc3339(inc.started_at_ms),
        detected_at: format_rfc3339(inc.detected_at_ms),
        ended_at: inc.ended_at_ms.map(format_rfc3339),
        slo: format_bp_percent(u64::from(inc.slo_bp)),
        requests: impact.requests,
        requests_failed: impact.requests_failed,
        bad_minutes: impact.bad_minutes,
        budget_spent_bp: impact.budget_spent_bp,
        budget_spent: format_budget_bp(impact.budget_spent_bp),
        tenants_affected: impact.tenants_affected,
        alerts,
    })
}

/// The stored impact of a closed incident; an open one's, measured now.
async fn impact_of(state: &ControlState, inc: &Incident) -> Result<Impact, GatewayError> {
    match inc.impact {
        Some(i) => Ok(i),
        None => measure(&**state.directory.store(), inc, unix_ms())
            .await
            .map_err(store_error),
    }
}

async fn get_incident(state: &ControlState, id: &str) -> Result<Incident, GatewayError> {
    let n: i64 = id
        .parse()
        .map_err(|_| invalid("id", format!("'{id}' is not an incident id.")))?;
    state
        .directory
        .store()
        .get_incident(n)
        .await
        .map_err(store_error)?
        .ok_or_else(|| GatewayError::NotFound(format!("Not found: incident {n}.")))
}

/// `GET /admin/v1/incidents?month=YYYY-MM`: newest first.
pub async fn list(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    params: Params,
) -> Result<Json<super::List<Value>>, GatewayError> {
    let (from, to) = super::month_filter(&params)?;
    let incidents = state
        .directory
        .store()
        .list_incidents(from, to)
        .await
        .map_err(store_error)?;
    let mut data = Vec::with_capacity(incidents.len());
    for inc in &incidents {
        data.push(incident_json(inc, &impact_of(&state, inc).await?));
    }
    Ok(super::list_json(data))
}

/// `GET /admin/v1/incidents/{id}`.
pub async fn show(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    Id(id): Id,
) -> Result<Json<Value>, GatewayError> {
    let inc = get_incident(&state, &id).await?;
    Ok(Json(incident_json(&inc, &impact_of(&state, &inc).await?)))
}

/// `GET /admin/v1/incidents/{id}/postmortem`: `text/markdown`.
pub async fn postmortem(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    Id(id): Id,
) -> Result<Response, GatewayError> {
    let inc = get_incident(&state, &id).await?;
    let impact = impact_of(&state, &inc).await?;
    let md = crate::alerting::postmortem::render(&inc, &impact, unix_ms());
    Ok(([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], md).into_response())
}
