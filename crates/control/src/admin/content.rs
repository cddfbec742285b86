//! `/admin/v1/content`: a tenant's opt-in content logs, read (`GET`) and erased (`DELETE`,
//! the tenant's right to have their data removed). Records are stored redacted; this API
//! returns them as stored.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::extract::{Admin, Params};
use super::tenants::valid_tenant_id;
use super::{format_rfc3339, invalid, store_error};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// The required `tenant` parameter. Not checked against the tenant list: erasing must work
/// for any id that ever had records.
fn tenant(params: &Params) -> Result<&str, GatewayError> {
    let t = params
        .get("tenant")
        .ok_or_else(|| invalid("tenant", "The 'tenant' parameter is required."))?;
    if !valid_tenant_id(t) {
        return Err(invalid("tenant", format!("Invalid tenant id '{t}'.")));
    }
    Ok(t)
}

pub async fn list(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    params: Params,
) -> Result<Json<Value>, GatewayError> {
    params.only(&["tenant", "request_id", "limit"])?;
    let tenant = tenant(&params)?;
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| invalid("limit", format!("'limit' must be 1 to {MAX_LIMIT}.")))?,
    };
    let records = state
        .directory
        .store()
        .content_records(tenant, params.get("request_id"), limit)
        .await
        .map_err(store_error)?;
    let data: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "request_id": r.request_id,
                "tenant": r.tenant_id,
                "model": r.model,
                "endpoint": r.endpoint,
                "stream": r.stream,
                "status": r.status,
                "created_at": format_rfc3339(r.created_at_ms),
                "created_at_ms": r.created_at_ms,
                "expires_at": format_rfc3339(r.expires_at_ms),
                "expires_at_ms": r.expires_at_ms,
                "prompt": r.prompt,
                "prompt_truncated": r.prompt_truncated,
                "completion": r.completion,
                "completion_truncated": r.completion_truncated,
            })
        })
        .collect();
    Ok(super::list_json(data))
}

pub async fn erase(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    params: Params,
) -> Result<Json<Value>, GatewayError> {
    params.only(&["tenant"])?;
    let tenant = tenant(&params)?;
    let deleted = state
        .directory
        .store()
        .erase_content(tenant)
        .await
        .map_err(store_error)?;
    tracing::info!(target: "switchyard::admin", tenant, deleted, "content logs erased");
    Ok(Json(json!({ "tenant": tenant, "deleted": deleted })))
}
