//! One evaluation: read the windows, decide which alerts hold, turn that into transitions,
//! write them to the incident log and send them out.

use std::sync::Arc;

use switchyard_metering::directory::unix_ms;
use switchyard_slo::burn::Policy;

use super::recorder::Recorder;
use super::tracker::Tracker;
use super::{burn_alerts, fleet_alerts, windows};
use crate::state::ControlState;
use switchyard_config::AlertsConfig;

pub struct Evaluator {
    state: Arc<ControlState>,
    config: AlertsConfig,
    policy: Policy,
    tracker: Tracker,
    recorder: Recorder,
}

impl Evaluator {
    pub async fn new(state: Arc<ControlState>, config: AlertsConfig) -> Self {
        let (recorder, active) = Recorder::load(&**state.directory.store()).await;
        let mut tracker = Tracker::default();
        for a in active {
            tracker.adopt(a);
        }
        Self {
            policy: super::policy::burn_policy(&config),
            state,
            config,
            tracker,
            recorder,
        }
    }

    pub async fn tick(&mut self) {
        let now = unix_ms();
        let store = self.state.directory.store().clone();
        let tiers = self.state.directory.tiers();
        let scopes = match windows::read(&*store, now, &self.config, tiers).await {
            Ok(s) => s,
            Err(e) => {
                // Without the numbers, nothing is decided: resolving everything because a
                // query failed would announce a recovery that did not happen.
                tracing::error!(target: "switchyard::alerts", error = %e, "cannot read SLIs; alerts not evaluated");
                return;
            }
        };
        let tracker = &self.tracker;
        let mut holding = burn_alerts::all(
            &scopes,
            &self.config,
            &self.policy,
            |name| tracker.scopes_of(name),
            now,
        );
        let strictest = tiers
            .values()
            .map(|l| l.slo_availability_bp)
            .max()
            .unwrap_or_else(|| switchyard_metering::Limits::default().slo_availability_bp);
        holding.extend(fleet_alerts::alerts(
            &self.state.fleet,
            &self.config,
            strictest,
            now,
        ));
        for t in self.tracker.update(holding, now) {
            let incident = self.recorder.record(&*store, &t).await;
            self.state.notifier.send(&t, incident, &self.config);
        }
        if self.tracker.is_empty() {
            self.recorder.close(&*store, now).await;
        }
        switchyard_gateway::metrics::alert_evaluated();
    }
}
