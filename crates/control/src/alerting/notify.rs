//! Delivery: every transition is a log line (error for a page, warn otherwise), and, with
//! `webhook_url`, a JSON POST. Posting happens in its own task behind a bounded queue, so a
//! slow or dead receiver never holds up the evaluator: attempts are retried with doubling
//! waits up to `webhook_max_attempts`, one notification at a time (so "resolved" never
//! overtakes its "firing"), and when the queue is full new notifications are dropped with an
//! error in the log rather than kept without bound.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_slo::burn::{format_burn, Severity};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::burn_alerts::window_label;
use super::tracker::{Active, Transition};
use crate::admin::format_rfc3339;
use switchyard_config::AlertsConfig;

pub struct Notifier {
    tx: Option<mpsc::Sender<Value>>,
    /// The delivery task; aborted with the notifier (the evaluator's task owns both).
    task: Option<JoinHandle<()>>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Notifier {
    pub fn new(config: &AlertsConfig, client: reqwest::Client) -> Self {
        let Some(url) = config.webhook_url.clone() else {
            return Self {
                tx: None,
                task: None,
            };
        };
        let (tx, rx) = mpsc::channel(config.webhook_queue.max(1));
        let task = tokio::spawn(deliver(rx, client, url, config.clone()));
        Self {
            tx: Some(tx),
            task: Some(task),
        }
    }

    /// Logs the transition and queues its webhook; never waits.
    pub fn send(&self, t: &Transition, incident_id: Option<i64>, config: &AlertsConfig) {
        let body = payload(t, incident_id, config);
        log(t, &body);
        self.queue(body);
    }

    /// Announces a maintenance window as it is declared (`"status": "scheduled"`), so that the
    /// notice the SLA addendum asks for goes out when the window is made.
    pub fn maintenance_announced(&self, window: &Value) {
        tracing::warn!(target: "switchyard::alerts", window = %window, "maintenance window announced");
        self.queue(json!({
            "status": "scheduled",
            "alert": "maintenance_announced",
            "severity": "info",
            "scope": window["scope"],
            "summary": format!(
                "maintenance {} to {} ({} min, scope {}): {}",
                window["start"].as_str().unwrap_or(""),
                window["end"].as_str().unwrap_or(""),
                window["minutes"],
                window["scope"].as_str().unwrap_or(""),
                window["note"].as_str().unwrap_or(""),
            ),
            "maintenance": window,
            "source": "switchyard",
        }));
    }

    fn queue(&self, body: Value) {
        let Some(tx) = &self.tx else {
            return;
        };
        if let Err(e) = tx.try_send(body) {
            tracing::error!(target: "switchyard::alerts", error = %e, "alert webhook queue full or closed; notification dropped");
        }
    }
}

fn log(t: &Transition, body: &Value) {
    let (a, status) = match t {
        Transition::Fired(a) => (a, "firing"),
        Transition::Escalated(a) => (a, "escalated"),
        Transition::Resolved { active, .. } => (active, "resolved"),
    };
    let alert = &a.alert;
    let burns = body["burn_rates"].to_string();
    if alert.severity == Severity::Page && status != "resolved" {
        tracing::error!(target: "switchyard::alerts", alert = alert.name, scope = %alert.scope,
            severity = alert.severity.as_str(), status, burn_rates = %burns, "{}", alert.summary);
    } else {
        tracing::warn!(target: "switchyard::alerts", alert = alert.name, scope = %alert.scope,
            severity = alert.severity.as_str(), status, burn_rates = %burns, "{}", alert.summary);
    }
}

/// The webhook's JSON: one object per notification.
pub fn payload(t: &Transition, incident_id: Option<i64>, config: &AlertsConfig) -> Value {
    let (a, status, resolved_at): (&Active, &str, Option<i64>) = match t {
        Transition::Fired(a) => (a, "firing", None),
        Transition::Escalated(a) => (a, "firing", None),
        Transition::Resolved { active, at_ms } => (active, "resolved", Some(*at_ms)),
    };
    let alert = &a.alert;
    let burn_rates = match &alert.burns {
        Some(b) => {
            let rate = |m: u64| match m {
                u64::MAX => Value::String("inf".into()),
                m => json!(format_burn(m).parse::<f64>().unwrap_or(0.0)),
            };
            json!({
                window_label(config.page_short_window_ms): rate(b.short_page),
                window_label(config.page_long_window_ms): rate(b.long_page),
                window_label(config.ticket_short_window_ms): rate(b.short_ticket),
                window_label(config.ticket_long_window_ms): rate(b.long_ticket),
            })
        }
        None => json!({}),
    };
    json!({
        "status": status,
        "escalated": matches!(t, Transition::Escalated(_)),
        "alert": alert.name,
        "severity": alert.severity.as_str(),
        "scope": alert.scope,
        "affected": alert.affected,
        "summary": alert.summary,
        "burn_rates": burn_rates,
        "slo": switchyard_slo::availability::format_bp_percent(u64::from(alert.slo_bp)),
        "started_at": format_rfc3339(a.fired_at_ms),
        "began_at": format_rfc3339(alert.began_at_ms),
        "resolved_at": resolved_at.map(format_rfc3339),
        "incident_id": incident_id,
        "source": "switchyard",
    })
}

async fn deliver(
    mut rx: mpsc::Receiver<Value>,
    client: reqwest::Client,
    url: String,
    config: AlertsConfig,
) {
    let timeout = Duration::from_millis(config.webhook_timeout_ms);
    while let Some(body) = rx.recv().await {
        let mut wait = Duration::from_millis(config.webhook_backoff_ms);
        for attempt in 1..=config.webhook_max_attempts {
            let sent = client.post(&url).timeout(timeout).json(&body).send().await;
            let error = match sent {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            if attempt == config.webhook_max_attempts {
                tracing::error!(target: "switchyard::alerts", attempts = attempt, error = %error,
                    alert = %body["alert"], status = %body["status"], "alert webhook not delivered; giving up");
                break;
            }
            tracing::warn!(target: "switchyard::alerts", attempt, error = %error, retry_in_ms = wait.as_millis() as u64,
                "alert webhook failed; retrying");
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
    }
}
