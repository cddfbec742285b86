//! `GET /metrics`: the Prometheus text format. Events recorded since the process started,
//! then this gateway's fleet and retry budget as they are now, then what workers' own
//! `/metrics` said at the last scrape. Open like `/healthz` unless `[metrics] token` is set.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use switchyard_metering::keys::hash_secret;

use crate::state::AppState;

/// Prometheus' classic text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Hashes are compared, so the time taken says nothing about the token.
        if given.map(hash_secret) != Some(hash_secret(token)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                "metrics token required\n",
            )
                .into_response();
        }
    }
    let mut body = crate::metrics::render_events();
    crate::metrics::scrape_time::render(&mut body, &state);
    state.worker_metrics.render(&mut body);
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body,
    )
        .into_response()
}
