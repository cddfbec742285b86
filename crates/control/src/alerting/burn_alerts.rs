//! Which scopes' error budgets are burning too fast, as alerts: the availability SLO's (the
//! tier's target), and those of the addendum's two error-rate objectives (5xx ≤ 0.2%, requests
//! shed for capacity ≤ 1%), each with the same windows, thresholds and severities.
//!
//! One outage shows in several scopes at once (the fleet, the tier its tenants are on, the
//! model it serves), and three pages for one outage teach people to ignore pages. So while
//! the fleet-wide (`all`) alert is firing, narrower scopes that start burning are folded into
//! it (listed in its `affected`) instead of alerting on their own; a narrower alert already
//! firing keeps going until it resolves, so nothing flaps. When only part of the fleet burns
//! (one model among many), its own scope alerts.

use std::collections::BTreeSet;

use switchyard_slo::burn::{decide, format_burn, Policy, Severity, Windows};
use switchyard_slo::objectives::{FIVE_XX_TARGET_BP, THROTTLED_TARGET_BP};

use super::alert::{Alert, SLO_5XX_BURN, SLO_BURN, SLO_THROTTLED_BURN};
use super::windows::{ScopeWindows, Scopes};
use switchyard_config::AlertsConfig;

/// One budget the burn alerts watch.
pub struct Objective {
    pub name: &'static str,
    /// How an alert folded into the availability alert names it (`objective:<label>`).
    label: &'static str,
    /// How a summary names it.
    what: &'static str,
    windows: fn(&ScopeWindows) -> &Windows,
    target_bp: fn(&ScopeWindows) -> u32,
}

pub const OBJECTIVES: [Objective; 3] = [
    Objective {
        name: SLO_BURN,
        label: "availability",
        what: "error budget",
        windows: |s| &s.windows,
        target_bp: |s| s.slo_bp,
    },
    Objective {
        name: SLO_5XX_BURN,
        label: "errors_5xx",
        what: "5xx budget (0.2%)",
        windows: |s| &s.errors_5xx,
        target_bp: |_| FIVE_XX_TARGET_BP,
    },
    Objective {
        name: SLO_THROTTLED_BURN,
        label: "throttled",
        what: "throttling budget (1% shed)",
        windows: |s| &s.throttled,
        target_bp: |_| THROTTLED_TARGET_BP,
    },
];

/// Every objective's alerts; `active(name)`: the scopes whose alert `name` is firing now
/// (before this evaluation). An outage that burns several budgets of one scope at once (a
/// worker failing every request burns availability and the 5xx objective alike) is one alert:
/// while a scope's availability alert fires, its other objectives burning are listed in its
/// `affected` (`objective:errors_5xx`) rather than notified on their own.
pub fn all(
    scopes: &Scopes,
    config: &AlertsConfig,
    policy: &Policy,
    active: impl Fn(&str) -> BTreeSet<String>,
    now_ms: i64,
) -> Vec<Alert> {
    let [availability, others @ ..] = &OBJECTIVES;
    let mut firing = alerts(
        availability,
        scopes,
        config,
        policy,
        &active(availability.name),
        now_ms,
    );
    for objective in others {
        let already = active(objective.name);
        for alert in alerts(objective, scopes, config, policy, &already, now_ms) {
            let covering = firing
                .iter_mut()
                .find(|a| a.name == availability.name && a.scope == alert.scope);
            match covering {
                // An alert of its own already firing keeps going until it resolves.
                Some(a) if !already.contains(&alert.scope) => {
                    a.affected.push(format!("objective:{}", objective.label));
                }
                _ => firing.push(alert),
            }
        }
    }
    firing
}

/// `active`: the scopes whose alert of this objective is firing now.
pub fn alerts(
    objective: &Objective,
    scopes: &Scopes,
    config: &AlertsConfig,
    policy: &Policy,
    active: &BTreeSet<String>,
    now_ms: i64,
) -> Vec<Alert> {
    let mut firing: Vec<Alert> = scopes
        .iter()
        .filter_map(|(scope, s)| {
            let (windows, slo_bp) = ((objective.windows)(s), (objective.target_bp)(s));
            let severity = decide(windows, slo_bp, policy)?;
            let burns = windows.burns(slo_bp);
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
                Severity::Page => windows.long_page,
                Severity::Ticket => windows.long_ticket,
            };
            Some(Alert {
                name: objective.name,
                scope: scope.clone(),
                severity,
                summary: format!(
                    "{} of {scope} burning {}x over {} and {}x over {} \
                     ({} of {} requests bad, SLO {})",
                    objective.what,
                    format_burn(long),
                    window_label(long_ms),
                    format_burn(short),
                    window_label(short_ms),
                    w.bad,
                    w.eligible,
                    switchyard_slo::availability::format_bp_percent(u64::from(slo_bp)),
                ),
                began_at_ms: now_ms - i64::try_from(short_ms).unwrap_or(0),
                slo_bp,
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
            ..ScopeWindows::default()
        }
    }

    #[test]
    fn narrow_scopes_fold_into_the_fleet_wide_alert() {
        let config = AlertsConfig::default();
        let policy = crate::alerting::policy::burn_policy(&config);
        let scopes = Scopes::from([
            ("all".to_string(), burning(50)),
            ("model:m".to_string(), burning(50)),
            ("tier:pro".to_string(), burning(50)),
        ]);
        let a = alerts(
            &OBJECTIVES[0],
            &scopes,
            &config,
            &policy,
            &BTreeSet::new(),
            0,
        );
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].scope, "all");
        assert_eq!(a[0].severity, Severity::Page);
        assert_eq!(a[0].affected, ["model:m", "tier:pro"]);
        assert!(a[0].summary.contains("500.0x over 1h"), "{}", a[0].summary);
        // A model alert already firing stays its own alert.
        let active = BTreeSet::from(["model:m".to_string()]);
        let a = alerts(&OBJECTIVES[0], &scopes, &config, &policy, &active, 0);
        assert_eq!(a.len(), 2);
        // Only one model burning: it alerts alone.
        let scopes = Scopes::from([
            ("all".to_string(), burning(0)),
            ("model:m".to_string(), burning(1)),
        ]);
        let a = alerts(
            &OBJECTIVES[0],
            &scopes,
            &config,
            &policy,
            &BTreeSet::new(),
            0,
        );
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].scope, "model:m");
    }

    #[test]
    fn the_5xx_and_throttling_objectives_alert_on_their_own_budgets() {
        let config = AlertsConfig::default();
        let policy = crate::alerting::policy::burn_policy(&config);
        // 3% of requests shed: within a 99.9% availability budget? No: 30x. Within the 0.2%
        // 5xx budget? 15x. Within the 1% throttling budget? 3x: no alert for it.
        let w = |bad| {
            let c = WindowCounts {
                eligible: 1_000,
                bad,
            };
            Windows {
                short_page: c,
                long_page: c,
                short_ticket: c,
                long_ticket: c,
            }
        };
        let scopes = Scopes::from([(
            "all".to_string(),
            ScopeWindows {
                windows: w(30),
                errors_5xx: w(30),
                throttled: w(30),
                slo_bp: 9990,
            },
        )]);
        let a = all(&scopes, &config, &policy, |_| BTreeSet::new(), 0);
        // One outage, one alert: the 5xx budget burning too is listed in it.
        let names: Vec<_> = a.iter().map(|a| (a.name, a.severity)).collect();
        assert_eq!(names, [(SLO_BURN, Severity::Page)]);
        assert_eq!(a[0].affected, ["objective:errors_5xx"]);
        // Alone, the 5xx objective's alert is its own.
        let only_5xx = Scopes::from([(
            "all".to_string(),
            ScopeWindows {
                errors_5xx: w(30),
                slo_bp: 9990,
                ..ScopeWindows::default()
            },
        )]);
        let a = all(&only_5xx, &config, &policy, |_| BTreeSet::new(), 0);
        assert_eq!((a[0].name, a[0].severity), (SLO_5XX_BURN, Severity::Page));
        assert!(
            a[0].summary
                .starts_with("5xx budget (0.2%) of all burning 15.0x"),
            "{}",
            a[0].summary
        );
        // 10% shed: 10x the throttling budget over every window: a ticket.
        let scopes = Scopes::from([(
            "all".to_string(),
            ScopeWindows {
                throttled: w(100),
                slo_bp: 9990,
                ..ScopeWindows::default()
            },
        )]);
        let a = all(&scopes, &config, &policy, |_| BTreeSet::new(), 0);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].name, a[0].severity),
            (SLO_THROTTLED_BURN, Severity::Ticket)
        );
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
