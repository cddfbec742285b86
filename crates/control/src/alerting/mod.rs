//! Alerting: an in-process SLO evaluator, off the request path in its own task.
//!
//! Every `interval_ms` it computes availability SLIs per tier, per model and for the whole
//! fleet over four rolling windows from the ledger (the per-minute rollups plus the current
//! minute's raw rows), turns them into error-budget burn rates against each tier's
//! `slo_availability_bp`, and applies the SRE workbook's multi-window rules (page above 14.4×
//! over 1 h and 5 m, ticket above 6× over 6 h and 30 m). It also alerts on a worker whose last
//! synthetic probe failed and on a model with no worker in rotation.
//!
//! - `[alerts]` is `switchyard_config::AlertsConfig`, and [`policy`] its burn thresholds;
//!   [`windows`]: SLIs per scope; [`burn_alerts`], [`fleet_alerts`]:
//!   which alerts hold; [`tracker`]: deduplication into start / escalation / resolution;
//!   [`notify`]: log lines and the webhook; [`recorder`], [`impact`]: the incident log;
//!   [`postmortem`]: an incident as a Markdown post-mortem template.
//!
//! The arithmetic (burn rates, the decision, budget spent) is `switchyard_slo::burn`'s.

pub mod alert;
pub mod burn_alerts;
mod evaluate;
pub mod fleet_alerts;
pub mod impact;
pub mod notify;
pub mod policy;
pub mod postmortem;
mod recorder;
pub mod tracker;
pub mod windows;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::state::ControlState;

/// Runs the evaluator until the task is aborted.
pub fn spawn(state: Arc<ControlState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let config = state.config.alerts.clone();
        if !config.enabled {
            return;
        }
        let interval = Duration::from_millis(config.interval_ms);
        let mut evaluator = evaluate::Evaluator::new(state, config).await;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // immediate; the first evaluation waits one interval
        loop {
            ticker.tick().await;
            evaluator.tick().await;
        }
    })
}
