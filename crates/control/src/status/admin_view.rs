//! `GET /admin/status`: the operator's page beside the public one. Per tenant, this month's
//! usage and SLA standing (availability against its objective, error budget left, p95 TTFT,
//! credit owed so far), computed by the same code as `GET /admin/v1/sla`; and the workers by
//! name, which the public page never shows. Not cached: it is for a few people, and each look
//! should be current.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use switchyard_slo::PartialStep;

use super::admin_auth::AdminViewer;
use super::html::{document, esc, response};
use crate::admin::render::usd;
use crate::admin::sla::{compute, SlaMonth};
use crate::admin::{format_rfc3339, Month};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

#[derive(Default)]
struct Usage {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost: i64,
}

pub async fn view(
    _: AdminViewer,
    State(state): State<Arc<ControlState>>,
) -> Result<Response, GatewayError> {
    let now = state.clock.now_ms();
    let sla = compute(&state, Month::containing(now), None, PartialStep::default()).await?;
    Ok(response(render(&sla, &state, now), 0))
}

fn render(sla: &SlaMonth, state: &ControlState, now: i64) -> String {
    let mut usage: BTreeMap<&str, Usage> = BTreeMap::new();
    for row in &sla.usage {
        let u = usage.entry(row.tenant_id.as_str()).or_default();
        u.requests += row.requests;
        u.prompt_tokens += row.prompt_tokens;
        u.completion_tokens += row.completion_tokens;
        u.cost += row.cost;
    }
    let mut body = format!(
        "<h1>Switchyard admin status</h1><p class=\"muted\">{month}: {from} to {to} · \
         generated {now} · <a href=\"/status\">public page</a></p>\
         <h2>Tenants this month</h2><div class=\"card scroll\"><table id=\"tenants\"><thead><tr>\
         <th>Tenant</th><th>Tier</th><th>Requests</th><th>Tokens in</th><th>Tokens out</th>\
         <th>Spend</th><th>Availability</th><th>Objective</th><th>Bad min</th>\
         <th>Budget left</th><th>p95 TTFT</th><th>5xx</th><th>Credit owed</th></tr></thead><tbody>",
        month = esc(&sla.month.to_string()),
        from = esc(&format_rfc3339(sla.start_ms)),
        to = esc(&format_rfc3339(sla.end_ms)),
        now = esc(&format_rfc3339(now)),
    );
    if sla.tenants.is_empty() {
        body.push_str("<tr><td colspan=\"13\" class=\"muted\">No tenants</td></tr>");
    }
    for t in &sla.tenants {
        let u = usage.get(t.tenant.as_str());
        let budget = match t.error_budget_left_bp {
            Some(bp) => format!(
                "{} of {} min ({}{}.{:02}%)",
                t.error_budget_left_minutes,
                t.error_budget_minutes,
                if bp < 0 { "-" } else { "" },
                bp.unsigned_abs() / 100,
                bp.unsigned_abs() % 100
            ),
            None => "no budget".into(),
        };
        let overspent = t.error_budget_left_bp.is_some_and(|bp| bp < 0);
        let p95 = match (t.p95_ttft.overflow, t.p95_ttft.le_ms) {
            (true, _) => "over 120 s".into(),
            (false, Some(ms)) => format!("≤ {ms} ms"),
            (false, None) => "-".into(),
        };
        body.push_str(&format!(
            "<tr data-tenant=\"{id}\"><td>{id}</td><td>{tier}</td><td>{req}</td><td>{tin}</td>\
             <td>{tout}</td><td>${spend}</td><td>{avail}%</td><td>{slo}%</td><td>{bad}</td>\
             <td{cls}>{budget}</td><td>{p95}</td><td>{e5}</td><td>${credit}</td></tr>",
            id = esc(&t.tenant),
            tier = esc(&t.tier),
            req = u.map_or(0, |u| u.requests),
            tin = u.map_or(0, |u| u.prompt_tokens),
            tout = u.map_or(0, |u| u.completion_tokens),
            spend = usd(u.map_or(0, |u| u.cost)),
            avail = esc(&t.availability_pct),
            slo = esc(&t.slo_availability_pct),
            bad = t.minutes_bad,
            cls = if overspent { " class=\"neg\"" } else { "" },
            budget = esc(&budget),
            p95 = esc(&p95),
            e5 = t.errors_5xx,
            credit = usd(t.credit_nanos),
        ));
    }
    body.push_str("</tbody></table></div><h2>Workers</h2><div class=\"card scroll\"><table id=\"workers\"><thead><tr>\
         <th>Worker</th><th>Model</th><th>Region</th><th>Provider</th><th>State</th>\
         <th>Why</th><th>In flight</th></tr></thead><tbody>");
    for w in state.fleet.workers() {
        let h = w.health_view();
        let st = serde_json::to_value(h.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(w.name()),
            esc(&w.spec.model),
            esc(&w.spec.region),
            esc(&w.spec.provider),
            esc(&st),
            esc(&h.reason),
            w.outstanding(),
        ));
    }
    body.push_str(
        "</tbody></table></div><footer>Availability, budget and credit as in \
         <code>switchyard sla report</code> (partial steps rounded down), for the month so far. \
         Spend is the month's invoice so far.</footer>",
    );
    document("Switchyard admin status", "", &body)
}
