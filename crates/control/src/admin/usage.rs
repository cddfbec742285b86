//! Reports from the ledger: usage per tenant, period and model (`/admin/v1/usage`), the raw
//! rows (`/admin/v1/usage/records`), a tenant's monthly invoice (`/admin/v1/invoices/{tenant}`)
//! and revenue against cost of goods (`/admin/v1/margin`). Every sum is the ledger's integer
//! nano-dollars; decimal strings are only a rendering of them.
//!
//! Days and months are UTC. `from` and `to` are both inclusive days; `month` is the same as
//! the first and last day of that month.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use switchyard_metering::directory::unix_ms;
use switchyard_metering::store::{Period, UsageQuery};

use super::dates::{civil_from_days, Month};
use super::extract::{Admin, Id, Params};
use super::render::{csv, csv_response, price_nanos, put_money, usd};
use super::tenants::get_tenant;
use super::{format_rfc3339, invalid, month_range, parse_day, parse_month, store_error};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

const MS_PER_DAY: i64 = 86_400_000;

fn day_string(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The `tenant`, `from`/`to` or `month` filters of a report.
async fn query(state: &ControlState, params: &Params) -> Result<UsageQuery, GatewayError> {
    let tenant_id = match params.get("tenant") {
        Some(t) => Some(get_tenant(state, t).await?.id),
        None => None,
    };
    let (from, to) = (params.get("from"), params.get("to"));
    let (from_ms, to_ms) = match params.get("month") {
        Some(_) if from.is_some() || to.is_some() => {
            return Err(invalid(
                "month",
                "Give either 'month' or 'from'/'to', not both.",
            ));
        }
        Some(m) => month_range(Some(m), "month")?,
        None => (
            from.map(|f| parse_day(f, "from")).transpose()?,
            // `to` is inclusive: up to the end of that day.
            to.map(|t| parse_day(t, "to").map(|ms| ms + MS_PER_DAY))
                .transpose()?,
        ),
    };
    if let (Some(f), Some(t)) = (from_ms, to_ms) {
        if t <= f {
            return Err(invalid("to", "'to' is before 'from'."));
        }
    }
    Ok(UsageQuery {
        tenant_id,
        from_ms,
        to_ms,
    })
}

fn month_param(params: &Params) -> Result<Month, GatewayError> {
    match params.get("month") {
        Some(m) => parse_month(m, "month"),
        None => Ok(Month::containing(unix_ms())),
    }
}

fn filters_json(q: &UsageQuery) -> Value {
    json!({
        "tenant": q.tenant_id,
        "from": q.from_ms.map(day_string),
        "to": q.to_ms.map(|t| day_string(t - MS_PER_DAY)),
    })
}

#[derive(Default)]
struct Totals {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost: i64,
    cogs: i64,
}

impl Totals {
    fn add(&mut self, requests: u64, prompt: u64, completion: u64, cost: i64, cogs: i64) {
        self.requests += requests;
        self.prompt_tokens += prompt;
        self.completion_tokens += completion;
        self.cost += cost;
        self.cogs += cogs;
    }
}

/// `GET /admin/v1/usage?tenant=&from=&to=&month=&period=day|month&format=json|csv`
pub async fn summary(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    params: Params,
) -> Result<Response, GatewayError> {
    params.only(&["tenant", "from", "to", "month", "period", "format"])?;
    let period = match params.choice("period", &["day", "month"])? {
        "month" => Period::Month,
        _ => Period::Day,
    };
    let format = params.choice("format", &["json", "csv"])?;
    let q = query(&state, &params).await?;
    let rows = state
        .directory
        .store()
        .usage(&q, period)
        .await
        .map_err(store_error)?;
    if format == "csv" {
        let header = [
            "tenant",
            "period",
            "model",
            "requests",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cost_usd",
            "cost_nanos",
            "cogs_usd",
            "cogs_nanos",
        ];
        let lines = rows.iter().map(|r| {
            vec![
                r.tenant_id.clone(),
                r.period.clone(),
                r.model.clone(),
                r.requests.to_string(),
                r.prompt_tokens.to_string(),
                r.completion_tokens.to_string(),
                (r.prompt_tokens + r.completion_tokens).to_string(),
                usd(r.cost),
                r.cost.to_string(),
                usd(r.cogs),
                r.cogs.to_string(),
            ]
        });
        return Ok(csv_response(csv(&header, lines), "usage.csv"));
    }
    let mut totals = Totals::default();
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            totals.add(
                r.requests,
                r.prompt_tokens,
                r.completion_tokens,
                r.cost,
                r.cogs,
            );
            let mut obj = Map::new();
            obj.insert("tenant".into(), json!(r.tenant_id));
            obj.insert("period".into(), json!(r.period));
            obj.insert("model".into(), json!(r.model));
            obj.insert("requests".into(), json!(r.requests));
            obj.insert("prompt_tokens".into(), json!(r.prompt_tokens));
            obj.insert("completion_tokens".into(), json!(r.completion_tokens));
            obj.insert(
                "total_tokens".into(),
                json!(r.prompt_tokens + r.completion_tokens),
            );
            put_money(&mut obj, "cost", r.cost);
            put_money(&mut obj, "cogs", r.cogs);
            Value::Object(obj)
        })
        .collect();
    let mut t = Map::new();
    t.insert("requests".into(), json!(totals.requests));
    t.insert("prompt_tokens".into(), json!(totals.prompt_tokens));
    t.insert("completion_tokens".into(), json!(totals.completion_tokens));
    t.insert(
        "total_tokens".into(),
        json!(totals.prompt_tokens + totals.completion_tokens),
    );
    put_money(&mut t, "cost", totals.cost);
    put_money(&mut t, "cogs", totals.cogs);
    Ok(Json(json!({
        "object": "usage",
        "period": if period == Period::Month { "month" } else { "day" },
        "filters": filters_json(&q),
        "data": data,
        "totals": t,
    }))
    .into_response())
}

/// `GET /admin/v1/usage/records?tenant=&from=&to=&month=&format=json|csv`: the ledger's rows.
pub async fn records(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    params: Params,
) -> Result<Response, GatewayError> {
    params.only(&["tenant", "from", "to", "month", "format"])?;
    let format = params.choice("format", &["json", "csv"])?;
    let q = query(&state, &params).await?;
    let records = state
        .directory
        .store()
        .usage_records(&q)
        .await
        .map_err(store_error)?;
    if format == "csv" {
        let header = [
            "request_id",
            "started_at",
            "started_at_ms",
            "tenant",
            "key_id",
            "model",
            "endpoint",
            "stream",
            "worker",
            "provider",
            "region",
            "prompt_tokens",
            "completion_tokens",
            "usage_estimated",
            "usage_source",
            "usage_note",
            "ttft_ms",
            "ttft_exempt",
            "total_ms",
            "status",
            "http_status",
            "finish_reason",
            "cost_usd",
            "cost_nanos",
            "cogs_usd",
            "cogs_nanos",
        ];
        let lines = records.iter().map(|r| {
            vec![
                r.request_id.clone(),
                format_rfc3339(r.started_at_ms),
                r.started_at_ms.to_string(),
                r.tenant_id.clone(),
                r.key_id.clone(),
                r.model.clone(),
                r.endpoint.clone(),
                r.stream.to_string(),
                r.worker.clone(),
                r.provider.clone(),
                r.region.clone(),
                r.prompt_tokens.to_string(),
                r.completion_tokens.to_string(),
                r.usage_estimated.to_string(),
                r.usage_source.as_str().to_string(),
                r.usage_note.clone().unwrap_or_default(),
                r.ttft_ms.map(|v| v.to_string()).unwrap_or_default(),
                r.ttft_exempt.to_string(),
                r.total_ms.to_string(),
                r.status.as_str().to_string(),
                r.http_status.to_string(),
                r.finish_reason.clone().unwrap_or_default(),
                usd(r.cost),
                r.cost.to_string(),
                usd(r.cogs),
                r.cogs.to_string(),
            ]
        });
        return Ok(csv_response(csv(&header, lines), "usage-records.csv"));
    }
    let data: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut obj = Map::new();
            obj.insert("request_id".into(), json!(r.request_id));
            obj.insert("started_at".into(), json!(format_rfc3339(r.started_at_ms)));
            obj.insert("started_at_ms".into(), json!(r.started_at_ms));
            obj.insert("tenant".into(), json!(r.tenant_id));
            obj.insert("key_id".into(), json!(r.key_id));
            obj.insert("model".into(), json!(r.model));
            obj.insert("endpoint".into(), json!(r.endpoint));
            obj.insert("stream".into(), json!(r.stream));
            obj.insert("worker".into(), json!(r.worker));
            obj.insert("provider".into(), json!(r.provider));
            obj.insert("region".into(), json!(r.region));
            obj.insert("prompt_tokens".into(), json!(r.prompt_tokens));
            obj.insert("completion_tokens".into(), json!(r.completion_tokens));
            obj.insert("usage_estimated".into(), json!(r.usage_estimated));
            obj.insert("usage_source".into(), json!(r.usage_source.as_str()));
            obj.insert("usage_note".into(), json!(r.usage_note));
            obj.insert("ttft_ms".into(), json!(r.ttft_ms));
            obj.insert("ttft_exempt".into(), json!(r.ttft_exempt));
            obj.insert("total_ms".into(), json!(r.total_ms));
            obj.insert("status".into(), json!(r.status.as_str()));
            obj.insert("http_status".into(), json!(r.http_status));
            obj.insert("finish_reason".into(), json!(r.finish_reason));
            put_money(&mut obj, "cost", r.cost);
            put_money(&mut obj, "cogs", r.cogs);
            Value::Object(obj)
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "filters": filters_json(&q),
        "data": data,
    }))
    .into_response())
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
    let mut totals = Totals::default();
    let lines: Vec<Value> = rows
        .iter()
        .map(|r| {
            totals.add(
                r.requests,
                r.prompt_tokens,
                r.completion_tokens,
                r.cost,
                r.cogs,
            );
            let mut obj = Map::new();
            obj.insert("model".into(), json!(r.model));
            obj.insert("requests".into(), json!(r.requests));
            obj.insert("prompt_tokens".into(), json!(r.prompt_tokens));
            obj.insert("completion_tokens".into(), json!(r.completion_tokens));
            if let Some(l) = &limits {
                put_money(
                    &mut obj,
                    "price_input_per_million",
                    price_nanos(l.price_input_per_million),
                );
                put_money(
                    &mut obj,
                    "price_output_per_million",
                    price_nanos(l.price_output_per_million),
                );
            }
            put_money(&mut obj, "amount", r.cost);
            Value::Object(obj)
        })
        .collect();
    let balance = match &entry {
        Some(e) => e.balance.load(Ordering::Relaxed),
        None => store
            .credit_balance(&tenant.id)
            .await
            .map_err(store_error)?,
    };
    let mut t = Map::new();
    t.insert("requests".into(), json!(totals.requests));
    t.insert("prompt_tokens".into(), json!(totals.prompt_tokens));
    t.insert("completion_tokens".into(), json!(totals.completion_tokens));
    put_money(&mut t, "amount", totals.cost);
    let mut out = Map::new();
    out.insert("object".into(), json!("invoice"));
    out.insert("tenant".into(), json!(tenant.id));
    out.insert("tier".into(), json!(tenant.tier));
    out.insert("month".into(), json!(month.to_string()));
    out.insert("from".into(), json!(format_rfc3339(month.start_ms())));
    out.insert("to".into(), json!(format_rfc3339(month.end_ms())));
    out.insert("currency".into(), json!("USD"));
    out.insert("prepaid".into(), json!(tenant.prepaid));
    out.insert("lines".into(), json!(lines));
    out.insert("total".into(), Value::Object(t));
    // Prepaid credit left now (top-ups minus everything charged so far, not only this month).
    put_money(&mut out, "balance", balance);
    Ok(Json(Value::Object(out)))
}

/// Margin as a percentage of revenue, to two decimals; none without revenue.
fn margin_pct(revenue: i64, cogs: i64) -> Option<f64> {
    (revenue != 0).then(|| {
        let pct = (revenue - cogs) as f64 * 100.0 / revenue as f64;
        (pct * 100.0).round() / 100.0
    })
}

fn margin_fields(obj: &mut Map<String, Value>, revenue: i64, cogs: i64) {
    put_money(obj, "revenue", revenue);
    put_money(obj, "cogs", cogs);
    put_money(obj, "margin", revenue - cogs);
    obj.insert("margin_pct".into(), json!(margin_pct(revenue, cogs)));
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
    let mut totals = Totals::default();
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            totals.add(
                r.requests,
                r.prompt_tokens,
                r.completion_tokens,
                r.revenue,
                r.cogs,
            );
            let mut obj = Map::new();
            obj.insert("model".into(), json!(r.model));
            obj.insert("provider".into(), json!(r.provider));
            obj.insert("requests".into(), json!(r.requests));
            obj.insert("prompt_tokens".into(), json!(r.prompt_tokens));
            obj.insert("completion_tokens".into(), json!(r.completion_tokens));
            margin_fields(&mut obj, r.revenue, r.cogs);
            Value::Object(obj)
        })
        .collect();
    let mut t = Map::new();
    t.insert("requests".into(), json!(totals.requests));
    t.insert("prompt_tokens".into(), json!(totals.prompt_tokens));
    t.insert("completion_tokens".into(), json!(totals.completion_tokens));
    margin_fields(&mut t, totals.cost, totals.cogs);
    Ok(Json(json!({
        "object": "margin",
        "month": month.to_string(),
        "tenant": tenant_id,
        "data": data,
        "total": t,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_percent_is_of_revenue() {
        assert_eq!(margin_pct(1_000, 250), Some(75.0));
        assert_eq!(margin_pct(3, 4), Some(-33.33));
        assert_eq!(margin_pct(0, 5), None);
    }
}
