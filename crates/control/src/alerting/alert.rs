//! What an alert is: a named condition on a scope, with a severity and what it saw.

use switchyard_slo::burn::{Burns, Severity};

/// Error budget burning too fast for a scope (`all`, `tier:<t>`, `model:<m>`).
pub const SLO_BURN: &str = "slo_burn_rate";
/// The 5xx objective's budget (0.2% of requests) burning too fast for a scope.
pub const SLO_5XX_BURN: &str = "slo_5xx_burn_rate";
/// The throttling objective's budget (1% of requests shed for capacity) burning too fast.
pub const SLO_THROTTLED_BURN: &str = "slo_throttled_burn_rate";
/// A worker's last synthetic probe failed (`worker:<w>`).
pub const PROBE_FAILED: &str = "probe_failed";
/// A model has no worker in rotation (`model:<m>`).
pub const MODEL_UNAVAILABLE: &str = "model_unavailable";
/// A worker reported usage the gateway refused to bill, recently (`worker:<w>`).
pub const USAGE_REJECTED: &str = "worker_usage_rejected";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub name: &'static str,
    pub scope: String,
    pub severity: Severity,
    pub summary: String,
    /// When the trouble began as far as this alert can tell: the failed probe, the moment
    /// the model's last worker left rotation, the start of the short burn window.
    pub began_at_ms: i64,
    /// The SLO its budget figures are against, in bp.
    pub slo_bp: u32,
    /// Burn rates, for burn alerts.
    pub burns: Option<Burns>,
    /// Narrower scopes burning as well, folded into this one.
    pub affected: Vec<String>,
}

impl Alert {
    pub fn key(&self) -> (String, String) {
        (self.name.to_string(), self.scope.clone())
    }
}

/// An alert's name as stored back to the `&'static` one (unknown names: the burn alert, so
/// that an incident left open by a newer version still resolves).
pub fn static_name(name: &str) -> &'static str {
    match name {
        PROBE_FAILED => PROBE_FAILED,
        MODEL_UNAVAILABLE => MODEL_UNAVAILABLE,
        USAGE_REJECTED => USAGE_REJECTED,
        SLO_5XX_BURN => SLO_5XX_BURN,
        SLO_THROTTLED_BURN => SLO_THROTTLED_BURN,
        _ => SLO_BURN,
    }
}
