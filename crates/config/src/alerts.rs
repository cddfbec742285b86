//! `[alerts]`: how often the evaluator runs, where alerts go, and the burn-rate rules. The
//! defaults are the Google SRE workbook's (page at 14.4× over 1 h and 5 m, ticket at 6× over
//! 6 h and 30 m); the window lengths are configurable so that tests (and drills) can run the
//! same rules over seconds.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub enabled: bool,
    /// How often SLIs are recomputed and alerts decided.
    pub interval_ms: u64,
    /// POSTed a JSON object per alert start, escalation and resolution. Log lines are
    /// written either way.
    pub webhook_url: Option<String>,
    /// Per delivery attempt.
    pub webhook_timeout_ms: u64,
    /// Attempts per notification (1 = no retry); the wait doubles from `webhook_backoff_ms`.
    pub webhook_max_attempts: u32,
    pub webhook_backoff_ms: u64,
    /// Notifications waiting for delivery; beyond, new ones are dropped (and logged) rather
    /// than held in memory without bound while the receiver is down.
    pub webhook_queue: usize,
    /// Burn rates (multiples of the budget's sustainable rate) that page and open a ticket.
    pub page_burn_rate: f64,
    pub ticket_burn_rate: f64,
    pub page_long_window_ms: u64,
    pub page_short_window_ms: u64,
    pub ticket_long_window_ms: u64,
    pub ticket_short_window_ms: u64,
    /// A scope needs this many requests in a rule's long window before it can alert.
    pub min_requests: u64,
    /// Alert on a worker whose last synthetic probe failed.
    pub probe_alerts: bool,
    /// Page when a model has no worker in rotation.
    pub rotation_alerts: bool,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 30_000,
            webhook_url: None,
            webhook_timeout_ms: 5_000,
            webhook_max_attempts: 5,
            webhook_backoff_ms: 1_000,
            webhook_queue: 1_024,
            page_burn_rate: 14.4,
            ticket_burn_rate: 6.0,
            page_long_window_ms: 3_600_000,
            page_short_window_ms: 300_000,
            ticket_long_window_ms: 21_600_000,
            ticket_short_window_ms: 1_800_000,
            min_requests: 10,
            probe_alerts: true,
            rotation_alerts: true,
        }
    }
}

impl AlertsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.interval_ms == 0 {
            return Err(
                "alerts.interval_ms must be positive (or set alerts.enabled = false)".into(),
            );
        }
        for (key, rate) in [
            ("page_burn_rate", self.page_burn_rate),
            ("ticket_burn_rate", self.ticket_burn_rate),
        ] {
            if !(rate.is_finite() && rate > 0.0 && rate <= 1e6) {
                return Err(format!(
                    "alerts.{key} must be a positive number, not {rate}"
                ));
            }
        }
        for (rule, short, long) in [
            ("page", self.page_short_window_ms, self.page_long_window_ms),
            (
                "ticket",
                self.ticket_short_window_ms,
                self.ticket_long_window_ms,
            ),
        ] {
            if short == 0 || short >= long {
                return Err(format!(
                    "alerts.{rule}_short_window_ms ({short}) must be positive and less than alerts.{rule}_long_window_ms ({long})"
                ));
            }
        }
        if !(1..=20).contains(&self.webhook_max_attempts) {
            return Err("alerts.webhook_max_attempts must be between 1 and 20".into());
        }
        if self.webhook_timeout_ms == 0 || self.webhook_queue == 0 {
            return Err(
                "alerts.webhook_timeout_ms and alerts.webhook_queue must be positive".into(),
            );
        }
        if let Some(url) = &self.webhook_url {
            let parsed = url::Url::parse(url)
                .map_err(|e| format!("alerts.webhook_url '{url}' is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(format!(
                    "alerts.webhook_url '{url}' must be an http:// or https:// URL with a host"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_workbooks_and_valid() {
        let c = AlertsConfig::default();
        c.validate().unwrap();
        assert_eq!((c.page_burn_rate, c.ticket_burn_rate), (14.4, 6.0));
    }

    #[test]
    fn bad_values_are_named() {
        let bad = |f: fn(&mut AlertsConfig)| {
            let mut c = AlertsConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.interval_ms = 0).contains("interval_ms"));
        assert!(bad(|c| c.page_burn_rate = f64::NAN).contains("page_burn_rate"));
        assert!(bad(|c| c.ticket_short_window_ms = c.ticket_long_window_ms).contains("ticket"));
        assert!(bad(|c| c.webhook_url = Some("ftp://x".into())).contains("webhook_url"));
        assert!(bad(|c| c.webhook_url = Some("not a url".into())).contains("webhook_url"));
        assert!(bad(|c| c.webhook_max_attempts = 0).contains("webhook_max_attempts"));
        let mut off = AlertsConfig {
            enabled: false,
            ..AlertsConfig::default()
        };
        off.interval_ms = 0;
        off.validate().unwrap();
    }
}
