//! Incidents on PostgreSQL: the record the replicas' alert evaluators keep together. Reads
//! take the incident rows and their alerts from one snapshot; writes that read before they
//! write lock the incident row first (see the parent module).

use std::collections::HashMap;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Postgres, Row, Transaction};

use crate::incident::{Impact, Incident, IncidentAlert, NewIncident};
use crate::store::rows::incident_from_row;
use crate::store::rows::{from_json, to_i64, to_json};
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

/// A read-only transaction whose statements all see the database as of its first one: an
/// incident and its alerts, read in two statements, are then never from either side of
/// another replica's `put_alert`.
async fn snapshot(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
    Ok(pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?)
}

/// Incident rows with their alerts, fetched for all of them in one query. Alerts come in the
/// SQLite store's order; `COLLATE "C"` compares names and scopes bytewise, as SQLite does,
/// whatever the database's collation.
async fn with_alerts(conn: &mut PgConnection, rows: Vec<PgRow>) -> Result<Vec<Incident>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = rows
        .iter()
        .map(|r| r.try_get::<i64, _>("id"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let alert_rows = sqlx::query(
        "SELECT incident_id, name, scope, severity, summary, fired_at_ms, resolved_at_ms \
         FROM incident_alerts WHERE incident_id = ANY($1) \
         ORDER BY incident_id, fired_at_ms, name COLLATE \"C\", scope COLLATE \"C\"",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut alerts: HashMap<i64, Vec<IncidentAlert>> = HashMap::new();
    for r in &alert_rows {
        alerts
            .entry(r.try_get("incident_id")?)
            .or_default()
            .push(IncidentAlert {
                name: r.try_get("name")?,
                scope: r.try_get("scope")?,
                severity: r.try_get("severity")?,
                summary: r.try_get("summary")?,
                fired_at_ms: r.try_get("fired_at_ms")?,
                resolved_at_ms: r.try_get("resolved_at_ms")?,
            });
    }
    rows.iter()
        .zip(ids)
        .map(|(row, id)| incident_from_row(row, alerts.remove(&id).unwrap_or_default()))
        .collect()
}

pub(super) async fn get(pool: &PgPool, id: i64) -> Result<Option<Incident>> {
    let mut tx = snapshot(pool).await?;
    let sql = format!("SELECT {COLUMNS} FROM incidents WHERE id = $1");
    let rows = sqlx::query(&sql).bind(id).fetch_all(&mut *tx).await?;
    let found = with_alerts(&mut tx, rows).await?.pop();
    tx.commit().await?;
    Ok(found)
}

pub(super) async fn open_one(pool: &PgPool) -> Result<Option<Incident>> {
    let mut tx = snapshot(pool).await?;
    let sql = format!("SELECT {COLUMNS} FROM incidents WHERE ended_at_ms IS NULL LIMIT 1");
    let rows = sqlx::query(&sql).fetch_all(&mut *tx).await?;
    let found = with_alerts(&mut tx, rows).await?.pop();
    tx.commit().await?;
    Ok(found)
}

/// Incidents overlapping `[from_ms, to_ms)` (unbounded where `None`), newest first.
pub(super) async fn list(
    pool: &PgPool,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
) -> Result<Vec<Incident>> {
    let mut qb =
        sqlx::QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM incidents WHERE TRUE"));
    if let Some(from) = from_ms {
        qb.push(" AND (ended_at_ms IS NULL OR ended_at_ms >= ")
            .push_bind(from)
            .push(")");
    }
    if let Some(to) = to_ms {
        qb.push(" AND started_at_ms < ").push_bind(to);
    }
    qb.push(" ORDER BY started_at_ms DESC, id DESC");
    let mut tx = snapshot(pool).await?;
    let rows = qb.build().fetch_all(&mut *tx).await?;
    let found = with_alerts(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(found)
}

async fn upsert_alert(conn: &mut PgConnection, id: i64, a: &IncidentAlert) -> Result<()> {
    sqlx::query(
        "INSERT INTO incident_alerts \
             (incident_id, name, scope, severity, summary, fired_at_ms, resolved_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
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

/// Opens an incident with its first alert, or fails with `Conflict` if one is open.
///
/// Two replicas opening at once: `incidents_one_open` makes the second insert wait for the
/// first transaction; once that commits, `ON CONFLICT DO NOTHING` inserts nothing and this
/// returns `Conflict` (as SQLite's unique violation does), with the open incident's id when it
/// is still open, so the caller can join it. Were the first to roll back, the second inserts.
pub(super) async fn open(pool: &PgPool, n: &NewIncident) -> Result<i64> {
    let mut tx = pool.begin().await?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO incidents (started_at_ms, detected_at_ms, scopes, severity, title, slo_bp) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT ((ended_at_ms IS NULL)) WHERE ended_at_ms IS NULL DO NOTHING \
         RETURNING id",
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
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = inserted else {
        // Read committed: this statement sees the incident the insert collided with (unless
        // it has been closed since).
        let open: Option<i64> =
            sqlx::query_scalar("SELECT id FROM incidents WHERE ended_at_ms IS NULL")
                .fetch_optional(&mut *tx)
                .await?;
        return Err(StoreError::Conflict(match open {
            Some(open) => format!("an open incident (incident {open})"),
            None => "an open incident".to_string(),
        }));
    };
    upsert_alert(&mut tx, id, &n.first_alert).await?;
    tx.commit().await?;
    Ok(id)
}

/// Adds an alert to an incident, or updates it (same name, scope and firing time: an
/// escalation, a resolution); widens the incident's scopes, severity, SLO and start to match.
///
/// The row is read `FOR UPDATE`: another replica's `put_alert` on the same incident waits
/// here until this one commits and then reads the widened row, so no scope is lost.
pub(super) async fn put_alert(
    pool: &PgPool,
    id: i64,
    a: &IncidentAlert,
    slo_bp: u32,
    started_at_ms: i64,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let row =
        sqlx::query("SELECT scopes, severity, slo_bp FROM incidents WHERE id = $1 FOR UPDATE")
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
        "UPDATE incidents SET scopes = $2, severity = $3, slo_bp = $4, \
             started_at_ms = LEAST(started_at_ms, $5) WHERE id = $1",
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

/// Ends an incident with its impact; an end before its start is taken as the start. One
/// statement, so it needs no lock of its own (it waits for a `put_alert` in progress).
pub(super) async fn close(pool: &PgPool, id: i64, ended_at_ms: i64, i: &Impact) -> Result<()> {
    let done = sqlx::query(
        "UPDATE incidents SET ended_at_ms = GREATEST($2, started_at_ms), requests = $3, \
             requests_failed = $4, bad_minutes = $5, budget_spent_bp = $6, tenants_affected = $7 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(ended_at_ms)
    .bind(to_i64(i.requests, "requests")?)
    .bind(to_i64(i.requests_failed, "requests_failed")?)
    .bind(to_i64(i.bad_minutes, "bad_minutes")?)
    .bind(to_i64(i.budget_spent_bp, "budget_spent_bp")?)
    .bind(to_i64(i.tenants_affected, "tenants_affected")?)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("incident {id}")));
    }
    Ok(())
}
