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
use serde::Serialize;
use serde_json::{json, Value};
use switchyard_metering::directory::unix_ms;
use switchyard_metering::money::Nanos;
use switchyard_metering::store::{Period, UsageQuery};
use switchyard_metering::UsageRecord;

use super::dates::{civil_from_days, Month};
use super::extract::{Admin, Id, Params};
use super::render::{csv, csv_response, price_nanos, usd, Usd};
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

/// Requests and tokens of a report line or total.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Counts {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// What every report sums: counts, what tenants were charged, and the cost of goods.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    counts: Counts,
    charged: Nanos,
    cogs: Nanos,
}

impl Sums {
    fn of(requests: u64, prompt: u64, completion: u64, charged: Nanos, cogs: Nanos) -> Self {
        let counts = Counts {
            requests,
            prompt_tokens: prompt,
            completion_tokens: completion,
        };
        Self {
            counts,
            charged,
            cogs,
        }
    }

    fn add(&mut self, other: Sums) {
        let (c, o) = (&mut self.counts, other.counts);
        c.requests += o.requests;
        c.prompt_tokens += o.prompt_tokens;
        c.completion_tokens += o.completion_tokens;
        self.charged += other.charged;
        self.cogs += other.cogs;
    }

    /// The lines' sums and their total.
    fn collect<T>(items: &[T], sums: impl Fn(&T) -> Sums) -> (Vec<Sums>, Sums) {
        let mut total = Sums::default();
        let lines = items
            .iter()
            .map(|item| {
                let s = sums(item);
                total.add(s);
                s
            })
            .collect();
        (lines, total)
    }

    fn usage(self) -> UsageSums {
        let c = self.counts;
        UsageSums {
            counts: c,
            total_tokens: c.prompt_tokens + c.completion_tokens,
            cost_usd: Usd(self.charged),
            cost_nanos: self.charged,
            cogs_usd: Usd(self.cogs),
            cogs_nanos: self.cogs,
        }
    }

    fn margin(self) -> MarginSums {
        let margin = self.charged - self.cogs;
        MarginSums {
            counts: self.counts,
            revenue_usd: Usd(self.charged),
            revenue_nanos: self.charged,
            cogs_usd: Usd(self.cogs),
            cogs_nanos: self.cogs,
            margin_usd: Usd(margin),
            margin_nanos: margin,
            margin_pct: margin_pct(self.charged, self.cogs),
        }
    }
}

#[derive(Serialize)]
struct UsageSums {
    #[serde(flatten)]
    counts: Counts,
    total_tokens: u64,
    cost_usd: Usd,
    cost_nanos: Nanos,
    cogs_usd: Usd,
    cogs_nanos: Nanos,
}

#[derive(Serialize)]
struct UsageLine<'a> {
    tenant: &'a str,
    period: &'a str,
    model: &'a str,
    #[serde(flatten)]
    sums: UsageSums,
}

#[derive(Serialize)]
struct UsageReport<'a> {
    object: &'static str,
    period: &'static str,
    filters: Value,
    data: Vec<UsageLine<'a>>,
    totals: UsageSums,
}

#[derive(Serialize)]
struct MarginSums {
    #[serde(flatten)]
    counts: Counts,
    revenue_usd: Usd,
    revenue_nanos: Nanos,
    cogs_usd: Usd,
    cogs_nanos: Nanos,
    margin_usd: Usd,
    margin_nanos: Nanos,
    margin_pct: Option<f64>,
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
    let (sums, total) = Sums::collect(&rows, |r| {
        Sums::of(
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost,
            r.cogs,
        )
    });
    let data = rows
        .iter()
        .zip(sums)
        .map(|(r, sums)| UsageLine {
            tenant: &r.tenant_id,
            period: &r.period,
            model: &r.model,
            sums: sums.usage(),
        })
        .collect();
    Ok(Json(UsageReport {
        object: "usage",
        period: if period == Period::Month {
            "month"
        } else {
            "day"
        },
        filters: filters_json(&q),
        data,
        totals: total.usage(),
    })
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
    let data = records.iter().map(RecordView::of).collect();
    Ok(Json(RecordList {
        object: "list",
        filters: filters_json(&q),
        data,
    })
    .into_response())
}

/// One ledger row as the admin API shows it.
#[derive(Serialize)]
struct RecordView<'a> {
    request_id: &'a str,
    started_at: String,
    started_at_ms: i64,
    tenant: &'a str,
    key_id: &'a str,
    model: &'a str,
    endpoint: &'a str,
    stream: bool,
    worker: &'a str,
    provider: &'a str,
    region: &'a str,
    prompt_tokens: u64,
    completion_tokens: u64,
    usage_estimated: bool,
    usage_source: &'static str,
    usage_note: Option<&'a str>,
    ttft_ms: Option<u64>,
    ttft_exempt: bool,
    total_ms: u64,
    status: &'static str,
    http_status: u16,
    finish_reason: Option<&'a str>,
    cost_usd: Usd,
    cost_nanos: Nanos,
    cogs_usd: Usd,
    cogs_nanos: Nanos,
}

impl<'a> RecordView<'a> {
    fn of(r: &'a UsageRecord) -> Self {
        Self {
            request_id: &r.request_id,
            started_at: format_rfc3339(r.started_at_ms),
            started_at_ms: r.started_at_ms,
            tenant: &r.tenant_id,
            key_id: &r.key_id,
            model: &r.model,
            endpoint: &r.endpoint,
            stream: r.stream,
            worker: &r.worker,
            provider: &r.provider,
            region: &r.region,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            usage_estimated: r.usage_estimated,
            usage_source: r.usage_source.as_str(),
            usage_note: r.usage_note.as_deref(),
            ttft_ms: r.ttft_ms,
            ttft_exempt: r.ttft_exempt,
            total_ms: r.total_ms,
            status: r.status.as_str(),
            http_status: r.http_status,
            finish_reason: r.finish_reason.as_deref(),
            cost_usd: Usd(r.cost),
            cost_nanos: r.cost,
            cogs_usd: Usd(r.cogs),
            cogs_nanos: r.cogs,
        }
    }
}

#[derive(Serialize)]
struct RecordList<'a> {
    object: &'static str,
    filters: Value,
    data: Vec<RecordView<'a>>,
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

/// Margin as a percentage of revenue, to two decimals; none without revenue.
fn margin_pct(revenue: i64, cogs: i64) -> Option<f64> {
    (revenue != 0).then(|| {
        let pct = (revenue - cogs) as f64 * 100.0 / revenue as f64;
        (pct * 100.0).round() / 100.0
    })
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
