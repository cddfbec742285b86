//! `POST /admin/v1/probes/minutes`: what a black-box prober (`switchyard probe`, run away from
//! the gateway's host) saw of the public endpoint, minute by minute. The SLA report takes the
//! worse of its view and the gateway's own for each minute, and the status page shows both.
//!
//! `{"prober": "eu-1", "region": "eu", "minutes": [{"minute": 29858160, "probes": 2,
//! "failed": 0}]}` (unix minutes). A minute pushed again replaces its counts (a prober pushes
//! the current minute as it goes). Minutes older than a week, or more than
//! [`MAX_SKEW_MINUTES`] ahead of the gateway's clock, are refused: a prober cannot rewrite last
//! month after the report went out, and a clock a little ahead costs it nothing.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use switchyard_metering::sli::{minute_of, ProbeMinute};

use super::extract::{Admin, AdminJson};
use super::{invalid, store_error};
use crate::state::ControlState;
use switchyard_gateway::error::GatewayError;

/// How far back a push may reach.
const MAX_AGE_MINUTES: i64 = 7 * 24 * 60;
/// How far ahead of the gateway's clock a prober's clock may run.
pub const MAX_SKEW_MINUTES: i64 = 2;
/// Probes one prober may report for a minute (it probes every few seconds at most).
const MAX_PROBES_PER_MINUTE: u64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    prober: String,
    region: String,
    minutes: Vec<Pushed>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pushed {
    minute: i64,
    probes: u64,
    failed: u64,
}

fn name_ok(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub async fn push(
    _: Admin,
    State(state): State<Arc<ControlState>>,
    AdminJson(body): AdminJson<Push>,
) -> Result<Json<StoredView>, GatewayError> {
    for (param, value) in [("prober", &body.prober), ("region", &body.region)] {
        if !name_ok(value) {
            return Err(invalid(
                param,
                format!("'{param}' must be 1 to 64 letters, digits, '-', '_' or '.'."),
            ));
        }
    }
    if body.minutes.len() > 10_080 {
        return Err(invalid("minutes", "At most a week of minutes per push."));
    }
    let now = minute_of(state.clock.now_ms());
    let mut minutes = Vec::with_capacity(body.minutes.len());
    for (i, m) in body.minutes.iter().enumerate() {
        if !(now - MAX_AGE_MINUTES..=now + MAX_SKEW_MINUTES).contains(&m.minute) {
            return Err(invalid(
                &format!("minutes[{i}].minute"),
                format!(
                    "Minute {} is not within the last week (now is minute {now}; a clock up to {MAX_SKEW_MINUTES} minutes ahead is tolerated).",
                    m.minute
                ),
            ));
        }
        if m.failed > m.probes || m.probes > MAX_PROBES_PER_MINUTE {
            return Err(invalid(
                &format!("minutes[{i}]"),
                format!("'failed' must be at most 'probes', and 'probes' at most {MAX_PROBES_PER_MINUTE}."),
            ));
        }
        minutes.push(ProbeMinute {
            minute: m.minute,
            prober: body.prober.clone(),
            region: body.region.clone(),
            probes: m.probes,
            failed: m.failed,
        });
    }
    state
        .directory
        .store()
        .put_probe_minutes(&minutes)
        .await
        .map_err(store_error)?;
    Ok(Json(StoredView {
        stored: minutes.len(),
    }))
}

/// How many probe minutes were stored.
#[derive(Debug, serde::Serialize)]
pub struct StoredView {
    stored: usize,
}
