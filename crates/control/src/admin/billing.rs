//! Billing reports from the ledger: a tenant's monthly invoice (`/admin/v1/invoices/{tenant}`)
//! and revenue against cost of goods (`/admin/v1/margin`). Every sum is the ledger's integer
//! nano-dollars; decimal strings are only a rendering of them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use switchyard_metering::directory::unix_ms;
use switchyard_metering::money::Nanos;
use switchyard_metering::store::{Period, UsageQuery};

use super::dates::Month;
use super::extract::{Admin, Id, Params};
use super::render::{price_nanos, Usd};
use super::tenants::get_tenant;
use super::usage_sums::{Counts, MarginSums, Sums};
use super::{format_rfc3339, parse_month, store_error};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

fn month_param(params: &Params) -> Result<Month, GatewayError> {
    match params.get("month") {
        Some(m) => parse_month(m, "month"),
        None => Ok(Month::containing(unix_ms())),
    }
}

/// `GET /admin/v1/invoices/{tenant}?month=YYYY-MM` (default: the current month). One line per
/// model: requests, tokens, the tenant's prices, and the amount the ledger charged. The
/// amount is the ledger's sum of per-request costs, not tokens × today's price: a price
/// changed mid-month bills each request at the price it ran under.
pub async fn invoice(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    Id(tenant_id): Id,
    params: Params,
) -> Result<Json<Value>, GatewayError> {
    params.only(&["month"])?;
    let month = month_param(&params)?;
    let tenant = get_tenant(&state, &tenant_id).await?;
    let store = state.directory.store();
    let q = UsageQuery {
        tenant_id: Some(tenant.id.clone()),
        from_ms: Some(month.start_ms()),
        to_ms: Some(month.end_ms()),
    };
    let rows = store.usage(&q, Period::Month).await.map_err(store_error)?;
    let entry = state.directory.tenant(&tenant.id);
    let limits = match &entry {
        Some(e) => Some(e.limits.clone()),
        None => state
            .directory
            .tiers()
            .get(&tenant.tier)
            .map(|tier| tenant.overrides.apply(tier)),
    };
    let prices = limits.map(|l| {
        let input = price_nanos(l.price_input_per_million);
        let output = price_nanos(l.price_output_per_million);
        Prices {
            price_input_per_million_usd: Usd(input),
            price_input_per_million_nanos: input,
            price_output_per_million_usd: Usd(output),
            price_output_per_million_nanos: output,
        }
    });
    let (sums, total) = Sums::collect(&rows, |r| {
        Sums::of(
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost,
            r.cogs,
        )
    });
    let lines = rows
        .iter()
        .zip(sums)
        .map(|(r, sums)| InvoiceLine {
            model: &r.model,
            counts: sums.counts,
            prices,
            amount_usd: Usd(sums.charged),
            amount_nanos: sums.charged,
        })
        .collect();
    let balance = match &entry {
        Some(e) => e.balance.load(Ordering::Relaxed),
        None => store
            .credit_balance(&tenant.id)
            .await
            .map_err(store_error)?,
    };
    let invoice = Invoice {
        object: "invoice",
        tenant: &tenant.id,
        tier: &tenant.tier,
        month: month.to_string(),
        from: format_rfc3339(month.start_ms()),
        to: format_rfc3339(month.end_ms()),
        currency: "USD",
        prepaid: tenant.prepaid,
        lines,
        total: InvoiceTotal {
            counts: total.counts,
            amount_usd: Usd(total.charged),
            amount_nanos: total.charged,
        },
        balance_usd: Usd(balance),
        balance_nanos: balance,
    };
    serde_json::to_value(invoice)
        .map(Json)
        .map_err(|e| GatewayError::Internal(format!("cannot render the invoice: {e}")))
}

/// The tenant's prices now, shown on each invoice line.
#[derive(Clone, Copy, Serialize)]
struct Prices {
    price_input_per_million_usd: Usd,
    price_input_per_million_nanos: Nanos,
    price_output_per_million_usd: Usd,
    price_output_per_million_nanos: Nanos,
}

#[derive(Serialize)]
struct InvoiceLine<'a> {
    model: &'a str,
    #[serde(flatten)]
    counts: Counts,
    #[serde(flatten)]
    prices: Option<Prices>,
    amount_usd: Usd,
    amount_nanos: Nanos,
}

#[derive(Serialize)]
struct InvoiceTotal {
    #[serde(flatten)]
    counts: Counts,
    amount_usd: Usd,
    amount_nanos: Nanos,
}

#[derive(Serialize)]
struct Invoice<'a> {
    object: &'static str,
    tenant: &'a str,
    tier: &'a str,
    month: String,
    from: String,
    to: String,
    currency: &'static str,
    prepaid: bool,
    lines: Vec<InvoiceLine<'a>>,
    total: InvoiceTotal,
    /// Prepaid credit left now (top-ups minus everything charged so far, not only this month).
    balance_usd: Usd,
    balance_nanos: Nanos,
}

#[derive(Serialize)]
struct MarginLine<'a> {
    model: &'a str,
    provider: &'a str,
    #[serde(flatten)]
    sums: MarginSums,
}

#[derive(Serialize)]
struct MarginReport<'a> {
    object: &'static str,
    month: String,
    tenant: Option<String>,
    data: Vec<MarginLine<'a>>,
    total: MarginSums,
}

/// `GET /admin/v1/margin?month=YYYY-MM&tenant=`: revenue (what tenants were charged) against
/// cost of goods (GPU time at the workers' hourly prices) per model and provider.
pub async fn margin(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    params: Params,
) -> Result<Json<Value>, GatewayError> {
    params.only(&["month", "tenant"])?;
    let month = month_param(&params)?;
    let tenant_id = match params.get("tenant") {
        Some(t) => Some(get_tenant(&state, t).await?.id),
        None => None,
    };
    let q = UsageQuery {
        tenant_id: tenant_id.clone(),
        from_ms: Some(month.start_ms()),
        to_ms: Some(month.end_ms()),
    };
    let rows = state
        .directory
        .store()
        .margin(&q)
        .await
        .map_err(store_error)?;
    let (sums, total) = Sums::collect(&rows, |r| {
        Sums::of(
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            r.revenue,
            r.cogs,
        )
    });
    let data = rows
        .iter()
        .zip(sums)
        .map(|(r, sums)| MarginLine {
            model: &r.model,
            provider: &r.provider,
            sums: sums.margin(),
        })
        .collect();
    Ok(Json(
        serde_json::to_value(MarginReport {
            object: "margin",
            month: month.to_string(),
            tenant: tenant_id,
            data,
            total: total.margin(),
        })
        .map_err(|e| GatewayError::Internal(format!("cannot render the margin report: {e}")))?,
    ))
}
