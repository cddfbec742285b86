//! Deduplication: the evaluator decides every interval which alerts hold; the tracker turns
//! that into transitions, so that a notification goes out once when an alert starts, once
//! if it escalates from ticket to page (someone must now be woken), and once when it
//! resolves, never on every evaluation in between.

use std::collections::BTreeMap;

use switchyard_slo::burn::Severity;

use super::alert::Alert;

/// An alert that is firing.
#[derive(Debug, Clone)]
pub struct Active {
    /// As last evaluated, with the highest severity it reached.
    pub alert: Alert,
    pub fired_at_ms: i64,
}

#[derive(Debug, Clone)]
pub enum Transition {
    Fired(Active),
    Escalated(Active),
    Resolved { active: Active, at_ms: i64 },
}

#[derive(Debug, Default)]
pub struct Tracker {
    active: BTreeMap<(String, String), Active>,
}

impl Tracker {
    /// Takes over alerts found firing at start (an incident left open by the last run), so
    /// that they are not announced again, and are announced resolved when they stop.
    pub fn adopt(&mut self, active: Active) {
        self.active.insert(active.alert.key(), active);
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// Scopes with a firing alert of this name.
    pub fn scopes_of(&self, name: &str) -> std::collections::BTreeSet<String> {
        self.active
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// The alerts holding now → what changed since the last evaluation.
    pub fn update(&mut self, holding: Vec<Alert>, now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for alert in holding {
            let key = alert.key();
            seen.insert(key.clone());
            match self.active.get_mut(&key) {
                None => {
                    let a = Active {
                        alert,
                        fired_at_ms: now_ms,
                    };
                    self.active.insert(key, a.clone());
                    out.push(Transition::Fired(a));
                }
                Some(a) => {
                    let escalated = alert.severity > a.alert.severity;
                    let severity = alert.severity.max(a.alert.severity);
                    // Keep the earliest start: the trouble began when it first showed.
                    let began_at_ms = a.alert.began_at_ms.min(alert.began_at_ms);
                    // The summary stays the one that was announced (at start or escalation):
                    // the incident log and the "resolved" notification then say what paged.
                    let summary = if escalated {
                        alert.summary.clone()
                    } else {
                        std::mem::take(&mut a.alert.summary)
                    };
                    a.alert = Alert {
                        severity,
                        began_at_ms,
                        summary,
                        ..alert
                    };
                    if escalated {
                        out.push(Transition::Escalated(a.clone()));
                    }
                }
            }
        }
        let gone: Vec<_> = self
            .active
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(active) = self.active.remove(&key) {
                out.push(Transition::Resolved {
                    active,
                    at_ms: now_ms,
                });
            }
        }
        out
    }
}

/// A severity as stored ("page" or "ticket"; anything else reads as a ticket).
pub fn severity(s: &str) -> Severity {
    Severity::parse(s).unwrap_or(Severity::Ticket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(scope: &str, severity: Severity) -> Alert {
        Alert {
            name: super::super::alert::SLO_BURN,
            scope: scope.into(),
            severity,
            summary: String::new(),
            began_at_ms: 0,
            slo_bp: 9990,
            burns: None,
            affected: Vec::new(),
        }
    }

    #[test]
    fn one_transition_per_start_escalation_and_end() {
        let mut t = Tracker::default();
        let fired = t.update(vec![alert("all", Severity::Ticket)], 1);
        assert!(matches!(fired.as_slice(), [Transition::Fired(_)]));
        assert!(t.update(vec![alert("all", Severity::Ticket)], 2).is_empty());
        let up = t.update(vec![alert("all", Severity::Page)], 3);
        assert!(matches!(up.as_slice(), [Transition::Escalated(a)] if a.fired_at_ms == 1));
        // Back to ticket level: no notification, and it stays a page.
        assert!(t.update(vec![alert("all", Severity::Ticket)], 4).is_empty());
        let end = t.update(vec![], 5);
        assert!(matches!(
            end.as_slice(),
            [Transition::Resolved { active, at_ms: 5 }]
                if active.alert.severity == Severity::Page
        ));
        assert!(t.is_empty());
        assert!(t.update(vec![], 6).is_empty());
    }
}
