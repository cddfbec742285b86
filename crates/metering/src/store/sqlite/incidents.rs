//! Incidents on SQLite: the record the gateway's alert evaluator keeps, and the impact
//! figures (requests failed, bad minutes, tenants hit) read from the raw ledger rows of the
//! incident's span and scope.

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{from_json, to_json, to_u64};
use crate::incident::{Impact, ImpactScope, Incident, IncidentAlert, NewIncident};
use crate::sli::{MS_PER_MINUTE, TTFT_SLOW_MS};
use crate::store::rows::incident_from_row;
use crate::store::{Result, StoreError};

const COLUMNS: &str = "id, started_at_ms, detected_at_ms, ended_at_ms, scopes, severity, title, \
     slo_bp, requests, requests_failed, bad_minutes, budget_spent_bp, tenants_affected";

fn severity_rank(s: &str) -> u8 {
    match s {
        "page" => 2,
        "ticket" => 1,
        _ => 0,
    }
}

async fn alerts_of(reader: &SqlitePool, id: i64) -> Result<Vec<IncidentAlert>> {
    let rows = sqlx::query(
        "SELECT name, scope, severity, summary, fired_at_ms, resolved_at_ms \
         FROM incident_alerts WHERE incident_id = ?1 ORDER BY fired_at_ms, name, scope",
    )
    .bind(id)
    .fetch_all(reader)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(IncidentAlert {
                name: r.try_get("name")?,
                scope: r.try_get("scope")?,
                severity: r.try_get("severity")?,
                summary: r.try_get("summary")?,
                fired_at_ms: r.try_get("fired_at_ms")?,
                resolved_at_ms: r.try_get("resolved_at_ms")?,
            })
        })
        .collect()
}

async fn with_alerts(reader: &SqlitePool, rows: Vec<SqliteRow>) -> Result<Vec<Incident>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let alerts = alerts_of(reader, row.try_get("id")?).await?;
        out.push(incident_from_row(row, alerts)?);
    }
    Ok(out)
}

pub(super) async fn get(reader: &SqlitePool, id: i64) -> Result<Option<Incident>> {
    let sql = format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1");
    let rows = sqlx::query(&sql).bind(id).fetch_all(reader).await?;
    Ok(with_alerts(reader, rows).await?.pop())
}

pub(super) async fn open_one(reader: &SqlitePool) -> Result<Option<Incident>> {
    let sql = format!("SELECT {COLUMNS} FROM incidents WHERE ended_at_ms IS NULL LIMIT 1");
    let rows = sqlx::query(&sql).fetch_all(reader).await?;
    Ok(with_alerts(reader, rows).await?.pop())
}

/// Incidents overlapping `[from_ms, to_ms)` (unbounded where `None`), newest first.
pub(super) async fn list(
    reader: &SqlitePool,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<Vec<Incident>> {
    let mut qb =
        QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM incidents WHERE 1 = 1"));
    if let Some(from) = from_ms {
        qb.push(" AND (ended_at_ms IS NULL OR ended_at_ms >= ")
            .push_bind(from)
            .push(")");
    }
    if let Some(to) = to_ms {
        qb.push(" AND started_at_ms < ").push_bind(to);
    }
    qb.push(" ORDER BY started_at_ms DESC, id DESC");
    let rows = qb.build().fetch_all(reader).await?;
    with_alerts(reader, rows).await
}

async fn upsert_alert(conn: &mut sqlx::SqliteConnection, id: i64, a: &IncidentAlert) -> Result<()> {
    sqlx::query(
        "INSERT INTO incident_alerts \
             (incident_id, name, scope, severity, summary, fired_at_ms, resolved_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (incident_id, name, scope, fired_at_ms) DO UPDATE SET \
             severity = excluded.severity, summary = excluded.summary, \
             resolved_at_ms = excluded.resolved_at_ms",
    )
    .bind(id)
    .bind(&a.name)
    .bind(&a.scope)
    .bind(&a.severity)
    .bind(&a.summary)
    .bind(a.fired_at_ms)
    .bind(a.resolved_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn open(writer: &SqlitePool, n: &NewIncident) -> Result<i64> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let row = sqlx::query(
        "INSERT INTO incidents (started_at_ms, detected_at_ms, scopes, severity, title, slo_bp) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
    )
    .bind(n.started_at_ms.min(n.detected_at_ms))
    .bind(n.detected_at_ms)
    .bind(to_json(
        &vec![n.first_alert.scope.clone()],
        "incident scopes",
    )?)
    .bind(&n.first_alert.severity)
    .bind(&n.title)
    .bind(i64::from(n.slo_bp))
    .fetch_one(&mut *tx)
    .await?;
    let id: i64 = row.try_get("id")?;
    upsert_alert(&mut tx, id, &n.first_alert).await?;
    tx.commit().await?;
    Ok(id)
}

/// Adds an alert to an incident, or updates it (same name, scope and firing time: an
/// escalation, a resolution); widens the incident's scopes, severity, SLO and start to match.
pub(super) async fn put_alert(
    writer: &SqlitePool,
    id: i64,
    a: &IncidentAlert,
    slo_bp: u32,
    started_at_ms: i64,
) -> Result<()> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let row = sqlx::query("SELECT scopes, severity, slo_bp FROM incidents WHERE id = ?1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("incident {id}")))?;
    let mut scopes: Vec<String> = from_json(&row.try_get::<String, _>("scopes")?, "scopes")?;
    if !scopes.contains(&a.scope) {
        scopes.push(a.scope.clone());
    }
    let old_severity: String = row.try_get("severity")?;
    let severity = if severity_rank(&a.severity) > severity_rank(&old_severity) {
        a.severity.clone()
    } else {
        old_severity
    };
    let old_slo: i64 = row.try_get("slo_bp")?;
    sqlx::query(
        "UPDATE incidents SET scopes = ?2, severity = ?3, slo_bp = ?4, \
             started_at_ms = MIN(started_at_ms, ?5) WHERE id = ?1",
    )
    .bind(id)
    .bind(to_json(&scopes, "incident scopes")?)
    .bind(severity)
    .bind(old_slo.max(i64::from(slo_bp)))
    .bind(started_at_ms)
    .execute(&mut *tx)
    .await?;
    upsert_alert(&mut tx, id, a).await?;
    tx.commit().await?;
    Ok(())
}

fn count(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} = {v} does not fit in i64")))
}

pub(super) async fn close(
    writer: &SqlitePool,
    id: i64,
    ended_at_ms: i64,
    i: &Impact,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE incidents SET ended_at_ms = MAX(?2, started_at_ms), requests = ?3, \
             requests_failed = ?4, bad_minutes = ?5, budget_spent_bp = ?6, tenants_affected = ?7 \
         WHERE id = ?1",
    )
    .bind(id)
    .bind(ended_at_ms)
    .bind(count(i.requests, "requests")?)
    .bind(count(i.requests_failed, "requests_failed")?)
    .bind(count(i.bad_minutes, "bad_minutes")?)
    .bind(count(i.budget_spent_bp, "budget_spent_bp")?)
    .bind(count(i.tenants_affected, "tenants_affected")?)
    .execute(writer)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("incident {id}")));
    }
    Ok(())
}

/// `AND (<row matches the scope>)` for `usage u` (`refusal = false`) or `sli_refusals r`.
/// Refusals never reached a worker: they match by tier and model only.
fn push_scope(qb: &mut QueryBuilder<'_, Sqlite>, s: &ImpactScope, refusal: bool) {
    if s.all {
        return;
    }
    let alias = if refusal { "r" } else { "u" };
    qb.push(" AND (0");
    let any = |qb: &mut QueryBuilder<'_, Sqlite>, column: String, values: &[String]| {
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
    reader: &SqlitePool,
    from_ms: i64,
    to_ms: i64,
    scope: &ImpactScope,
) -> Result<Impact> {
    let slow = i64::try_from(TTFT_SLOW_MS).unwrap_or(i64::MAX);
    // One row per request in scope: its tenant, minute, whether it failed, whether it was bad.
    let mut qb = QueryBuilder::<Sqlite>::new(
        "WITH rows AS (SELECT u.tenant_id AS tenant_id, u.started_at_ms / ",
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
    qb.push(
        ") SELECT COUNT(*) AS requests, COALESCE(SUM(failed), 0) AS failed, \
             COUNT(DISTINCT CASE WHEN bad THEN minute END) AS bad_minutes, \
             COUNT(DISTINCT CASE WHEN failed THEN tenant_id END) AS tenants \
         FROM rows",
    );
    let row = qb.build().fetch_one(reader).await?;
    Ok(Impact {
        requests: to_u64(row.try_get("requests")?, "requests")?,
        requests_failed: to_u64(row.try_get("failed")?, "failed")?,
        bad_minutes: to_u64(row.try_get("bad_minutes")?, "bad_minutes")?,
        budget_spent_bp: 0,
        tenants_affected: to_u64(row.try_get("tenants")?, "tenants")?,
    })
}
