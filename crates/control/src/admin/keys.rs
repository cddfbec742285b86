//! `/admin/v1/keys`: create (the secret is in that one response and nowhere else), list,
//! show, rotate and revoke. Only the SHA-256 of a secret is stored; listings never carry a
//! secret or a hash.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use switchyard_metering::directory::unix_ms;
use switchyard_metering::keys::{display_prefix, generate_secret, hash_secret, new_key_id};
use switchyard_metering::{ApiKey, LimitOverrides, Scopes, StoreError};

use super::extract::{Admin, AdminJson, Id, OptionalJson, Params};
use super::tenants::{check_overrides, get_tenant};
use super::{apply, format_rfc3339, invalid, parse_rfc3339, store_error};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

const ENDPOINTS: [&str; 3] = ["chat", "completions", "models"];
const MAX_NAME_LEN: usize = 100;
/// Responses that carry a secret must not be kept by any cache on the way.
const NO_STORE: [(header::HeaderName, &str); 1] = [(header::CACHE_CONTROL, "no-store")];

fn status(key: &ApiKey, now_ms: i64) -> &'static str {
    if key.revoked_at.is_some() {
        "revoked"
    } else if key.expires_at.is_some_and(|t| t <= now_ms) {
        "expired"
    } else {
        "active"
    }
}

/// A key as the admin API shows it: no secret, no hash.
#[derive(Serialize)]
struct KeyView<'a> {
    id: &'a str,
    tenant: &'a str,
    name: &'a str,
    prefix: &'a str,
    status: &'static str,
    scopes: &'a Scopes,
    limits: &'a LimitOverrides,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
}

impl<'a> KeyView<'a> {
    fn of(key: &'a ApiKey) -> Self {
        Self {
            id: &key.id,
            tenant: &key.tenant_id,
            name: &key.name,
            prefix: &key.prefix,
            status: status(key, unix_ms()),
            scopes: &key.scopes,
            limits: &key.limits,
            created_at: format_rfc3339(key.created_at),
            expires_at: key.expires_at.map(format_rfc3339),
            revoked_at: key.revoked_at.map(format_rfc3339),
        }
    }
}

/// A new key's one showing: the key, its secret, and (after a rotation) the key it replaced.
#[derive(Serialize)]
struct NewKeyView<'a> {
    #[serde(flatten)]
    key: KeyView<'a>,
    secret: &'a str,
    warning: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotated_from: Option<&'a str>,
}

fn key_json(key: &ApiKey) -> Value {
    json!(KeyView::of(key))
}

/// `expires_at` as unix seconds or an RFC 3339 string → unix ms, in the future.
fn parse_expiry(v: &Value, now_ms: i64) -> Result<i64, GatewayError> {
    let ms = match v {
        Value::Number(n) => n
            .as_i64()
            .and_then(|s| s.checked_mul(1000))
            .filter(|ms| *ms > 0),
        Value::String(s) => parse_rfc3339(s),
        _ => None,
    }
    .ok_or_else(|| {
        invalid(
            "expires_at",
            "Invalid 'expires_at': give unix seconds or an RFC 3339 time like 2026-12-31T23:59:59Z.",
        )
    })?;
    if ms <= now_ms {
        return Err(invalid(
            "expires_at",
            format!(
                "Invalid 'expires_at': {} is in the past.",
                format_rfc3339(ms)
            ),
        ));
    }
    Ok(ms)
}

fn check_scopes(scopes: &Scopes) -> Result<(), GatewayError> {
    if let Some(bad) = scopes
        .endpoints
        .iter()
        .find(|e| !ENDPOINTS.contains(&e.as_str()))
    {
        return Err(invalid(
            "scopes.endpoints",
            format!(
                "Unknown endpoint scope '{bad}'; expected any of: {}.",
                ENDPOINTS.join(", ")
            ),
        ));
    }
    if scopes.models.iter().any(|m| m.trim().is_empty()) {
        return Err(invalid(
            "scopes.models",
            "Model names in 'scopes.models' must not be empty.",
        ));
    }
    Ok(())
}

/// A key's limits may only tighten the tenant's. Prices are the tenant's: a per-key price
/// would make invoices (per tenant, at the tenant's prices) disagree with the ledger.
fn check_key_limits(limits: &LimitOverrides) -> Result<(), GatewayError> {
    check_overrides(limits, "limits")?;
    if limits.price_input_per_million.is_some() || limits.price_output_per_million.is_some() {
        return Err(invalid(
            "limits",
            "Prices are set per tenant (PATCH /admin/v1/tenants/{id} overrides), not per key.",
        ));
    }
    Ok(())
}

/// Stores a new key and returns it with its secret, which exists nowhere else afterwards.
async fn insert_key(
    state: &ControlState,
    template: ApiKey,
) -> Result<(ApiKey, String), GatewayError> {
    let secret = generate_secret();
    let key = ApiKey {
        id: new_key_id(),
        prefix: display_prefix(&secret),
        hash: hash_secret(&secret),
        created_at: unix_ms(),
        revoked_at: None,
        ..template
    };
    state
        .directory
        .store()
        .create_key(&key)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => {
                GatewayError::NotFound(format!("Tenant '{}' does not exist.", key.tenant_id))
            }
            e => store_error(e),
        })?;
    Ok((key, secret))
}

fn with_secret(key: &ApiKey, secret: &str, rotated_from: Option<&str>) -> Value {
    json!(NewKeyView {
        key: KeyView::of(key),
        secret,
        warning: "Store this secret now: it is not kept and will not be shown again.",
        rotated_from,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    tenant: String,
    name: String,
    #[serde(default)]
    scopes: Scopes,
    #[serde(default)]
    expires_at: Option<Value>,
    #[serde(default)]
    limits: LimitOverrides,
}

pub async fn create(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    AdminJson(body): AdminJson<CreateKey>,
) -> Result<Response, GatewayError> {
    let name = body.name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(invalid(
            "name",
            format!("A key needs a name of 1 to {MAX_NAME_LEN} characters."),
        ));
    }
    check_scopes(&body.scopes)?;
    check_key_limits(&body.limits)?;
    let now = unix_ms();
    let expires_at = match &body.expires_at {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_expiry(v, now)?),
    };
    get_tenant(&state, &body.tenant).await?;
    let template = ApiKey {
        id: String::new(),
        tenant_id: body.tenant,
        name,
        prefix: String::new(),
        hash: [0; 32],
        scopes: body.scopes,
        expires_at,
        revoked_at: None,
        created_at: now,
        limits: body.limits,
    };
    let (key, secret) = insert_key(&state, template).await?;
    apply(&state).await?;
    tracing::info!(target: "switchyard::admin", key = %key.id, tenant = %key.tenant_id, "key created");
    Ok((
        StatusCode::CREATED,
        NO_STORE,
        Json(with_secret(&key, &secret, None)),
    )
        .into_response())
}

pub async fn list(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    params: Params,
) -> Result<Json<super::List<Value>>, GatewayError> {
    params.only(&["tenant"])?;
    let tenant = params.get("tenant");
    if let Some(t) = tenant {
        get_tenant(&state, t).await?;
    }
    let keys = state
        .directory
        .store()
        .list_keys(tenant)
        .await
        .map_err(store_error)?;
    let data: Vec<Value> = keys.iter().map(key_json).collect();
    Ok(super::list_json(data))
}

async fn get_key(state: &ControlState, id: &str) -> Result<ApiKey, GatewayError> {
    state
        .directory
        .store()
        .get_key(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| GatewayError::NotFound(format!("Key '{id}' does not exist.")))
}

pub async fn show(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    Id(id): Id,
) -> Result<Json<Value>, GatewayError> {
    Ok(Json(key_json(&get_key(&state, &id).await?)))
}

/// Optional body of a rotation: the new key's expiry (the old one's is not carried over).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    #[serde(default)]
    expires_at: Option<Value>,
}

/// A new key with the old one's tenant, name, scopes and limits; the old key is revoked in
/// the same reload, so there is no moment when neither or an unrevoked old one works longer
/// than the call.
pub async fn rotate(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    Id(id): Id,
    OptionalJson(body): OptionalJson<Rotate>,
) -> Result<Response, GatewayError> {
    let old = get_key(&state, &id).await?;
    if old.revoked_at.is_some() {
        return Err(GatewayError::Conflict(format!(
            "Key '{id}' is revoked; create a new key instead."
        )));
    }
    let now = unix_ms();
    let expires_at = match &body.expires_at {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_expiry(v, now)?),
    };
    let template = ApiKey {
        expires_at,
        ..old.clone()
    };
    let (key, secret) = insert_key(&state, template).await?;
    let store = state.directory.store();
    if let Err(e) = store.revoke_key(&old.id, now).await {
        // Without the old key revoked, the rotation did not happen: take the new key back
        // too, since its secret is never going to reach anyone.
        let _ = store.revoke_key(&key.id, now).await;
        return Err(store_error(e));
    }
    apply(&state).await?;
    tracing::info!(target: "switchyard::admin", old = %old.id, new = %key.id, tenant = %key.tenant_id, "key rotated");
    let body = with_secret(&key, &secret, Some(&old.id));
    Ok((StatusCode::CREATED, NO_STORE, Json(body)).into_response())
}

/// Revoking twice is fine and keeps the first revocation time.
pub async fn revoke(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    Id(id): Id,
) -> Result<Json<Value>, GatewayError> {
    state
        .directory
        .store()
        .revoke_key(&id, unix_ms())
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => {
                GatewayError::NotFound(format!("Key '{id}' does not exist."))
            }
            e => store_error(e),
        })?;
    apply(&state).await?;
    tracing::info!(target: "switchyard::admin", key = %id, "key revoked");
    Ok(Json(key_json(&get_key(&state, &id).await?)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn expiry_takes_unix_seconds_or_rfc3339_in_the_future() {
        let now = 1_795_852_800_000;
        assert_eq!(
            parse_expiry(&json!(1_795_852_860), now).unwrap(),
            now + 60_000
        );
        assert_eq!(
            parse_expiry(&json!("2026-11-28T08:01:00Z"), now).unwrap(),
            now + 60_000
        );
        for bad in [
            json!(1_795_852_800),
            json!("tomorrow"),
            json!(true),
            json!(-5),
        ] {
            let err = parse_expiry(&bad, now).unwrap_err();
            assert_eq!(
                err.body().error.param.as_deref(),
                Some("expires_at"),
                "{bad}"
            );
        }
    }

    #[test]
    fn listings_never_carry_a_secret_or_a_hash() {
        let key = ApiKey {
            id: "key_1".into(),
            tenant_id: "acme".into(),
            name: "ci".into(),
            prefix: "sk-sy-abcd".into(),
            hash: [7; 32],
            scopes: Scopes::default(),
            expires_at: None,
            revoked_at: None,
            created_at: 0,
            limits: LimitOverrides::default(),
        };
        let v = key_json(&key);
        assert!(v.get("hash").is_none() && v.get("secret").is_none());
        assert_eq!(v["status"], "active");
    }
}
