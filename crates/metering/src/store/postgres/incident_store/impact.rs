//! An incident's impact on PostgreSQL: requests, failures, bad minutes and tenants hit, read
//! from the raw ledger rows (`usage`, `sli_refusals`) of its span and scope, as the SQLite
//! store computes them.

use sqlx::postgres::PgPool;
use sqlx::{Postgres, QueryBuilder, Row};

use crate::incident::{Impact, ImpactScope};
use crate::sli::{MS_PER_MINUTE, TTFT_SLOW_MS};
use crate::store::rows::to_u64;
use crate::store::Result;

/// `AND (<row matches the scope>)` for `usage u` (`refusal = false`) or `sli_refusals r`.
/// Refusals never reached a worker: they match by tier and model only. `FALSE OR ...` where
/// SQLite has `0 OR ...`: Postgres does not take an integer for a boolean.
fn push_scope(qb: &mut QueryBuilder<'_, Postgres>, s: &ImpactScope, refusal: bool) {
    if s.all {
        return;
    }
    let alias = if refusal { "r" } else { "u" };
    qb.push(" AND (FALSE");
    let any = |qb: &mut QueryBuilder<'_, Postgres>, column: String, values: &[String]| {
        if values.is_empty() {
            return;
        }
        qb.push(format!(" OR {column} IN ("));
        let mut sep = qb.separated(", ");
        for v in values {
            sep.push_bind(v.clone());
        }
        sep.push_unseparated(")");
    };
    any(
        qb,
        format!("COALESCE((SELECT tier FROM tenants WHERE id = {alias}.tenant_id), '')"),
        &s.tiers,
    );
    any(qb, format!("{alias}.model"), &s.models);
    if !refusal {
        any(qb, "u.worker".into(), &s.workers);
        any(qb, "u.region".into(), &s.regions);
    }
    qb.push(")");
}

/// Requests in scope in `[from_ms, to_ms)`, the failed ones, the bad minutes and the
/// tenants hit; `budget_spent_bp` is left 0 for the caller, who knows the SLO and month.
pub(super) async fn impact(
    pool: &PgPool,
    from_ms: i64,
    to_ms: i64,
    scope: &ImpactScope,
) -> Result<Impact> {
    let slow = i64::try_from(TTFT_SLOW_MS).unwrap_or(i64::MAX);
    // One row per request in scope: its tenant, minute, whether it failed, whether it was bad.
    let mut qb = QueryBuilder::<Postgres>::new(
        "WITH scoped AS (SELECT u.tenant_id AS tenant_id, u.started_at_ms / ",
    );
    qb.push_bind(MS_PER_MINUTE)
        .push(
            " AS minute, (u.http_status >= 500 OR u.status = 'failed_mid_stream') AS failed, \
             (u.http_status >= 500 OR u.status = 'failed_mid_stream' OR COALESCE(u.ttft_ms, 0) >= ",
        )
        .push_bind(slow)
        .push(") AS bad FROM usage u WHERE u.started_at_ms >= ")
        .push_bind(from_ms)
        .push(" AND u.started_at_ms < ")
        .push_bind(to_ms);
    push_scope(&mut qb, scope, false);
    qb.push(" UNION ALL SELECT r.tenant_id, r.at_ms / ")
        .push_bind(MS_PER_MINUTE)
        .push(", r.http_status >= 500, r.http_status >= 500 FROM sli_refusals r WHERE r.at_ms >= ")
        .push_bind(from_ms)
        .push(" AND r.at_ms < ")
        .push_bind(to_ms);
    push_scope(&mut qb, scope, true);
    // `failed` and `bad` are booleans here, not SQLite's 0/1: counted with FILTER, not summed.
    // Every COUNT is a BIGINT.
    qb.push(
        ") SELECT COUNT(*) AS requests, COUNT(*) FILTER (WHERE failed) AS failed, \
             COUNT(DISTINCT minute) FILTER (WHERE bad) AS bad_minutes, \
             COUNT(DISTINCT tenant_id) FILTER (WHERE failed) AS tenants \
         FROM scoped",
    );
    let row = qb.build().fetch_one(pool).await?;
    Ok(Impact {
        requests: to_u64(row.try_get("requests")?, "requests")?,
        requests_failed: to_u64(row.try_get("failed")?, "failed")?,
        bad_minutes: to_u64(row.try_get("bad_minutes")?, "bad_minutes")?,
        budget_spent_bp: 0,
        tenants_affected: to_u64(row.try_get("tenants")?, "tenants")?,
    })
}
