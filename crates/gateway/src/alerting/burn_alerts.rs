//! Which scopes' error budgets are burning too fast, as alerts.
//!
//! One outage shows in several scopes at once (the fleet, the tier its tenants are on, the
//! model it serves), and three pages for one outage teach people to ignore pages. So while
//! the fleet-wide (`all`) alert is firing, narrower scopes that start burning are folded into
//! it (listed in its `affected`) instead of alerting on their own; a narrower alert already
//! firing keeps going until it resolves, so nothing flaps. When only part of the fleet burns
//! (one model among many), its own scope alerts.

use std::collections::BTreeSet;

use switchyard_slo::burn::{decide, format_burn, Policy, Severity};

use super::alert::{Alert, SLO_BURN};
use super::config::AlertsConfig;
use super::windows::Scopes;

/// `active`: the scopes whose burn alert is firing now (before this evaluation).
pub fn alerts(
    scopes: &Scopes,
    config: &AlertsConfig,
    policy: &Policy,
    active: &BTreeSet<String>,
    now_ms: i64,
) -> Vec<Alert> {
    let mut firing: Vec<Alert> = scopes
        .iter()
        .filter_map(|(scope, s)| {
            let severity = decide(&s.windows, s.slo_bp, policy)?;
            let burns = s.windows.burns(s.slo_bp);
            let (long, short, long_ms, short_ms) = match severity {
                Severity::Page => (
                    burns.long_page,
                    burns.short_page,
                    config.page_long_window_ms,
                    config.page_short_window_ms,
                ),
                Severity::Ticket => (
                    burns.long_ticket,
                    burns.short_ticket,
                    config.ticket_long_window_ms,
                    config.ticket_short_window_ms,
                ),
            };
            let w = match severity {
                Severity::Page => s.windows.long_page,
                Severity::Ticket => s.windows.long_ticket,
            };
            Some(Alert {
                name: SLO_BURN,
                scope: scope.clone(),
                severity,
                summary: format!(
                    "error budget of {scope} burning {}x over {} and {}x over {} \
                     ({} of {} requests bad, SLO {})",
                    format_burn(long),
                    window_label(long_ms),
                    format_burn(short),
                    window_label(short_ms),
                    w.bad,
                    w.eligible,
                    switchyard_slo::availability::format_bp_percent(u64::from(s.slo_bp)),
                ),
                began_at_ms: now_ms - i64::try_from(short_ms).unwrap_or(0),
                slo_bp: s.slo_bp,
                burns: Some(burns),
                affected: Vec::new(),
            })
        })
        .collect();
    let fleet_wide = firing.iter().any(|a| a.scope == "all") || active.contains("all");
    if fleet_wide {
        let mut folded = Vec::new();
        firing.retain(|a| {
            let keep = a.scope == "all" || active.contains(&a.scope);
            if !keep {
                folded.push(a.scope.clone());
            }
            keep
        });
        if let Some(all) = firing.iter_mut().find(|a| a.scope == "all") {
            all.affected = folded;
        }
    }
    firing
}

/// "5m", "1h", "6h", "30m", "90s", "1500ms": how windows are named in payloads and logs.
pub fn window_label(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::windows::ScopeWindows;
    use switchyard_slo::burn::{WindowCounts, Windows};

    fn burning(bad: u64) -> ScopeWindows {
        let w = WindowCounts { eligible: 100, bad };
        ScopeWindows {
            windows: Windows {
                short_page: w,
                long_page: w,
                short_ticket: w,
                long_ticket: w,
            },
            slo_bp: 9990,
        }
    }

    #[test]
    fn narrow_scopes_fold_into_the_fleet_wide_alert() {
        let config = AlertsConfig::default();
        let policy = config.policy();
        let scopes = Scopes::from([
            ("all".to_string(), burning(50)),
            ("model:m".to_string(), burning(50)),
            ("tier:pro".to_string(), burning(50)),
        ]);
        let a = alerts(&scopes, &config, &policy, &BTreeSet::new(), 0);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].scope, "all");
        assert_eq!(a[0].severity, Severity::Page);
        assert_eq!(a[0].affected, ["model:m", "tier:pro"]);
        assert!(a[0].summary.contains("500.0x over 1h"), "{}", a[0].summary);
        // A model alert already firing stays its own alert.
        let active = BTreeSet::from(["model:m".to_string()]);
        let a = alerts(&scopes, &config, &policy, &active, 0);
        assert_eq!(a.len(), 2);
        // Only one model burning: it alerts alone.
        let scopes = Scopes::from([
            ("all".to_string(), burning(0)),
            ("model:m".to_string(), burning(1)),
        ]);
        let a = alerts(&scopes, &config, &policy, &BTreeSet::new(), 0);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].scope, "model:m");
    }

    #[test]
    fn windows_have_short_names() {
        assert_eq!(window_label(300_000), "5m");
        assert_eq!(window_label(3_600_000), "1h");
        assert_eq!(window_label(21_600_000), "6h");
        assert_eq!(window_label(2_000), "2s");
        assert_eq!(window_label(1_500), "1500ms");
    }
}
