//! The admin API, under `/admin/v1` on the gateway's own listener: tenants, keys, credit,
//! usage reports, invoices and margins; maintenance windows and the monthly SLA report; the
//! fleet's workers, drained and undrained; tenants' opt-in content logs, read and erased.
//!
//! - Every route takes `Authorization: Bearer <admin token>`, compared as SHA-256 digests in
//!   constant time; a missing or wrong token is 401, and without a configured token the whole
//!   API is absent (404).
//! - Every change writes the store first, then reloads the directory (the in-memory view the
//!   request path reads), so it takes effect on the very next request: a revoked key is
//!   refused at once.
//! - Every error is a [`GatewayError`], in the same OpenAI shape as the inference API.
//! - Money goes out as `*_usd` decimal strings (six decimals) and `*_nanos` integers, summed
//!   from the ledger's integer nano-dollars, never through floating point.

mod agent_tokens;
mod billing;
mod content;
mod dates;
mod dead_letters;
pub(crate) mod extract;
mod fleet;
mod incidents;
mod keys;
mod maintenance;
mod probes;
pub(crate) mod render;
pub(crate) mod sla;
mod tenants;
mod usage;
mod usage_sums;

use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;
use switchyard_metering::StoreError;

use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

pub use dates::{format_rfc3339, month_range, parse_day, parse_month, parse_rfc3339, Month};

/// The admin routes, to be merged into the gateway's router before its state is set.
pub fn router() -> Router<Arc<ControlState>> {
    Router::new()
        .route(
            "/admin/v1/tenants",
            get(tenants::list).post(tenants::create),
        )
        .route(
            "/admin/v1/tenants/{id}",
            get(tenants::show).patch(tenants::update),
        )
        .route("/admin/v1/tenants/{id}/credit", post(tenants::credit))
        .route("/admin/v1/keys", get(keys::list).post(keys::create))
        .route("/admin/v1/keys/{id}", get(keys::show))
        .route("/admin/v1/keys/{id}/rotate", post(keys::rotate))
        .route("/admin/v1/keys/{id}/revoke", post(keys::revoke))
        .route("/admin/v1/usage", get(usage::summary))
        .route("/admin/v1/usage/records", get(usage::records))
        .route("/admin/v1/invoices/{tenant}", get(billing::invoice))
        .route("/admin/v1/margin", get(billing::margin))
        .route("/admin/v1/ledger/dead-letters", get(dead_letters::list))
        .route("/admin/v1/probes/minutes", post(probes::push))
        .route(
            "/admin/v1/maintenance",
            get(maintenance::list).post(maintenance::create),
        )
        .route("/admin/v1/maintenance/{id}", delete(maintenance::delete))
        .route("/admin/v1/sla", get(sla::report))
        .route("/admin/v1/incidents", get(incidents::list))
        .route("/admin/v1/incidents/{id}", get(incidents::show))
        .route(
            "/admin/v1/incidents/{id}/postmortem",
            get(incidents::postmortem),
        )
        .route(
            "/admin/v1/content",
            get(content::list).delete(content::erase),
        )
        .route(
            "/admin/v1/agent-tokens",
            get(agent_tokens::list).post(agent_tokens::create),
        )
        .route(
            "/admin/v1/agent-tokens/{id}/revoke",
            post(agent_tokens::revoke),
        )
        .route("/admin/v1/fleet", get(fleet::list))
        .route("/admin/v1/fleet/drain", post(fleet::drain))
        .route("/admin/v1/fleet/undrain", post(fleet::undrain))
}

/// A list response: `{"object": "list", "data": [...]}`, the OpenAI shape for lists.
#[derive(Debug, serde::Serialize)]
pub struct List<T> {
    object: &'static str,
    data: Vec<T>,
}

fn list_json<T: serde::Serialize>(data: Vec<T>) -> axum::Json<List<T>> {
    axum::Json(List {
        object: "list",
        data,
    })
}

/// The `?month=YYYY-MM` filter of a list (the only parameter it takes) as `[start, end)`.
fn month_filter(params: &extract::Params) -> Result<(Option<i64>, Option<i64>), GatewayError> {
    params.only(&["month"])?;
    month_range(params.get("month"), "month")
}

/// A store failure as the admin API reports it.
fn store_error(e: StoreError) -> GatewayError {
    match e {
        StoreError::NotFound(what) => GatewayError::NotFound(format!("Not found: {what}.")),
        StoreError::Conflict(what) => GatewayError::Conflict(format!("Already exists: {what}.")),
        StoreError::Invalid(message) => GatewayError::InvalidRequest {
            message,
            param: None,
        },
        StoreError::Database(message) | StoreError::Unavailable(message) => {
            tracing::error!(target: "switchyard::admin", error = %message, "state store failed");
            GatewayError::Internal(format!("state store: {message}"))
        }
    }
}

/// After a change is stored: rebuild the request path's view so it applies at once.
async fn apply(state: &ControlState) -> Result<(), GatewayError> {
    state.directory.reload().await.map_err(|e| {
        tracing::error!(target: "switchyard::admin", error = %e, "directory reload failed after an admin change");
        GatewayError::Internal(format!(
            "the change was saved, but the gateway could not reload it ({e}); it applies after the next successful reload"
        ))
    })
}

fn invalid(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param.to_string()),
    }
}
