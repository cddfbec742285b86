//! Usage reports from the ledger: usage per tenant, period and model (`/admin/v1/usage`) and
//! the raw rows (`/admin/v1/usage/records`), as JSON or CSV. Invoices and margins are
//! [`super::billing`]'s. Every sum is the ledger's integer nano-dollars; decimal strings are
//! only a rendering of them.
//!
//! Days and months are UTC. `from` and `to` are both inclusive days; `month` is the same as
//! the first and last day of that month.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use switchyard_metering::money::Nanos;
use switchyard_metering::store::{Period, UsageQuery};
use switchyard_metering::UsageRecord;

use super::dates::civil_from_days;
use super::extract::{Admin, Params};
use super::render::{csv, csv_response, usd, Usd};
use super::tenants::get_tenant;
use super::usage_sums::{Sums, UsageSums};
use super::{format_rfc3339, invalid, month_range, parse_day, store_error};
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

/// The filters a report was made with, as days (`to` inclusive).
#[derive(Serialize)]
struct Filters<'a> {
    tenant: Option<&'a str>,
    from: Option<String>,
    to: Option<String>,
}

impl<'a> Filters<'a> {
    fn of(q: &'a UsageQuery) -> Self {
        Self {
            tenant: q.tenant_id.as_deref(),
            from: q.from_ms.map(day_string),
            to: q.to_ms.map(|t| day_string(t - MS_PER_DAY)),
        }
    }
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
    filters: Filters<'a>,
    data: Vec<UsageLine<'a>>,
    totals: UsageSums,
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
        filters: Filters::of(&q),
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
        filters: Filters::of(&q),
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
    filters: Filters<'a>,
    data: Vec<RecordView<'a>>,
}
