//! `GET /status` (HTML) and `GET /status.json`: the public status page, no authentication.
//! Both serve the cached snapshot ([`super::cache`]); the page picks one window with
//! `?window=24h|7d|30d` (links, so it needs no script) and refreshes itself every minute.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use switchyard_slo::availability::format_ppm_percent;

use super::cache::{StatusCache, TTL};
use super::charts::{figure, nice_ceil, Chart};
use super::data::{Health, ScopeStatus, Snapshot, Window, RECENT_MINUTES, WINDOWS};
use super::html::{document, esc, response};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

/// The addendum's objectives, drawn as reference lines.
const SLA_AVAILABILITY_PPM: f64 = 999_000.0;
const SLO_TTFT_P95_MS: f64 = 1_500.0;

#[derive(Deserialize)]
pub struct PageQuery {
    window: Option<String>,
}

pub async fn json(
    State(state): State<Arc<ControlState>>,
    Extension(cache): Extension<Arc<StatusCache>>,
) -> Result<Response, GatewayError> {
    let cached = cache.get(&state).await?;
    let mut resp = cached.json.clone().into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={}", TTL.as_secs())) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    Ok(resp)
}

pub async fn page(
    State(state): State<Arc<ControlState>>,
    Extension(cache): Extension<Arc<StatusCache>>,
    Query(query): Query<PageQuery>,
) -> Result<Response, GatewayError> {
    let cached = cache.get(&state).await?;
    // An unknown window is not worth an error page: show the default one.
    let wanted = query.window;
    let name = WINDOWS
        .iter()
        .find(|w| Some(w.name) == wanted.as_deref())
        .unwrap_or(&WINDOWS[0])
        .name;
    Ok(response(render(&cached.snapshot, name), TTL.as_secs()))
}

/// The page for one window of the snapshot.
pub fn render(s: &Snapshot, window: &str) -> String {
    let banner = match s.status {
        Health::Operational => "All systems operational",
        Health::Degraded => "Some systems degraded",
        Health::Down => "Major outage",
    };
    let mut body = format!(
        "<h1>Switchyard status</h1><p class=\"banner s-{}\" id=\"overall\">{banner}</p>\
         <p class=\"muted\">Updated {} · current status from the last {RECENT_MINUTES} minutes \
         · <a href=\"/status.json\">JSON</a></p>",
        s.status.as_str(),
        esc(&s.generated_at),
    );
    body.push_str("<div class=\"grid two\">");
    body.push_str(&scope_card("Models", "models", &s.models));
    body.push_str(&scope_card("Regions", "regions", &s.regions));
    body.push_str("</div>");
    if !s.maintenance.is_empty() {
        body.push_str("<h2>Scheduled maintenance</h2><ul class=\"card\" id=\"maintenance\">");
        for m in &s.maintenance {
            let now = if m.in_progress {
                " · <strong>in progress</strong>"
            } else {
                ""
            };
            body.push_str(&format!(
                "<li>{} to {} ({} min){now}: {} <span class=\"muted\">announced {}</span></li>",
                esc(&m.start),
                esc(&m.end),
                m.minutes,
                esc(&m.note),
                esc(&m.announced_at),
            ));
        }
        body.push_str("</ul>");
    }
    body.push_str("<h2>History</h2><nav class=\"tabs\">");
    for w in &s.windows {
        let current = if w.name == window {
            " aria-current=\"page\""
        } else {
            ""
        };
        body.push_str(&format!(
            "<a href=\"/status?window={}\"{current}>{}</a>",
            esc(w.name),
            esc(w.label)
        ));
    }
    body.push_str("</nav>");
    if let Some(w) = s.window(window) {
        body.push_str(&format!(
            "<div class=\"grid three\" id=\"charts\" data-window=\"{}\">",
            esc(w.name)
        ));
        for chart in charts(w) {
            body.push_str(&figure(&chart));
        }
        body.push_str("</div>");
        let sum = &w.summary;
        if let Some(ppm) = sum.probe_availability_ppm {
            body.push_str(&format!(
                "<p class=\"muted\" id=\"probes\">Measured from outside by synthetic probes: \
                 {}% of {} probed minutes without a failure (counted in the availability \
                 above: a minute a probe failed in is down).</p>",
                format_ppm_percent(ppm),
                sum.probed_minutes
            ));
        }
    }
    body.push_str(
        "<footer>Availability is the share of 1-minute intervals without a server error (5xx) \
         or a first token taking 5 s or more, measured over all traffic; a minute without \
         traffic counts as up if a gateway was running in it, and as down if none was. p95 \
         TTFT is the time to first token within which 95% of requests started answering (upper bound of its histogram bucket). Dashed lines: the \
         SLA's 99.9% availability and 1.5 s p95 TTFT.</footer>",
    );
    // Refreshes itself: a status page is left open on a wall or a phone during incidents.
    document(
        "Switchyard status",
        "<meta http-equiv=\"refresh\" content=\"60\">",
        &body,
    )
}

fn scope_card(title: &str, id: &str, scopes: &[ScopeStatus]) -> String {
    let mut out = format!(
        "<section class=\"card\" id=\"{id}\"><h2 style=\"margin-top:0\">{}</h2><ul class=\"scopes\">",
        esc(title)
    );
    if scopes.is_empty() {
        out.push_str("<li class=\"muted\">None configured</li>");
    }
    for s in scopes {
        let rate = format!(
            "{}.{:02}%",
            s.recent.error_rate_ppm / 10_000,
            s.recent.error_rate_ppm % 10_000 / 100
        );
        out.push_str(&format!(
            "<li data-status=\"{status}\"><span class=\"dot s-{status}\"></span>\
             <span class=\"name\">{name}</span><span class=\"state\">{label}</span>\
             <span class=\"detail\">{reason} · {inr}/{total} workers in rotation · \
             {rate} errors</span></li>",
            status = s.status.as_str(),
            name = esc(&s.name),
            label = s.status.label(),
            reason = esc(&s.reason),
            inr = s.workers.in_rotation,
            total = s.workers.total,
        ));
    }
    out.push_str("</ul></section>");
    out
}

fn ms_label(v: f64) -> String {
    if v >= 1_000.0 {
        format!("{:.1} s", v / 1_000.0)
    } else {
        format!("{v:.0} ms")
    }
}

fn pct_label(ppm: f64) -> String {
    format!("{:.2}%", ppm / 10_000.0)
}

fn since(w: &Window) -> &'static str {
    match w.name {
        "7d" => "7 days ago",
        "30d" => "30 days ago",
        _ => "24 h ago",
    }
}

/// Availability, p95 TTFT and error rate for one window, with axes fitted to the data.
fn charts(w: &Window) -> [Chart<'_>; 3] {
    let avail: Vec<Option<f64>> = w
        .points
        .iter()
        .map(|p| Some(p.availability_ppm as f64))
        .collect();
    let lowest = avail.iter().flatten().copied().fold(1_000_000.0, f64::min);
    // Zoomed on the top: at 0-100% every good day is the same flat line.
    let avail_min = if lowest >= 990_000.0 {
        990_000.0
    } else if lowest >= 900_000.0 {
        900_000.0
    } else {
        0.0
    };
    let ttft: Vec<Option<f64>> = w
        .points
        .iter()
        .map(|p| p.p95_ttft_ms.map(|v| v as f64))
        .collect();
    let ttft_max = nice_ceil(
        ttft.iter()
            .flatten()
            .copied()
            .fold(SLO_TTFT_P95_MS * 1.2, f64::max),
    );
    let errors: Vec<Option<f64>> = w
        .points
        .iter()
        .map(|p| p.error_rate_ppm.map(|v| v as f64))
        .collect();
    let errors_max = nice_ceil(errors.iter().flatten().copied().fold(10_000.0, f64::max));
    let sum = &w.summary;
    [
        Chart {
            name: "availability",
            title: "Availability",
            headline: format!("{}%", format_ppm_percent(sum.availability_ppm)),
            values: avail,
            y_min: avail_min,
            y_max: 1_000_000.0,
            reference: Some((SLA_AVAILABILITY_PPM, "99.9% SLA".into())),
            y_label: pct_label,
            since: since(w),
        },
        Chart {
            name: "ttft",
            title: "p95 time to first token",
            headline: sum
                .p95_ttft_ms
                .map(|v| ms_label(v as f64))
                .unwrap_or_else(|| "no data".into()),
            values: ttft,
            y_min: 0.0,
            y_max: ttft_max,
            reference: Some((SLO_TTFT_P95_MS, "1.5 s SLO".into())),
            y_label: ms_label,
            since: since(w),
        },
        Chart {
            name: "errors",
            title: "Error rate (5xx)",
            headline: sum
                .error_rate_ppm
                .map(|v| pct_label(v as f64))
                .unwrap_or_else(|| "no data".into()),
            values: errors,
            y_min: 0.0,
            y_max: errors_max,
            reference: None,
            y_label: pct_label,
            since: since(w),
        },
    ]
}
