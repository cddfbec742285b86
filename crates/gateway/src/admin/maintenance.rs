//! Declared maintenance windows (`/admin/v1/maintenance`), which the SLA report excludes as
//! the addendum allows: announced 48 h ahead, at most 60 minutes a month. Windows are stored as
//! declared; those limits are applied by the report, which says what it could not exclude.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_metering::directory::unix_ms;
use switchyard_metering::maintenance::{Maintenance, MaintenanceScope, NewMaintenance};
use switchyard_slo::exclusions::NOTICE_MS;

use super::extract::{Admin, AdminJson, Id, Params};
use super::{format_rfc3339, invalid, month_range, parse_rfc3339, store_error};
use crate::error::GatewayError;
use crate::state::AppState;

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
    /// When customers were told (RFC 3339); default: now.
    #[serde(default)]
    announced_at: Option<String>,
}

pub fn window_json(w: &Maintenance) -> Value {
    json!({
        "id": w.id,
        "start": format_rfc3339(w.start_ms),
        "end": format_rfc3339(w.end_ms),
        "minutes": (w.end_ms - w.start_ms + 59_999) / 60_000,
        "scope": w.scope.to_string(),
        "note": w.note,
        "announced_at": format_rfc3339(w.announced_at_ms),
        "notice_ok": w.announced_at_ms <= w.start_ms - NOTICE_MS,
        "created_at": format_rfc3339(w.created_at_ms),
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

/// `POST /admin/v1/maintenance` `{"start","end","scope","note","announced_at"}`.
pub async fn create(
    _: Admin,
    State(state): State<Arc<AppState>>,
    AdminJson(body): AdminJson<CreateWindow>,
) -> Result<Response, GatewayError> {
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
    let announced_at_ms = match &body.announced_at {
        Some(a) => time(a, "announced_at")?,
        None => unix_ms(),
    };
    let window = state
        .directory
        .store()
        .add_maintenance(&NewMaintenance {
            start_ms,
            end_ms,
            scope,
            note: body.note,
            announced_at_ms,
        })
        .await
        .map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(window_json(&window))).into_response())
}

/// `GET /admin/v1/maintenance?month=YYYY-MM`: windows overlapping the month (default: all).
pub async fn list(
    _: Admin,
    State(state): State<Arc<AppState>>,
    params: Params,
) -> Result<Json<Value>, GatewayError> {
    params.only(&["month"])?;
    let (from, to) = month_range(params.get("month"), "month")?;
    let windows = state
        .directory
        .store()
        .list_maintenance(from, to)
        .await
        .map_err(store_error)?;
    let data: Vec<Value> = windows.iter().map(window_json).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `DELETE /admin/v1/maintenance/{id}`.
pub async fn delete(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Id(id): Id,
) -> Result<Json<Value>, GatewayError> {
    let n: i64 = id
        .parse()
        .map_err(|_| invalid("id", format!("'{id}' is not a maintenance window id.")))?;
    state
        .directory
        .store()
        .delete_maintenance(n)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({"id": n, "deleted": true})))
}
