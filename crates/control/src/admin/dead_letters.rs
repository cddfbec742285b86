//! `GET /admin/v1/ledger/dead-letters[?limit=100]`: ledger records the store refused, newest
//! first, each kept whole (`record`, as JSON) with the store's reason. Invoices should not go
//! out while this list has something new in it.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use switchyard_metering::DeadLetter;

use super::extract::{Admin, Params};
use super::List;
use super::{format_rfc3339, invalid, store_error};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

pub async fn list(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    params: Params,
) -> Result<Json<List<DeadLetterView>>, GatewayError> {
    params.only(&["limit"])?;
    let limit = match params.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| invalid("limit", "Invalid 'limit': give a number from 1 to 10000."))?,
    };
    let letters = state
        .directory
        .store()
        .dead_letters(limit)
        .await
        .map_err(store_error)?;
    Ok(super::list_json(
        letters.into_iter().map(DeadLetterView::of).collect(),
    ))
}

/// One refused record: what it was, when and why the store refused it.
#[derive(Debug, Serialize)]
pub struct DeadLetterView {
    request_id: String,
    kind: String,
    at: String,
    error: String,
    /// The record as JSON; as a string if it was stored as something else.
    record: Value,
}

impl DeadLetterView {
    fn of(l: DeadLetter) -> Self {
        let record = serde_json::from_str::<Value>(&l.record).unwrap_or(Value::String(l.record));
        Self {
            request_id: l.request_id,
            kind: l.kind,
            at: format_rfc3339(l.at_ms),
            error: l.error,
            record,
        }
    }
}
