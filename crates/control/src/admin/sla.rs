//! `GET /admin/v1/sla?month=YYYY-MM&tenant=&partial_step=floor|ceil`: the monthly SLA report
//! per tenant, computed by `switchyard-slo` from the ledger's per-minute SLI rollups, the
//! declared maintenance windows and the month's invoice (the "monthly fee" credits are a
//! share of). A month in progress is reported up to the current minute.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use switchyard_metering::money::Nanos;
use switchyard_metering::sli::{minute_of, MS_PER_MINUTE};
use switchyard_metering::store::{Period, UsageQuery, UsageRow};
use switchyard_metering::{Limits, Tenant};
use switchyard_slo::{tenant_report, Outside, PartialStep, Settings, TenantSla, TenantTerms};

use super::extract::{Admin, Params};
use super::render::Usd;
use super::tenants::get_tenant;
use super::{format_rfc3339, parse_month, store_error, Month};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

/// The SLO a tenant bought: its effective limits, or its tier's; the built-in default target
/// for a tenant whose tier is no longer configured (its keys are refused, but its past month
/// still has an SLA).
fn limits_of(state: &ControlState, tenant: &Tenant) -> Limits {
    if let Some(entry) = state.directory.tenant(&tenant.id) {
        return entry.limits.clone();
    }
    state
        .directory
        .tiers()
        .get(&tenant.tier)
        .map(|tier| tenant.overrides.apply(tier))
        .unwrap_or_default()
}

/// One month's SLA figures per tenant, and the month's usage rows they were priced from: the
/// JSON report below and the admin status page (`crate::status::admin_view`) both show this.
pub(crate) struct SlaMonth {
    pub month: Month,
    pub start_ms: i64,
    pub end_ms: i64,
    pub partial_step: PartialStep,
    pub tenants: Vec<TenantSla>,
    /// The whole month's usage per tenant and model (also for a month in progress, so far).
    pub usage: Vec<UsageRow>,
}

/// Computes the month's report for one tenant or all of them, through the async store API.
pub(crate) async fn compute(
    state: &ControlState,
    month: Month,
    tenant: Option<&str>,
    partial_step: PartialStep,
) -> Result<SlaMonth, GatewayError> {
    let store = state.directory.store();
    let tenants = match tenant {
        Some(t) => vec![get_tenant(state, t).await?],
        None => store.list_tenants().await.map_err(store_error)?,
    };
    let start_ms = month.start_ms();
    // Up to the current minute: minutes still to come are not "up" yet.
    let now_minute_ms = minute_of(state.clock.now_ms()) * MS_PER_MINUTE;
    let end_ms = month.end_ms().min(now_minute_ms).max(start_ms);
    let q = UsageQuery {
        tenant_id: tenant.map(str::to_string),
        from_ms: Some(start_ms),
        to_ms: Some(end_ms),
    };
    let minutes = store.sli_minutes(&q).await.map_err(store_error)?;
    let latency = store.sli_latency(&q).await.map_err(store_error)?;
    let windows = store
        .list_maintenance(Some(start_ms), Some(end_ms))
        .await
        .map_err(store_error)?;
    let alive = store
        .heartbeats(start_ms, end_ms)
        .await
        .map_err(store_error)?;
    let probes = store
        .probe_minutes(start_ms, end_ms)
        .await
        .map_err(store_error)?;
    // The fee is the whole month's invoice, also for a month in progress (so far).
    let invoice_q = UsageQuery {
        to_ms: Some(month.end_ms()),
        ..q.clone()
    };
    let usage = store
        .usage(&invoice_q, Period::Month)
        .await
        .map_err(store_error)?;
    let mut fees: BTreeMap<&str, Nanos> = BTreeMap::new();
    for row in &usage {
        *fees.entry(row.tenant_id.as_str()).or_default() += row.cost;
    }

    let period = switchyard_slo::Period { start_ms, end_ms };
    let outside = Outside::of(period, &alive, &probes);
    let settings = Settings { partial_step };
    let reports = tenants
        .iter()
        .map(|tenant| {
            let limits = limits_of(state, tenant);
            let terms = TenantTerms {
                tenant_id: tenant.id.clone(),
                tier: tenant.tier.clone(),
                slo_availability_bp: limits.slo_availability_bp,
                slo_ttft_p95_ms: limits.slo_ttft_p95_ms,
                fee: fees.get(tenant.id.as_str()).copied().unwrap_or(0),
            };
            tenant_report(
                period, &terms, &minutes, &latency, &windows, &outside, settings,
            )
        })
        .collect();
    Ok(SlaMonth {
        month,
        start_ms,
        end_ms,
        partial_step,
        tenants: reports,
        usage,
    })
}

pub async fn report(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    params: Params,
) -> Result<Json<SlaReport>, GatewayError> {
    params.only(&["month", "tenant", "partial_step"])?;
    let month = match params.get("month") {
        Some(m) => parse_month(m, "month")?,
        None => Month::containing(state.clock.now_ms()),
    };
    let partial_step =
        PartialStep::parse(params.choice("partial_step", &["floor", "ceil"])?).unwrap_or_default();
    let sla = compute(&state, month, params.get("tenant"), partial_step).await?;

    let sum = |of: fn(&TenantSla) -> Nanos| {
        sla.tenants
            .iter()
            .try_fold(0, |total: Nanos, r| total.checked_add(of(r)))
            .ok_or_else(|| GatewayError::Internal("the month's fees overflow".into()))
    };
    let totals = SlaTotals {
        fee_usd: Usd(sum(|r| r.fee_nanos)?),
        fee_nanos: sum(|r| r.fee_nanos)?,
        credit_usd: Usd(sum(|r| r.credit_nanos)?),
        credit_nanos: sum(|r| r.credit_nanos)?,
    };
    Ok(Json(SlaReport {
        object: "sla_report",
        month: sla.month.to_string(),
        from: format_rfc3339(sla.start_ms),
        to: format_rfc3339(sla.end_ms),
        partial_step: sla.partial_step.as_str(),
        currency: "USD",
        data: sla
            .tenants
            .into_iter()
            .map(|r| TenantSlaView {
                fee_usd: Usd(r.fee_nanos),
                credit_usd: Usd(r.credit_nanos),
                sla: r,
            })
            .collect(),
        totals,
    }))
}

/// The month's SLA report: one line per tenant, and the fees and credits summed.
#[derive(Debug, Serialize)]
pub struct SlaReport {
    object: &'static str,
    month: String,
    from: String,
    to: String,
    partial_step: &'static str,
    currency: &'static str,
    data: Vec<TenantSlaView>,
    totals: SlaTotals,
}

/// A tenant's figures (with `fee_nanos` and `credit_nanos`), and the amounts as USD.
#[derive(Debug, Serialize)]
pub struct TenantSlaView {
    #[serde(flatten)]
    sla: TenantSla,
    fee_usd: Usd,
    credit_usd: Usd,
}

#[derive(Debug, Serialize)]
pub struct SlaTotals {
    fee_usd: Usd,
    fee_nanos: Nanos,
    credit_usd: Usd,
    credit_nanos: Nanos,
}
