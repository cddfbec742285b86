//! Alerts read from the fleet's own state rather than from traffic: a worker whose last
//! synthetic probe failed (it answers health checks but not a prompt, or not in time), a worker
//! whose usage reports were refused lately (it claimed more than the request allows: a billing
//! attack or a broken runtime), and a model with no worker in rotation (every request for it is
//! a 503 now, whatever the budget says, and a quiet model would take a long time to burn it).

use std::collections::BTreeMap;

use switchyard_fleet::{Fleet, Worker};
use switchyard_slo::burn::Severity;

use super::alert::{Alert, MODEL_UNAVAILABLE, PROBE_FAILED, USAGE_REJECTED};
use switchyard_config::AlertsConfig;

/// A refused usage report keeps its worker's alert firing this long.
const USAGE_REJECTED_FOR_MS: i64 = 15 * 60 * 1000;

pub fn alerts(fleet: &Fleet, config: &AlertsConfig, slo_bp: u32, now_ms: i64) -> Vec<Alert> {
    let workers = fleet.workers();
    let mut out = Vec::new();
    if config.probe_alerts {
        out.extend(workers.iter().filter_map(|w| probe_alert(w, slo_bp)));
    }
    out.extend(
        workers
            .iter()
            .filter_map(|w| usage_alert(w, slo_bp, now_ms)),
    );
    if config.rotation_alerts {
        let mut by_model: BTreeMap<&str, Vec<&Worker>> = BTreeMap::new();
        for w in &workers {
            by_model.entry(w.spec.model.as_str()).or_default().push(w);
        }
        for (model, pool) in by_model {
            if pool.iter().any(|w| w.is_healthy()) {
                continue;
            }
            // Since the last of them left rotation.
            let began_at_ms = pool
                .iter()
                .map(|w| w.health_view().since_unix_ms)
                .max()
                .unwrap_or_default();
            let states: Vec<String> = pool
                .iter()
                .map(|w| {
                    let state = format!("{:?}", w.state()).to_lowercase();
                    format!("{} {state}", w.spec.name)
                })
                .collect();
            out.push(Alert {
                name: MODEL_UNAVAILABLE,
                scope: format!("model:{model}"),
                severity: Severity::Page,
                summary: format!(
                    "model {model} has no worker in rotation ({})",
                    states.join(", ")
                ),
                began_at_ms,
                slo_bp,
                burns: None,
                affected: Vec::new(),
            });
        }
    }
    out
}

fn probe_alert(w: &Worker, slo_bp: u32) -> Option<Alert> {
    let probe = w.health_view().last_probe.filter(|p| !p.passed)?;
    let why = probe.error.as_deref().unwrap_or("failed");
    Some(Alert {
        name: PROBE_FAILED,
        scope: format!("worker:{}", w.spec.name),
        // One worker failing its probe is a worker for someone to look at; customers are
        // covered by failover, and by the page above if the whole model goes.
        severity: Severity::Ticket,
        summary: format!(
            "synthetic probe of worker {} (model {}, provider {}, region {}) failed: {why}",
            w.spec.name, w.spec.model, w.spec.provider, w.spec.region
        ),
        began_at_ms: probe.at_unix_ms,
        slo_bp,
        burns: None,
        affected: vec![
            format!("model:{}", w.spec.model),
            format!("region:{}", w.spec.region),
        ],
    })
}

fn usage_alert(w: &Worker, slo_bp: u32, now_ms: i64) -> Option<Alert> {
    let r = w
        .health_view()
        .usage_rejected
        .filter(|r| now_ms.saturating_sub(r.at_unix_ms) < USAGE_REJECTED_FOR_MS)?;
    Some(Alert {
        name: USAGE_REJECTED,
        scope: format!("worker:{}", w.spec.name),
        // Nobody was overbilled (the gateway's own count was billed); someone must find out
        // whether the worker is broken or lying.
        severity: Severity::Ticket,
        summary: format!(
            "worker {} (model {}, provider {}) reported usage the gateway refused ({} so far; last: {})",
            w.spec.name, w.spec.model, w.spec.provider, r.count, r.claim
        ),
        began_at_ms: r.at_unix_ms,
        slo_bp,
        burns: None,
        affected: vec![format!("model:{}", w.spec.model)],
    })
}
