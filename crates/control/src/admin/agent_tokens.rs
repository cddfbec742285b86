//! `/admin/v1/agent-tokens`: per-agent credentials for the registration API. Create (the
//! secret is in that one response only), list, and revoke: a revoked token is refused by every
//! replica on its next request, and the workers it registered leave the fleet at once.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use switchyard_metering::directory::unix_ms;
use switchyard_metering::keys::{display_prefix, hash_secret};
use switchyard_metering::store::{AgentScope, AgentToken};

use super::extract::{Admin, AdminJson, Id};
use super::{format_rfc3339, invalid, list_json, store_error, List};
use crate::fleet_api::AGENT_LABEL;
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

const MAX_NAME_LEN: usize = 100;
const NO_STORE: [(header::HeaderName, &str); 1] = [(header::CACHE_CONTROL, "no-store")];
/// Agent secrets look unlike API keys, so a leaked one is recognised for what it is.
const SECRET_PREFIX: &str = "sy-agent-";

#[derive(Serialize)]
pub struct AgentTokenView {
    id: String,
    name: String,
    prefix: String,
    status: &'static str,
    scope: AgentScope,
    created_at: String,
    revoked_at: Option<String>,
}

impl AgentTokenView {
    fn of(t: &AgentToken) -> Self {
        Self {
            id: t.id.clone(),
            name: t.name.clone(),
            prefix: t.prefix.clone(),
            status: if t.revoked_at_ms.is_some() {
                "revoked"
            } else {
                "active"
            },
            scope: t.scope.clone(),
            created_at: format_rfc3339(t.created_at_ms),
            revoked_at: t.revoked_at_ms.map(format_rfc3339),
        }
    }
}

#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    token: AgentTokenView,
    secret: String,
    warning: &'static str,
}

#[derive(Serialize)]
pub struct Revoked {
    #[serde(flatten)]
    token: AgentTokenView,
    /// The workers it had registered, now out of the fleet.
    workers_removed: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentToken {
    name: String,
    #[serde(flatten)]
    scope: AgentScope,
}

fn check_scope(scope: &AgentScope) -> Result<(), GatewayError> {
    for (field, values) in [
        ("providers", &scope.providers),
        ("models", &scope.models),
        ("regions", &scope.regions),
    ] {
        if values.iter().any(|v| v.trim().is_empty()) {
            return Err(invalid(
                field,
                format!("'{field}' must not hold empty names."),
            ));
        }
    }
    if let Some(max) = scope.max_price_per_hour {
        if !max.is_finite() || max < 0.0 {
            return Err(invalid(
                "max_price_per_hour",
                "'max_price_per_hour' must be a price of 0 or more.",
            ));
        }
    }
    Ok(())
}

pub async fn create(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    AdminJson(body): AdminJson<CreateAgentToken>,
) -> Result<Response, GatewayError> {
    let name = body.name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(invalid(
            "name",
            format!("An agent token needs a name of 1 to {MAX_NAME_LEN} characters."),
        ));
    }
    check_scope(&body.scope)?;
    let secret = format!(
        "{SECRET_PREFIX}{}",
        switchyard_metering::keys::generate_secret()
            .trim_start_matches(switchyard_metering::keys::SECRET_PREFIX)
    );
    let token = AgentToken {
        id: format!("agt_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        name,
        hash: hash_secret(&secret),
        prefix: display_prefix(&secret),
        scope: body.scope,
        created_at_ms: unix_ms(),
        revoked_at_ms: None,
    };
    state
        .directory
        .store()
        .create_agent_token(&token)
        .await
        .map_err(store_error)?;
    tracing::info!(target: "switchyard::admin", agent_token = %token.id, name = %token.name, "agent token created");
    let body = Created {
        token: AgentTokenView::of(&token),
        secret,
        warning: "Store this secret now: it is not kept and will not be shown again.",
    };
    Ok((StatusCode::CREATED, NO_STORE, Json(body)).into_response())
}

pub async fn list(
    _: Admin,
    State(state): State<Arc<ControlState>>,
) -> Result<Json<List<AgentTokenView>>, GatewayError> {
    let tokens = state
        .directory
        .store()
        .agent_tokens()
        .await
        .map_err(store_error)?;
    Ok(list_json(tokens.iter().map(AgentTokenView::of).collect()))
}

/// Revokes the token, then takes out of the fleet every worker it registered (as far as this
/// replica's registry, reconciled from the store first, knows them). A registration racing
/// the revocation through another replica cannot renew its lease: it leaves when that runs
/// out.
pub async fn revoke(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    Id(id): Id,
) -> Result<Json<Revoked>, GatewayError> {
    let token = state
        .directory
        .store()
        .revoke_agent_token(&id, unix_ms())
        .await
        .map_err(store_error)?
        .ok_or_else(|| GatewayError::NotFound(format!("Agent token '{id}' does not exist.")))?;
    if let Err(e) = state.fleet_sync.reconcile().await {
        tracing::warn!(error = %e, "cannot read the fleet before removing a revoked token's workers; removing those known here");
    }
    let mut workers_removed = Vec::new();
    for worker in state.fleet.workers() {
        if worker.labels.get(AGENT_LABEL) == Some(&token.id) {
            match state.fleet_sync.remove(&worker.spec.name).await {
                Ok(_) => workers_removed.push(worker.spec.name.clone()),
                Err(e) => {
                    tracing::warn!(worker = %worker.spec.name, error = %e, "cannot remove a revoked token's worker")
                }
            }
        }
    }
    tracing::warn!(target: "switchyard::admin", agent_token = %token.id, name = %token.name, workers = ?workers_removed, "agent token revoked; its workers left the fleet");
    Ok(Json(Revoked {
        token: AgentTokenView::of(&token),
        workers_removed,
    }))
}
