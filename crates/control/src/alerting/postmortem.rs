//! An incident as a post-mortem template in Markdown: what the data says (summary, timeline,
//! impact) filled in, what only people know (root cause, action items) left as headings.

use std::fmt::Write;

use switchyard_metering::incident::{Impact, Incident};
use switchyard_slo::availability::format_bp_percent;

use super::impact::format_budget_bp;
use crate::admin::format_rfc3339;

fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

pub fn render(inc: &Incident, impact: &Impact, now_ms: i64) -> String {
    let mut md = String::new();
    let end = inc.ended_at_ms.unwrap_or(now_ms);
    let status = if inc.ended_at_ms.is_some() {
        "resolved"
    } else {
        "ongoing"
    };
    let slo = format_bp_percent(u64::from(inc.slo_bp));
    let budget = format_budget_bp(impact.budget_spent_bp);
    // Writing to a String cannot fail.
    let _ = writeln!(md, "# Incident {}: {}\n", inc.id, inc.title);
    let _ = writeln!(md, "- **Status:** {status}");
    let _ = writeln!(md, "- **Severity:** {}", inc.severity);
    let _ = writeln!(md, "- **Scope:** {}", inc.scopes.join(", "));
    let _ = writeln!(
        md,
        "- **Duration:** {}{}",
        duration(end - inc.started_at_ms),
        if inc.ended_at_ms.is_none() {
            " so far"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "- **Time to detect:** {}\n",
        duration(inc.detected_at_ms - inc.started_at_ms)
    );

    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(
        md,
        "{}. {} of {} requests in scope failed; {} bad minute(s) spent {budget} of the month's \
         error budget (SLO {slo}%); {} tenant(s) affected.\n",
        inc.title,
        impact.requests_failed,
        impact.requests,
        impact.bad_minutes,
        impact.tenants_affected,
    );

    let _ = writeln!(md, "## Timeline (UTC)\n");
    let _ = writeln!(md, "| Time | Event |\n|---|---|");
    let mut events: Vec<(i64, u8, String)> = vec![
        (
            inc.started_at_ms,
            0,
            "Start: trouble began (as far as the first alert's window shows)".into(),
        ),
        (inc.detected_at_ms, 1, "Detection: first alert fired".into()),
    ];
    for a in &inc.alerts {
        events.push((
            a.fired_at_ms,
            2,
            format!(
                "Alert `{}` ({}) fired for `{}`: {}",
                a.name, a.severity, a.scope, a.summary
            ),
        ));
        if let Some(at) = a.resolved_at_ms {
            events.push((
                at,
                3,
                format!("Alert `{}` for `{}` resolved", a.name, a.scope),
            ));
        }
    }
    if let Some(at) = inc.ended_at_ms {
        events.push((at, 4, "End: last alert resolved, incident closed".into()));
    }
    events.sort();
    for (at, _, what) in events {
        let _ = writeln!(
            md,
            "| {} | {} |",
            format_rfc3339(at),
            what.replace('|', "\\|")
        );
    }

    let _ = writeln!(md, "\n## Impact\n");
    let _ = writeln!(md, "- Requests in scope: {}", impact.requests);
    let _ = writeln!(md, "- Requests failed: {}", impact.requests_failed);
    let _ = writeln!(md, "- Minutes bad: {}", impact.bad_minutes);
    let _ = writeln!(
        md,
        "- Error budget spent: {budget} of the month's (SLO {slo}%)"
    );
    let _ = writeln!(md, "- Tenants affected: {}", impact.tenants_affected);

    for heading in [
        "Root cause",
        "Resolution",
        "What went well",
        "What went wrong",
        "Action items",
    ] {
        let _ = writeln!(md, "\n## {heading}\n\n_To be filled in._");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_metering::incident::IncidentAlert;

    #[test]
    fn the_template_carries_the_data() {
        let inc = Incident {
            id: 7,
            started_at_ms: 1_788_220_800_000,
            detected_at_ms: 1_788_220_860_000,
            ended_at_ms: Some(1_788_221_100_000),
            scopes: vec!["all".into()],
            severity: "page".into(),
            title: "error budget of all burning".into(),
            slo_bp: 9990,
            alerts: vec![IncidentAlert {
                name: "slo_burn_rate".into(),
                scope: "all".into(),
                severity: "page".into(),
                summary: "burning 1000x".into(),
                fired_at_ms: 1_788_220_860_000,
                resolved_at_ms: Some(1_788_221_100_000),
            }],
            impact: None,
        };
        let impact = Impact {
            requests: 200,
            requests_failed: 120,
            bad_minutes: 5,
            budget_spent_bp: 1158,
            tenants_affected: 2,
        };
        let md = render(&inc, &impact, 0);
        assert!(md.starts_with("# Incident 7: error budget of all burning"));
        assert!(md.contains("- **Duration:** 5m 00s"));
        assert!(md.contains("- **Time to detect:** 1m 00s"));
        assert!(md.contains("| 2026-09-01T00:01:00Z | Detection: first alert fired |"));
        assert!(md.contains("- Error budget spent: 11.58% of the month's (SLO 99.90%)"));
        assert!(md.contains("## Root cause"));
        assert!(md.contains("## Action items"));
    }
}
