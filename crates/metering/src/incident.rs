//! Incidents as the ledger keeps them: opened when an alert fires (an error budget burning
//! fast, a failing synthetic probe, a model with no worker in rotation), joined by the alerts
//! that fire while it is open, and closed when the last of them resolves, with what it cost:
//! requests failed, bad minutes, the share of the month's error budget spent, tenants hit.
//!
//! The alerting itself (windows, burn rates, delivery) lives in the gateway; this is only the
//! record, so that a post-mortem can be written from it after restarts.

use serde::{Deserialize, Serialize};

use crate::sli::SliCounts;

/// One alert's part in an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentAlert {
    /// `slo_burn_rate`, `probe_failed`, `model_unavailable`.
    pub name: String,
    /// `all`, `tier:pro`, `model:sim-small`, `worker:gpu-3`...
    pub scope: String,
    /// `page` or `ticket`: the highest it reached.
    pub severity: String,
    pub summary: String,
    pub fired_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
}

/// What an incident cost, computed from the ledger when it closes (and on demand while open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impact {
    /// Requests in scope during the incident.
    pub requests: u64,
    /// Of which the client got a 5xx (or a stream broken after its 200).
    pub requests_failed: u64,
    /// Minutes in scope with a 5xx or a first token of 5 s or more.
    pub bad_minutes: u64,
    /// Share of the month's error budget those minutes spent, in bp of the budget.
    pub budget_spent_bp: u64,
    /// Distinct tenants with at least one failed request in scope.
    pub tenants_affected: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: i64,
    /// When the trouble began, as far as the alert can tell (its long window's first bad
    /// request, or the failed probe), not when it was detected.
    pub started_at_ms: i64,
    /// When the first alert fired.
    pub detected_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    /// Every scope its alerts covered, e.g. `["all", "model:sim-small"]`.
    pub scopes: Vec<String>,
    /// The highest severity among its alerts.
    pub severity: String,
    pub title: String,
    /// The SLO the budget figures are against, in bp (the strictest among its alerts).
    pub slo_bp: u32,
    pub alerts: Vec<IncidentAlert>,
    /// Set when it closes.
    pub impact: Option<Impact>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
    pub started_at_ms: i64,
    pub detected_at_ms: i64,
    pub title: String,
    pub slo_bp: u32,
    pub first_alert: IncidentAlert,
}

/// Which traffic an incident's impact is measured over: requests matching any of these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImpactScope {
    /// Everything (a scope of `all`): the other fields are then ignored.
    pub all: bool,
    pub tiers: Vec<String>,
    pub models: Vec<String>,
    pub workers: Vec<String>,
    pub regions: Vec<String>,
}

impl ImpactScope {
    /// From scope strings like `tier:pro`; unknown kinds are ignored.
    pub fn from_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Self {
        let mut s = Self::default();
        for scope in scopes {
            match scope.split_once(':') {
                None if scope == "all" => s.all = true,
                Some(("tier", v)) => s.tiers.push(v.to_string()),
                Some(("model", v)) => s.models.push(v.to_string()),
                Some(("worker", v)) => s.workers.push(v.to_string()),
                Some(("region", v)) => s.regions.push(v.to_string()),
                _ => {}
            }
        }
        s
    }
}

/// One (tier, model)'s counts over a window, for burn rates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopedCounts {
    pub tenant_id: String,
    /// The tenant's tier ('' for a tenant the store does not know).
    pub tier: String,
    pub model: String,
    /// The serving worker's region and provider ('' for requests refused before any worker).
    pub region: String,
    pub provider: String,
    pub counts: SliCounts,
}
