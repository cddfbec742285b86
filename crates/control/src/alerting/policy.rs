//! `[alerts]`'s burn-rate thresholds as the exact thousandths `switchyard_slo::burn` decides by.

use switchyard_config::AlertsConfig;
use switchyard_slo::burn::{BurnRule, Policy, BURN_ONE};

/// A burn-rate multiple as exact thousandths (14.4 → 14,400).
fn milli(rate: f64) -> u64 {
    // Validated finite and positive on load; the cast saturates anyway.
    (rate * BURN_ONE as f64).round() as u64
}

pub fn burn_policy(config: &AlertsConfig) -> Policy {
    Policy {
        page: BurnRule {
            threshold_milli: milli(config.page_burn_rate),
            min_requests: config.min_requests,
        },
        ticket: BurnRule {
            threshold_milli: milli(config.ticket_burn_rate),
            min_requests: config.min_requests,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workbooks_rates_become_exact_thousandths() {
        let p = burn_policy(&AlertsConfig::default());
        assert_eq!(p.page.threshold_milli, 14_400);
        assert_eq!(p.ticket.threshold_milli, 6_000);
        assert_eq!(p.page.min_requests, 10);
    }
}
