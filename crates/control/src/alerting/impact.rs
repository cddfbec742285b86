//! What an incident cost, from the ledger: requests failed, bad minutes and tenants hit in
//! its span and scopes, and the share of its month's error budget those minutes spent (the
//! addendum's budget: `1 − SLO` of the month's minutes).

use switchyard_metering::incident::{Impact, ImpactScope, Incident};
use switchyard_metering::sli::MS_PER_MINUTE;
use switchyard_metering::{Store, StoreError};
use switchyard_slo::burn::budget_spent_bp;

use crate::admin::Month;

/// An open incident is measured up to `now_ms`.
pub async fn measure(store: &dyn Store, inc: &Incident, now_ms: i64) -> Result<Impact, StoreError> {
    let scope = ImpactScope::from_scopes(inc.scopes.iter().map(String::as_str));
    // The end is inclusive: the request that arrived as the last alert resolved counts.
    let end = inc.ended_at_ms.unwrap_or(now_ms).max(inc.started_at_ms) + 1;
    let mut impact = store
        .incident_impact(inc.started_at_ms, end, &scope)
        .await?;
    let month = Month::containing(inc.started_at_ms);
    let month_minutes =
        u64::try_from((month.end_ms() - month.start_ms()) / MS_PER_MINUTE).unwrap_or(0);
    impact.budget_spent_bp =
        budget_spent_bp(impact.bad_minutes, month_minutes, inc.slo_bp).unwrap_or(0);
    Ok(impact)
}

/// 1158 bp → "11.58%".
pub fn format_budget_bp(bp: u64) -> String {
    format!("{}.{:02}%", bp / 100, bp % 100)
}
