//! `/admin/v1/content`: a tenant's opt-in content logs, read (`GET`) and erased (`DELETE`,
//! the tenant's right to have their data removed). Records are stored redacted; this API
//! returns them as stored.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use switchyard_metering::content::ContentRecord;

use super::extract::{Admin, Params};
use super::tenants::valid_tenant_id;
use super::List;
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
) -> Result<Json<List<ContentView>>, GatewayError> {
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
    Ok(super::list_json(
        records.into_iter().map(ContentView::of).collect(),
    ))
}

/// One logged request as stored (redacted), with its times as RFC 3339 and unix ms.
#[derive(Debug, Serialize)]
pub struct ContentView {
    request_id: String,
    tenant: String,
    model: String,
    endpoint: String,
    stream: bool,
    status: String,
    created_at: String,
    created_at_ms: i64,
    expires_at: String,
    expires_at_ms: i64,
    prompt: String,
    prompt_truncated: bool,
    completion: String,
    completion_truncated: bool,
}

impl ContentView {
    fn of(r: ContentRecord) -> Self {
        Self {
            request_id: r.request_id,
            tenant: r.tenant_id,
            model: r.model,
            endpoint: r.endpoint,
            stream: r.stream,
            status: r.status,
            created_at: format_rfc3339(r.created_at_ms),
            created_at_ms: r.created_at_ms,
            expires_at: format_rfc3339(r.expires_at_ms),
            expires_at_ms: r.expires_at_ms,
            prompt: r.prompt,
            prompt_truncated: r.prompt_truncated,
            completion: r.completion,
            completion_truncated: r.completion_truncated,
        }
    }
}

/// A tenant's content logs erased: how many records went.
#[derive(Debug, Serialize)]
pub struct ErasedView {
    tenant: String,
    deleted: u64,
}

pub async fn erase(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    params: Params,
) -> Result<Json<ErasedView>, GatewayError> {
    params.only(&["tenant"])?;
    let tenant = tenant(&params)?;
    let deleted = state
        .directory
        .store()
        .erase_content(tenant)
        .await
        .map_err(store_error)?;
    tracing::info!(target: "switchyard::admin", tenant, deleted, "content logs erased");
    Ok(Json(ErasedView {
        tenant: tenant.to_string(),
        deleted,
    }))
}
