//! SLIs per scope over the four alert windows: the overall traffic, each tier's, model's,
//! tenant's, region's and provider's, read through the store's exact-window query (rollups for whole minutes, raw rows
//! for the current one), four queries per evaluation whatever the traffic.

use std::collections::BTreeMap;

use switchyard_metering::incident::ScopedCounts;
use switchyard_metering::{Limits, Store, StoreError};
use switchyard_slo::burn::{WindowCounts, Windows};

use switchyard_config::AlertsConfig;

/// One scope's counts and the SLO they are judged against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeWindows {
    /// Availability: bad requests (a 5xx or a slow first token) among those the SLI counts.
    pub windows: Windows,
    /// The 5xx objective's: 5xx among the same requests.
    pub errors_5xx: Windows,
    /// The throttling objective's: requests shed for capacity among the same requests.
    pub throttled: Windows,
    /// A tier's own SLO; for a model or the whole fleet, the strictest among the tiers with
    /// traffic in it (the one whose customers notice first).
    pub slo_bp: u32,
}

/// Scope name → its windows. `all` is always present once there is any traffic.
pub type Scopes = BTreeMap<String, ScopeWindows>;

/// Which of a scope's four windows a query's rows go to.
type Field = fn(&mut Windows) -> &mut WindowCounts;

pub async fn read(
    store: &dyn Store,
    now_ms: i64,
    config: &AlertsConfig,
    tiers: &BTreeMap<String, Limits>,
) -> Result<Scopes, StoreError> {
    let span = |ms: u64| now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX));
    let short_page = store
        .sli_window(span(config.page_short_window_ms), now_ms)
        .await?;
    let long_page = store
        .sli_window(span(config.page_long_window_ms), now_ms)
        .await?;
    let short_ticket = store
        .sli_window(span(config.ticket_short_window_ms), now_ms)
        .await?;
    let long_ticket = store
        .sli_window(span(config.ticket_long_window_ms), now_ms)
        .await?;
    let mut scopes = Scopes::new();
    let pick: [(&[ScopedCounts], Field); 4] = [
        (&short_page, |w| &mut w.short_page),
        (&long_page, |w| &mut w.long_page),
        (&short_ticket, |w| &mut w.short_ticket),
        (&long_ticket, |w| &mut w.long_ticket),
    ];
    for (rows, field) in pick {
        for row in rows {
            add(&mut scopes, row, field, tiers);
        }
    }
    Ok(scopes)
}

fn slo_of(tier: &str, tiers: &BTreeMap<String, Limits>) -> u32 {
    tiers
        .get(tier)
        .map(|l| l.slo_availability_bp)
        .unwrap_or_else(|| Limits::default().slo_availability_bp)
}

fn add(scopes: &mut Scopes, row: &ScopedCounts, field: Field, tiers: &BTreeMap<String, Limits>) {
    let counts = WindowCounts::from_sli(&row.counts);
    let eligible = row.counts.eligible();
    let errors_5xx = WindowCounts {
        eligible,
        bad: row.counts.errors_5xx.min(eligible),
    };
    let throttled = WindowCounts {
        eligible,
        bad: row.counts.throttled.min(eligible),
    };
    let slo = slo_of(&row.tier, tiers);
    let mut names = vec!["all".to_string(), format!("model:{}", row.model)];
    // A tenant the store does not know has no tier to alert for; its requests still count
    // for its model and the whole fleet.
    if !row.tier.is_empty() {
        names.push(format!("tier:{}", row.tier));
        // A tenant's own SLI: its contract is what the SLA report credits against.
        names.push(format!("tenant:{}", row.tenant_id));
    }
    // Requests refused before reaching a worker have no region or provider.
    if !row.region.is_empty() {
        names.push(format!("region:{}", row.region));
    }
    if !row.provider.is_empty() {
        names.push(format!("provider:{}", row.provider));
    }
    for name in names {
        let s = scopes.entry(name).or_default();
        field(&mut s.windows).add(&counts);
        field(&mut s.errors_5xx).add(&errors_5xx);
        field(&mut s.throttled).add(&throttled);
        s.slo_bp = s.slo_bp.max(slo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_metering::sli::SliCounts;

    #[test]
    fn rows_sum_into_all_tier_and_model_with_the_strictest_slo() {
        let tiers = switchyard_config::default_tiers();
        let row = |tier: &str, model: &str, requests, errors_5xx| ScopedCounts {
            tenant_id: format!("t-{tier}"),
            tier: tier.into(),
            model: model.into(),
            region: "eu".into(),
            provider: if model == "m1" {
                "p1".into()
            } else {
                String::new()
            },
            counts: SliCounts {
                requests,
                errors_5xx,
                bad: errors_5xx,
                ..SliCounts::default()
            },
        };
        let mut scopes = Scopes::new();
        for r in [
            row("hobby", "m1", 10, 1),
            row("business", "m1", 5, 0),
            row("", "m2", 4, 4),
        ] {
            add(&mut scopes, &r, |w| &mut w.long_page, &tiers);
        }
        assert_eq!(
            scopes["all"].windows.long_page,
            WindowCounts {
                eligible: 19,
                bad: 5
            }
        );
        assert_eq!(scopes["all"].slo_bp, 9995);
        assert_eq!(scopes["model:m1"].windows.long_page.bad, 1);
        assert_eq!(scopes["model:m1"].slo_bp, 9995);
        assert_eq!(scopes["tier:hobby"].slo_bp, 9950);
        assert_eq!(scopes["model:m2"].slo_bp, 9990);
        assert!(!scopes.contains_key("tier:"));
        assert_eq!(scopes["tenant:t-hobby"].windows.long_page.bad, 1);
        assert_eq!(
            scopes["tenant:t-hobby"].slo_bp, 9950,
            "a tenant alerts on its own tier"
        );
        assert_eq!(scopes["region:eu"].windows.long_page.eligible, 19);
        assert_eq!(scopes["provider:p1"].windows.long_page.eligible, 15);
        assert!(
            !scopes.contains_key("provider:"),
            "refusals have no provider"
        );
    }
}
