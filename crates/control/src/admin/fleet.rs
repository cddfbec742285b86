//! `/admin/v1/fleet`: every worker, static and registered, with its state and why; and
//! draining a worker, a provider or a region (and undoing it) without dropping what they
//! are serving. Drains are recorded in the shared store, so they apply on every gateway on
//! it (see `fleet_sync`); the state shown is this gateway's (each checks health itself).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use switchyard_fleet::DrainTarget;

use super::extract::{Admin, AdminJson};
use super::invalid;
use super::List;
use crate::fleet_api::view::WorkerView;
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

pub async fn list(_: Admin, State(state): State<Arc<ControlState>>) -> Json<List<WorkerView>> {
    let mut workers = state.fleet.workers();
    workers.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    super::list_json(workers.iter().map(|w| WorkerView::of(w)).collect())
}

/// What a drain or undrain matched and changed; the target's kind is the key of its value
/// (`{"provider": "a", ...}`).
#[derive(Debug, Serialize)]
pub struct DrainedView {
    #[serde(flatten)]
    target: TargetView,
    draining: bool,
    matched: usize,
    changed: usize,
    workers: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum TargetView {
    Worker(String),
    Provider(String),
    Region(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainBody {
    worker: Option<String>,
    provider: Option<String>,
    region: Option<String>,
    /// Shown as the workers' reason; a default says who did it.
    reason: Option<String>,
}

impl DrainBody {
    fn target(self) -> Result<(DrainTarget, Option<String>), GatewayError> {
        let reason = self.reason;
        let target = match (self.worker, self.provider, self.region) {
            (Some(w), None, None) => DrainTarget::Worker(w),
            (None, Some(p), None) => DrainTarget::Provider(p),
            (None, None, Some(r)) => DrainTarget::Region(r),
            _ => {
                return Err(invalid(
                    "worker",
                    "Give exactly one of 'worker', 'provider' or 'region'.",
                ))
            }
        };
        Ok((target, reason))
    }
}

fn describe(target: &DrainTarget) -> (&'static str, &str) {
    match target {
        DrainTarget::Worker(n) => ("worker", n),
        DrainTarget::Provider(p) => ("provider", p),
        DrainTarget::Region(r) => ("region", r),
    }
}

impl TargetView {
    fn of(target: &DrainTarget) -> Self {
        match target {
            DrainTarget::Worker(n) => Self::Worker(n.clone()),
            DrainTarget::Provider(p) => Self::Provider(p.clone()),
            DrainTarget::Region(r) => Self::Region(r.clone()),
        }
    }
}

async fn apply(
    state: &ControlState,
    body: DrainBody,
    draining: bool,
) -> Result<Json<DrainedView>, GatewayError> {
    let (target, reason) = body.target()?;
    let (kind, value) = describe(&target);
    let mut matched: Vec<String> = state
        .fleet
        .workers()
        .iter()
        .filter(|w| target.matches(w))
        .map(|w| w.spec.name.clone())
        .collect();
    if let (true, DrainTarget::Worker(name)) = (matched.is_empty(), &target) {
        // Registered through another gateway a moment ago, and not reconciled here yet.
        if state.fleet_sync.known(name).await.is_some() {
            matched.push(name.clone());
        }
    }
    if matched.is_empty() {
        return Err(GatewayError::NotFound(format!(
            "No worker matches {kind} '{value}'."
        )));
    }
    let why = reason.unwrap_or_else(|| {
        if draining {
            format!("drained by admin ({kind} {value})")
        } else {
            format!("undrained by admin ({kind} {value})")
        }
    });
    let names: Vec<&str> = matched.iter().map(String::as_str).collect();
    let changed = state
        .fleet_sync
        .drain(&target, draining, &why, &names)
        .await;
    Ok(Json(DrainedView {
        target: TargetView::of(&target),
        draining,
        matched: matched.len(),
        changed,
        workers: matched,
    }))
}

/// Matching workers get no new requests; their streams finish. Idempotent: draining what is
/// already draining changes nothing (`changed` counts what did change).
pub async fn drain(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    AdminJson(body): AdminJson<DrainBody>,
) -> Result<Json<DrainedView>, GatewayError> {
    apply(&state, body, true).await
}

pub async fn undrain(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    AdminJson(body): AdminJson<DrainBody>,
) -> Result<Json<DrainedView>, GatewayError> {
    apply(&state, body, false).await
}
