//! `/admin/v1/tenants`: create, list, show, change (tier, prepaid, overrides, content logging)
//! and credit.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_metering::content::ContentLogging;
use switchyard_metering::directory::{lock, unix_ms};
use switchyard_metering::money::Nanos;
use switchyard_metering::money::{valid_price, MAX_PRICE_USD, MAX_TIER_MAX_TOKENS};
use switchyard_metering::{LimitOverrides, Limits, Tenant};

use super::extract::{Admin, AdminJson, Id};
use super::render::{parse_usd, Usd};
use super::{apply, format_rfc3339, invalid, store_error};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

const MAX_NOTE_LEN: usize = 500;

/// `^[a-z0-9][a-z0-9-]{0,62}$`: safe in URLs, file names, metric-free logs and CSV.
pub fn valid_tenant_id(id: &str) -> bool {
    let b = id.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&b.len()) && ok(&b[0]) && b[1..].iter().all(|c| ok(c) || *c == b'-')
}

/// Limits an override may not set to something that makes no sense.
pub fn check_overrides(o: &LimitOverrides, param: &str) -> Result<(), GatewayError> {
    for (name, v) in [
        ("price_input_per_million", o.price_input_per_million),
        ("price_output_per_million", o.price_output_per_million),
    ] {
        if v.is_some_and(|p| !valid_price(p)) {
            return Err(invalid(
                param,
                format!("Invalid '{param}.{name}': prices must be numbers from 0 to {MAX_PRICE_USD} (USD per 1M tokens)."),
            ));
        }
    }
    if o.max_tokens.is_some_and(|m| m > MAX_TIER_MAX_TOKENS) {
        return Err(invalid(
            param,
            format!("Invalid '{param}.max_tokens': must be at most {MAX_TIER_MAX_TOKENS}."),
        ));
    }
    for (name, v) in [
        ("max_tokens", o.max_tokens.map(u64::from)),
        ("max_prompt_tokens", o.max_prompt_tokens.map(u64::from)),
        ("requests_per_minute", o.requests_per_minute.map(u64::from)),
        ("tokens_per_minute", o.tokens_per_minute),
        ("max_concurrent", o.max_concurrent.map(u64::from)),
    ] {
        if v == Some(0) {
            return Err(invalid(
                param,
                format!("Invalid '{param}.{name}': must be at least 1."),
            ));
        }
    }
    if let Some(models) = &o.models {
        if models.iter().any(|m| m.trim().is_empty()) {
            return Err(invalid(
                param,
                format!("Invalid '{param}.models': model names must not be empty."),
            ));
        }
    }
    Ok(())
}

fn check_tier(state: &ControlState, tier: &str) -> Result<(), GatewayError> {
    let tiers = state.directory.tiers();
    if tiers.contains_key(tier) {
        return Ok(());
    }
    Err(invalid(
        "tier",
        format!(
            "Unknown tier '{tier}'; the configured tiers are: {}.",
            tiers.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    ))
}

pub async fn get_tenant(state: &ControlState, id: &str) -> Result<Tenant, GatewayError> {
    state
        .directory
        .store()
        .get_tenant(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| GatewayError::NotFound(format!("Tenant '{id}' does not exist.")))
}

/// A tenant as stored, with its live figures: effective limits, prepaid balance, tokens used
/// this month. A tenant whose tier is no longer configured is `active: false` (its keys are
/// refused) and has no effective limits.
async fn tenant_json(state: &ControlState, tenant: &Tenant) -> Result<Value, GatewayError> {
    let live = match state.directory.tenant(&tenant.id) {
        Some(entry) => Live {
            active: true,
            limits: Some(entry.limits.clone()),
            balance: entry.balance.load(Ordering::Relaxed),
            credit_reserved: entry.credit_reserved.load(Ordering::Relaxed),
            month_tokens_used: Some(lock(&entry.state).month_used()),
        },
        None => Live {
            active: false,
            limits: None,
            balance: state
                .directory
                .store()
                .credit_balance(&tenant.id)
                .await
                .map_err(store_error)?,
            credit_reserved: 0,
            month_tokens_used: None,
        },
    };
    let view = TenantView {
        id: &tenant.id,
        tier: &tenant.tier,
        prepaid: tenant.prepaid,
        overrides: &tenant.overrides,
        content_logging: tenant.content_logging,
        created_at: format_rfc3339(tenant.created_at),
        active: live.active,
        limits: live.limits,
        balance_usd: Usd(live.balance),
        balance_nanos: live.balance,
        credit_reserved_usd: Usd(live.credit_reserved),
        credit_reserved_nanos: live.credit_reserved,
        month_tokens_used: live.month_tokens_used,
    };
    serde_json::to_value(view)
        .map_err(|e| GatewayError::Internal(format!("cannot render tenant: {e}")))
}

/// What the directory knows of a tenant now (nothing when its tier is gone).
struct Live {
    active: bool,
    limits: Option<Limits>,
    balance: Nanos,
    credit_reserved: Nanos,
    month_tokens_used: Option<u64>,
}

/// A tenant as the admin API shows it.
#[derive(Serialize)]
struct TenantView<'a> {
    id: &'a str,
    tier: &'a str,
    prepaid: bool,
    overrides: &'a LimitOverrides,
    content_logging: ContentLogging,
    created_at: String,
    active: bool,
    limits: Option<Limits>,
    balance_usd: Usd,
    balance_nanos: Nanos,
    credit_reserved_usd: Usd,
    credit_reserved_nanos: Nanos,
    month_tokens_used: Option<u64>,
}

/// A top-up as the admin API confirms it.
#[derive(Serialize)]
struct CreditView<'a> {
    tenant: &'a str,
    amount_usd: Usd,
    amount_nanos: Nanos,
    balance_usd: Usd,
    balance_nanos: Nanos,
    note: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    id: String,
    tier: String,
    #[serde(default)]
    prepaid: bool,
    #[serde(default)]
    overrides: LimitOverrides,
    /// `"off"` (the default), `7` or `30`: days prompts and completions are kept, redacted.
    #[serde(default)]
    content_logging: ContentLogging,
}

pub async fn create(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    AdminJson(body): AdminJson<CreateTenant>,
) -> Result<Response, GatewayError> {
    if !valid_tenant_id(&body.id) {
        return Err(invalid(
            "id",
            format!(
                "Invalid tenant id '{}': use 1-63 lowercase letters, digits and dashes, starting with a letter or digit.",
                body.id
            ),
        ));
    }
    check_tier(&state, &body.tier)?;
    check_overrides(&body.overrides, "overrides")?;
    let tenant = Tenant {
        id: body.id,
        tier: body.tier,
        overrides: body.overrides,
        prepaid: body.prepaid,
        created_at: unix_ms(),
        content_logging: body.content_logging,
    };
    let store = state.directory.store();
    store.create_tenant(&tenant).await.map_err(|e| match e {
        switchyard_metering::StoreError::Conflict(_) => {
            GatewayError::Conflict(format!("Tenant '{}' already exists.", tenant.id))
        }
        e => store_error(e),
    })?;
    apply(&state).await?;
    tracing::info!(target: "switchyard::admin", tenant = %tenant.id, tier = %tenant.tier, prepaid = tenant.prepaid, content_log_days = tenant.content_logging.days(), "tenant created");
    let body = tenant_json(&state, &tenant).await?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn list(
    _: Admin,
    State(state): State<Arc<ControlState>>,
) -> Result<Json<super::List<Value>>, GatewayError> {
    let tenants = state
        .directory
        .store()
        .list_tenants()
        .await
        .map_err(store_error)?;
    let mut data = Vec::with_capacity(tenants.len());
    for t in &tenants {
        data.push(tenant_json(&state, t).await?);
    }
    Ok(super::list_json(data))
}

pub async fn show(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    Id(id): Id,
) -> Result<Json<Value>, GatewayError> {
    let tenant = get_tenant(&state, &id).await?;
    Ok(Json(tenant_json(&state, &tenant).await?))
}

/// `overrides`, when given, replaces the tenant's overrides as a whole (`{}` clears them).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    tier: Option<String>,
    prepaid: Option<bool>,
    overrides: Option<LimitOverrides>,
    content_logging: Option<ContentLogging>,
}

pub async fn update(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    Id(id): Id,
    AdminJson(body): AdminJson<UpdateTenant>,
) -> Result<Json<Value>, GatewayError> {
    if let Some(tier) = &body.tier {
        check_tier(&state, tier)?;
    }
    if let Some(o) = &body.overrides {
        check_overrides(o, "overrides")?;
    }
    let tenant = state
        .directory
        .store()
        .update_tenant(
            &id,
            body.tier.as_deref(),
            body.overrides.as_ref(),
            body.prepaid,
            body.content_logging,
        )
        .await
        .map_err(|e| match e {
            switchyard_metering::StoreError::NotFound(_) => {
                GatewayError::NotFound(format!("Tenant '{id}' does not exist."))
            }
            e => store_error(e),
        })?;
    apply(&state).await?;
    tracing::info!(target: "switchyard::admin", tenant = %tenant.id, tier = %tenant.tier, prepaid = tenant.prepaid, content_log_days = tenant.content_logging.days(), "tenant changed");
    Ok(Json(tenant_json(&state, &tenant).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credit {
    /// A decimal string ("25.00") or a number; negative to correct a mistaken top-up.
    amount_usd: Value,
    #[serde(default)]
    note: Option<String>,
}

pub async fn credit(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    Id(id): Id,
    AdminJson(body): AdminJson<Credit>,
) -> Result<Json<Value>, GatewayError> {
    let amount = parse_usd(&body.amount_usd, "amount_usd")?;
    if amount == 0 {
        return Err(invalid("amount_usd", "The amount must not be zero."));
    }
    let note = body.note.unwrap_or_default();
    if note.chars().count() > MAX_NOTE_LEN {
        return Err(invalid(
            "note",
            format!("The note is longer than {MAX_NOTE_LEN} characters."),
        ));
    }
    let store = state.directory.store();
    get_tenant(&state, &id).await?;
    store
        .add_credit(&id, amount, &note)
        .await
        .map_err(store_error)?;
    // The store is the record; the directory's live balance is what admission reads.
    state.directory.credit(&id, amount);
    if let Some(shared) = &state.shared_limits {
        // The store has the top-up (the record, so the answer is 200 either way: a retried
        // top-up would be a second one). Redis's balance, which replicas admit by, gets it
        // in the background, retried while Redis is unreachable.
        let (shared, tenant) = (shared.clone(), id.clone());
        // One id for every retry: a retry after a timeout must not add the amount twice.
        let once = uuid::Uuid::new_v4().simple().to_string();
        tokio::spawn(async move {
            let mut wait = std::time::Duration::from_millis(200);
            for _ in 0..40 {
                match shared.credit(&tenant, amount, &once).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(target: "switchyard::limits", tenant = %tenant, amount_nanos = amount, error = %e, "Redis's shared balance did not take a top-up yet; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(std::time::Duration::from_secs(30));
                    }
                }
            }
            tracing::error!(target: "switchyard::limits", tenant = %tenant, amount_nanos = amount, "Redis's shared balance never took a top-up: admission undercounts it until the balance is reseeded from the store");
        });
    }
    let balance = match state.directory.tenant(&id) {
        Some(entry) => entry.balance.load(Ordering::Relaxed),
        None => store.credit_balance(&id).await.map_err(store_error)?,
    };
    tracing::info!(target: "switchyard::admin", tenant = %id, amount_nanos = amount, "credit added");
    let view = CreditView {
        tenant: &id,
        amount_usd: Usd(amount),
        amount_nanos: amount,
        balance_usd: Usd(balance),
        balance_nanos: balance,
        note: &note,
    };
    serde_json::to_value(view)
        .map(Json)
        .map_err(|e| GatewayError::Internal(format!("cannot render the top-up: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_slugs() {
        for ok in ["a", "acme", "acme-2", "0x", &"a".repeat(63)] {
            assert!(valid_tenant_id(ok), "{ok}");
        }
        for bad in ["", "-acme", "Acme", "ac_me", "ac me", "é", &"a".repeat(64)] {
            assert!(!valid_tenant_id(bad), "{bad}");
        }
    }
}
