//! Declared maintenance windows (`/admin/v1/maintenance`), which the SLA report excludes as
//! the addendum allows: announced 48 h ahead, at most 60 minutes a month. Windows are stored as
//! declared; those limits are applied by the report, which says what it could not exclude.
//!
//! A window is announced when it is created, by the gateway's clock: a client-given
//! `announced_at` is refused, the window goes out on the alert webhook and shows on `/status`
//! at once, and a window that has started can no longer be deleted (it was announced; taking
//! it back after the fact would rewrite which minutes the report excluded).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use switchyard_metering::maintenance::{Maintenance, MaintenanceScope, NewMaintenance};
use switchyard_metering::StoreError;
use switchyard_slo::exclusions::qualifies;

use super::extract::{Admin, AdminJson, Id, Params};
use super::{format_rfc3339, invalid, parse_rfc3339, store_error};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWindow {
    /// RFC 3339.
    start: String,
    end: String,
    /// `all` (default) or `tenant:<id>`.
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    note: String,
    /// Refused when given: the notice is the creation time, by the gateway's clock.
    #[serde(default)]
    announced_at: Option<Value>,
}

/// A maintenance window as the admin API, the status page and the webhook show it.
#[derive(Serialize)]
struct WindowView<'a> {
    id: i64,
    start: String,
    end: String,
    minutes: i64,
    scope: String,
    note: &'a str,
    announced_at: String,
    notice_ok: bool,
    created_at: String,
}

pub fn window_json(w: &Maintenance) -> Value {
    json!(WindowView {
        id: w.id,
        start: format_rfc3339(w.start_ms),
        end: format_rfc3339(w.end_ms),
        minutes: (w.end_ms - w.start_ms + 59_999) / 60_000,
        scope: w.scope.to_string(),
        note: &w.note,
        announced_at: format_rfc3339(w.created_at_ms),
        notice_ok: qualifies(w),
        created_at: format_rfc3339(w.created_at_ms),
    })
}

fn time(s: &str, param: &str) -> Result<i64, GatewayError> {
    parse_rfc3339(s).ok_or_else(|| {
        invalid(
            param,
            format!("'{param}' must be an RFC 3339 time (e.g. 2026-11-30T02:00:00Z), not '{s}'."),
        )
    })
}

/// `POST /admin/v1/maintenance` `{"start","end","scope","note"}`.
pub async fn create(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    AdminJson(body): AdminJson<CreateWindow>,
) -> Result<Response, GatewayError> {
    if body.announced_at.is_some() {
        return Err(invalid(
            "announced_at",
            "'announced_at' cannot be given: a window is announced when it is created, by the gateway's clock. Create windows at least 48 hours before they start.",
        ));
    }
    let start_ms = time(&body.start, "start")?;
    let end_ms = time(&body.end, "end")?;
    if end_ms <= start_ms {
        return Err(invalid("end", "'end' must be after 'start'."));
    }
    let scope_str = body.scope.as_deref().unwrap_or("all");
    let scope = MaintenanceScope::parse(scope_str).ok_or_else(|| {
        invalid(
            "scope",
            format!("'scope' is 'all' or 'tenant:<id>', not '{scope_str}'."),
        )
    })?;
    if let MaintenanceScope::Tenant(t) = &scope {
        super::tenants::get_tenant(&state, t).await?;
    }
    let window = state
        .directory
        .store()
        .add_maintenance(&NewMaintenance {
            start_ms,
            end_ms,
            scope,
            note: body.note,
            created_at_ms: state.clock.now_ms(),
        })
        .await
        .map_err(store_error)?;
    let json = window_json(&window);
    state.notifier.maintenance_announced(&json);
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

/// `GET /admin/v1/maintenance?month=YYYY-MM`: windows overlapping the month (default: all).
pub async fn list(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    params: Params,
) -> Result<Json<super::List<Value>>, GatewayError> {
    let (from, to) = super::month_filter(&params)?;
    let windows = state
        .directory
        .store()
        .list_maintenance(from, to)
        .await
        .map_err(store_error)?;
    let data: Vec<Value> = windows.iter().map(window_json).collect();
    Ok(super::list_json(data))
}

/// `DELETE /admin/v1/maintenance/{id}`.
pub async fn delete(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    Id(id): Id,
) -> Result<Json<DeletedView>, GatewayError> {
    let n: i64 = id
        .parse()
        .map_err(|_| invalid("id", format!("'{id}' is not a maintenance window id.")))?;
    state
        .directory
        .store()
        .delete_maintenance(n, state.clock.now_ms())
        .await
        .map_err(|e| match e {
            StoreError::Conflict(why) => GatewayError::Conflict(format!("Cannot delete: {why}.")),
            e => store_error(e),
        })?;
    Ok(Json(DeletedView {
        id: n,
        deleted: true,
    }))
}

/// A maintenance window deleted.
#[derive(Debug, Serialize)]
pub struct DeletedView {
    id: i64,
    deleted: bool,
}
