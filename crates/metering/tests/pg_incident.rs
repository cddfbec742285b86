//! The Postgres store's incidents and maintenance windows: the SQLite store's behaviour, and
//! what several gateway replicas on one database need of it (one incident however many
//! replicas open it, no alert's scope lost when replicas add alerts at once, a window deleted
//! once).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pg;

use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use switchyard_metering::incident::{Impact, ImpactScope, Incident, IncidentAlert, NewIncident};
use switchyard_metering::maintenance::{Maintenance, MaintenanceScope, NewMaintenance};
use switchyard_metering::store::postgres::PgStore;
use switchyard_metering::store::prelude::*;
use switchyard_metering::StoreError;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

/// 2026-02-01T00:00:00Z.
const T0: i64 = 1_769_904_000_000;
const MIN: i64 = 60_000;
const SEC: i64 = 1_000;

fn alert(name: &str, scope: &str, severity: &str, fired_at_ms: i64) -> IncidentAlert {
    IncidentAlert {
        name: name.into(),
        scope: scope.into(),
        severity: severity.into(),
        summary: format!("{name} on {scope}"),
        fired_at_ms,
        resolved_at_ms: None,
    }
}

fn new_incident(started_at_ms: i64, first_alert: IncidentAlert) -> NewIncident {
    NewIncident {
        started_at_ms,
        detected_at_ms: first_alert.fired_at_ms,
        title: format!("{} firing", first_alert.name),
        slo_bp: 9_900,
        first_alert,
    }
}

fn impact(requests: u64) -> Impact {
    Impact {
        requests,
        requests_failed: 3,
        bad_minutes: 2,
        budget_spent_bp: 46,
        tenants_affected: 1,
    }
}

fn schema_name() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

/// A store in a fresh schema, and a plain pool on the same schema to seed the ledger tables
/// `incident_impact` reads.
async fn store_and_pool() -> (PgStore, PgPool) {
    let schema = schema_name();
    let store = PgStore::connect_in_schema(&pg::url(), &schema)
        .await
        .unwrap();
    let options = PgConnectOptions::from_str(&pg::url())
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap();
    (store, pool)
}

/// Two replicas: two stores (two pools) on one schema.
async fn two_replicas() -> (PgStore, PgStore) {
    let schema = schema_name();
    let a = PgStore::connect_in_schema(&pg::url(), &schema)
        .await
        .unwrap();
    let b = PgStore::connect_in_schema(&pg::url(), &schema)
        .await
        .unwrap();
    (a, b)
}

fn conflict_message(r: Result<i64, StoreError>) -> String {
    match r {
        Err(StoreError::Conflict(msg)) => msg,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn an_incident_round_trips() {
    let store = pg::fresh().await;
    assert_eq!(store.open_incident_now().await.unwrap(), None);
    assert_eq!(store.get_incident(1).await.unwrap(), None);
    assert!(store.list_incidents(None, None).await.unwrap().is_empty());

    let first = alert("slo_burn_rate", "all", "ticket", T0 + 5 * MIN);
    let id = store
        .open_incident(&new_incident(T0, first.clone()))
        .await
        .unwrap();
    let expected = Incident {
        id,
        started_at_ms: T0,
        detected_at_ms: T0 + 5 * MIN,
        ended_at_ms: None,
        scopes: vec!["all".into()],
        severity: "ticket".into(),
        title: "slo_burn_rate firing".into(),
        slo_bp: 9_900,
        alerts: vec![first],
        impact: None,
    };
    assert_eq!(
        store.get_incident(id).await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        store.open_incident_now().await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        store.list_incidents(None, None).await.unwrap(),
        vec![expected]
    );
    assert_eq!(store.get_incident(id + 1).await.unwrap(), None);
}

#[tokio::test]
async fn a_start_after_detection_is_moved_back_to_it() {
    let store = pg::fresh().await;
    let mut n = new_incident(T0 + 10 * MIN, alert("probe_failed", "all", "page", T0));
    n.detected_at_ms = T0;
    let id = store.open_incident(&n).await.unwrap();
    let inc = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!((inc.started_at_ms, inc.detected_at_ms), (T0, T0));
}

#[tokio::test]
async fn opening_while_one_is_open_is_a_conflict_until_it_closes() {
    let store = pg::fresh().await;
    let first = store
        .open_incident(&new_incident(T0, alert("slo_burn_rate", "all", "page", T0)))
        .await
        .unwrap();
    let second = new_incident(T0 + MIN, alert("probe_failed", "all", "page", T0 + MIN));
    let msg = conflict_message(store.open_incident(&second).await);
    assert!(msg.contains(&first.to_string()), "{msg}");
    // Nothing of the refused incident was kept.
    let all = store.list_incidents(None, None).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].alerts.len(), 1);

    store
        .close_incident(first, T0 + 2 * MIN, &impact(10))
        .await
        .unwrap();
    let reopened = store.open_incident(&second).await.unwrap();
    assert_ne!(reopened, first);
    let now = store.open_incident_now().await.unwrap().unwrap();
    assert_eq!(now.id, reopened);
    assert_eq!(now.alerts[0].name, "probe_failed");
}

#[tokio::test]
async fn alerts_widen_scopes_severity_slo_and_start() {
    let store = pg::fresh().await;
    let a = alert("slo_burn_rate", "model:m1", "ticket", T0 + 5 * MIN);
    let id = store
        .open_incident(&new_incident(T0 + 2 * MIN, a.clone()))
        .await
        .unwrap();

    // A new scope, a higher severity, a stricter SLO, an earlier start: all taken.
    let b = alert("probe_failed", "all", "page", T0 + 6 * MIN);
    store.put_incident_alert(id, &b, 9_990, T0).await.unwrap();
    // A known scope, a lower severity, a looser SLO, a later start: none taken.
    let c = alert("model_unavailable", "model:m1", "ticket", T0 + 7 * MIN);
    store
        .put_incident_alert(id, &c, 9_500, T0 + 3 * MIN)
        .await
        .unwrap();
    let inc = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!(inc.scopes, vec!["model:m1".to_string(), "all".to_string()]);
    assert_eq!(inc.severity, "page");
    assert_eq!(inc.slo_bp, 9_990);
    assert_eq!(inc.started_at_ms, T0);
    assert_eq!(inc.detected_at_ms, T0 + 5 * MIN);
    assert_eq!(inc.alerts, vec![a.clone(), b.clone(), c.clone()]);

    // The same name, scope and firing time updates the alert instead of adding one.
    let a2 = IncidentAlert {
        severity: "page".into(),
        summary: "escalated".into(),
        resolved_at_ms: Some(T0 + 8 * MIN),
        ..a
    };
    store
        .put_incident_alert(id, &a2, 9_900, T0 + 2 * MIN)
        .await
        .unwrap();
    // Alerts firing at the same moment come by name, then scope, compared bytewise as on
    // SQLite ('B' < 'b').
    let lower = alert("b_alert", "tier:pro", "ticket", T0 + 9 * MIN);
    let upper = alert("B_alert", "tier:pro", "ticket", T0 + 9 * MIN);
    let upper2 = alert("B_alert", "model:m1", "ticket", T0 + 9 * MIN);
    for x in [&lower, &upper, &upper2] {
        store.put_incident_alert(id, x, 9_900, T0).await.unwrap();
    }
    let inc = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!(inc.alerts, vec![a2, b, c, upper2, upper, lower]);
    assert_eq!(
        inc.scopes,
        vec!["model:m1".to_string(), "all".into(), "tier:pro".into()]
    );

    // An SLO the table refuses leaves the incident as it was.
    let d = alert("slo_burn_rate", "region:eu", "page", T0 + 10 * MIN);
    let refused = store.put_incident_alert(id, &d, 10_001, T0).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(store.get_incident(id).await.unwrap().unwrap(), inc);

    let missing = store.put_incident_alert(id + 1, &d, 9_900, T0).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn closing_records_the_end_and_impact() {
    let store = pg::fresh().await;
    let id = store
        .open_incident(&new_incident(
            T0,
            alert("slo_burn_rate", "all", "page", T0 + MIN),
        ))
        .await
        .unwrap();
    store
        .close_incident(id, T0 + 30 * MIN, &impact(120))
        .await
        .unwrap();
    let inc = store.get_incident(id).await.unwrap().unwrap();
    assert_eq!(inc.ended_at_ms, Some(T0 + 30 * MIN));
    assert_eq!(inc.impact, Some(impact(120)));
    assert_eq!(store.open_incident_now().await.unwrap(), None);

    // An end before the start is taken as the start.
    let late = store
        .open_incident(&new_incident(
            T0 + 60 * MIN,
            alert("probe_failed", "all", "page", T0 + 61 * MIN),
        ))
        .await
        .unwrap();
    store
        .close_incident(late, T0 + 50 * MIN, &impact(0))
        .await
        .unwrap();
    let inc = store.get_incident(late).await.unwrap().unwrap();
    assert_eq!(inc.ended_at_ms, Some(T0 + 60 * MIN));

    let missing = store.close_incident(late + 1, T0, &impact(1)).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    let huge = store.close_incident(late, T0, &impact(u64::MAX)).await;
    assert!(matches!(huge, Err(StoreError::Invalid(_))), "{huge:?}");
    assert_eq!(
        store.get_incident(late).await.unwrap().unwrap().impact,
        Some(impact(0))
    );
}

#[tokio::test]
async fn incidents_are_listed_by_overlap_newest_first() {
    let store = pg::fresh().await;
    let mut spans = Vec::new();
    // A [0, 10), B [20, 30), D [20, 25) (same start as B, opened after it), C [40, open).
    for (name, start, end) in [("a", 0, Some(10)), ("b", 20, Some(30)), ("d", 20, Some(25))] {
        let id = store
            .open_incident(&new_incident(
                T0 + start * MIN,
                alert(name, "all", "ticket", T0 + start * MIN),
            ))
            .await
            .unwrap();
        if let Some(end) = end {
            store
                .close_incident(id, T0 + end * MIN, &impact(1))
                .await
                .unwrap();
        }
        spans.push((name, id));
    }
    let c = store
        .open_incident(&new_incident(
            T0 + 40 * MIN,
            alert("c", "all", "ticket", T0 + 40 * MIN),
        ))
        .await
        .unwrap();
    let names = |list: Vec<Incident>| {
        list.iter()
            .map(|i| {
                // Each comes with its own alerts.
                assert_eq!(i.alerts.len(), 1);
                i.alerts[0].name.clone()
            })
            .collect::<Vec<_>>()
    };
    let list = |from: Option<i64>, to: Option<i64>| {
        let store = store.clone();
        async move { store.list_incidents(from, to).await.unwrap() }
    };
    assert_eq!(names(list(None, None).await), ["c", "d", "b", "a"]);
    assert_eq!(list(None, None).await[0].id, c);
    // An end at `from` still overlaps it; a start at `to` does not.
    assert_eq!(
        names(list(Some(T0 + 10 * MIN), None).await),
        ["c", "d", "b", "a"]
    );
    assert_eq!(
        names(list(Some(T0 + 10 * MIN + 1), None).await),
        ["c", "d", "b"]
    );
    assert_eq!(names(list(None, Some(T0 + 20 * MIN)).await), ["a"]);
    assert_eq!(
        names(list(Some(T0 + 26 * MIN), Some(T0 + 41 * MIN)).await),
        ["c", "b"]
    );
    // The open one overlaps any time after its start.
    assert_eq!(names(list(Some(T0 + 10_000 * MIN), None).await), ["c"]);
}

/// SQLite orders alerts of one moment by name and scope bytewise; a Postgres database created
/// with a linguistic collation (`en_US.UTF-8`, ICU) would order them otherwise unless the store
/// says `COLLATE "C"`. The columns are switched to ICU's root collation here to check it does.
#[tokio::test]
async fn alerts_come_in_bytewise_order_whatever_the_collation() {
    let (store, pool) = store_and_pool().await;
    for column in ["name", "scope"] {
        sqlx::query(&format!(
            "ALTER TABLE incident_alerts ALTER COLUMN {column} TYPE TEXT COLLATE \"und-x-icu\""
        ))
        .execute(&pool)
        .await
        .expect("a Postgres built with ICU");
    }
    // ICU: "b_alert" < "B_alert" and "tier:x" < "Tier:x"; bytewise the other way round.
    let first = alert("b_alert", "tier:x", "ticket", T0);
    let id = store
        .open_incident(&new_incident(T0, first.clone()))
        .await
        .unwrap();
    let upper = alert("B_alert", "tier:x", "ticket", T0);
    let upper_upper = alert("B_alert", "Tier:x", "ticket", T0);
    for x in [&upper, &upper_upper] {
        store.put_incident_alert(id, x, 9_900, T0).await.unwrap();
    }
    let expected = vec![upper_upper, upper, first];
    assert_eq!(
        store.get_incident(id).await.unwrap().unwrap().alerts,
        expected
    );
    assert_eq!(
        store.open_incident_now().await.unwrap().unwrap().alerts,
        expected
    );
    assert_eq!(
        store.list_incidents(None, None).await.unwrap()[0].alerts,
        expected
    );
}

#[allow(clippy::too_many_arguments)]
async fn usage(
    pool: &PgPool,
    id: &str,
    at: i64,
    tenant: &str,
    model: &str,
    worker: &str,
    region: &str,
    http_status: i64,
    status: &str,
    ttft_ms: Option<i64>,
) {
    sqlx::query(
        "INSERT INTO usage (request_id, started_at_ms, tenant_id, key_id, model, endpoint, \
             stream, worker, provider, region, prompt_tokens, completion_tokens, \
             usage_estimated, ttft_ms, total_ms, status, http_status, cost_nanos, cogs_nanos) \
         VALUES ($1, $2, $3, 'k', $4, 'chat', TRUE, $5, 'p', $6, 10, 20, FALSE, $7, 900, $8, \
             $9, 0, 0)",
    )
    .bind(id)
    .bind(at)
    .bind(tenant)
    .bind(model)
    .bind(worker)
    .bind(region)
    .bind(ttft_ms)
    .bind(status)
    .bind(http_status)
    .execute(pool)
    .await
    .unwrap();
}

async fn refusal(pool: &PgPool, id: &str, at: i64, tenant: &str, model: &str, http_status: i64) {
    sqlx::query(
        "INSERT INTO sli_refusals (request_id, at_ms, tenant_id, model, http_status) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(at)
    .bind(tenant)
    .bind(model)
    .bind(http_status)
    .execute(pool)
    .await
    .unwrap();
}

fn counts(requests: u64, requests_failed: u64, bad_minutes: u64, tenants: u64) -> Impact {
    Impact {
        requests,
        requests_failed,
        bad_minutes,
        budget_spent_bp: 0,
        tenants_affected: tenants,
    }
}

#[tokio::test]
async fn impact_counts_the_requests_of_the_span_and_scope() {
    let (store, pool) = store_and_pool().await;
    for (id, tier) in [("acme", "pro"), ("bee", "free")] {
        sqlx::query("INSERT INTO tenants (id, tier, created_at) VALUES ($1, $2, 0)")
            .bind(id)
            .bind(tier)
            .execute(&pool)
            .await
            .unwrap();
    }
    // Minute 0: acme fine, acme 502, acme 500 (two bad requests, one bad minute).
    usage(
        &pool,
        "u1",
        T0 + SEC,
        "acme",
        "m1",
        "w1",
        "eu",
        200,
        "completed",
        Some(100),
    )
    .await;
    usage(
        &pool,
        "u2",
        T0 + 2 * SEC,
        "acme",
        "m1",
        "w1",
        "eu",
        502,
        "failed",
        None,
    )
    .await;
    usage(
        &pool,
        "u8",
        T0 + 30 * SEC,
        "acme",
        "m1",
        "w1",
        "eu",
        500,
        "failed",
        None,
    )
    .await;
    // Minute 1: bee slow first token (bad, not failed).
    usage(
        &pool,
        "u3",
        T0 + MIN,
        "bee",
        "m2",
        "w2",
        "us",
        200,
        "completed",
        Some(6_000),
    )
    .await;
    // Minute 2: bee's stream broke after its 200.
    let broke = "failed_mid_stream";
    usage(
        &pool,
        "u4",
        T0 + 2 * MIN,
        "bee",
        "m1",
        "w2",
        "us",
        200,
        broke,
        Some(50),
    )
    .await;
    // Minute 3: a tenant the store does not know (tier '').
    usage(
        &pool,
        "u5",
        T0 + 3 * MIN,
        "ghost",
        "m2",
        "w1",
        "eu",
        500,
        "failed",
        None,
    )
    .await;
    // Outside [T0, T0 + 10 min).
    usage(
        &pool,
        "u6",
        T0 - 1,
        "acme",
        "m1",
        "w1",
        "eu",
        500,
        "failed",
        None,
    )
    .await;
    usage(
        &pool,
        "u7",
        T0 + 10 * MIN,
        "acme",
        "m1",
        "w1",
        "eu",
        500,
        "failed",
        None,
    )
    .await;
    // Minute 4: refused before any worker: acme 503 (failed), bee 429 (not).
    refusal(&pool, "r1", T0 + 4 * MIN, "acme", "m2", 503).await;
    refusal(&pool, "r2", T0 + 4 * MIN + SEC, "bee", "m1", 429).await;
    refusal(&pool, "r3", T0 + 10 * MIN, "acme", "m1", 503).await;

    let of = |scopes: &[&str]| {
        let (store, scope) = (store.clone(), ImpactScope::from_scopes(scopes.to_vec()));
        async move {
            store
                .incident_impact(T0, T0 + 10 * MIN, &scope)
                .await
                .unwrap()
        }
    };
    // Everything: 6 usage + 2 refusals; failed u2 u8 u4 u5 r1; bad minutes 0-4; tenants
    // acme, bee, ghost.
    assert_eq!(of(&["all"]).await, counts(8, 5, 5, 3));
    assert_eq!(of(&["all", "model:none"]).await, counts(8, 5, 5, 3));
    // acme's: u1 u2 u8 r1.
    assert_eq!(of(&["tier:pro"]).await, counts(4, 3, 2, 1));
    // m2: u3 u5 r1.
    assert_eq!(of(&["model:m2"]).await, counts(3, 2, 3, 2));
    // Workers and regions: usage only (refusals never reached one).
    assert_eq!(of(&["worker:w2"]).await, counts(2, 1, 2, 1));
    assert_eq!(of(&["region:eu"]).await, counts(4, 3, 2, 2));
    // Any of several: bee's (u3 u4 r2) or w1's (u1 u2 u8 u5).
    assert_eq!(of(&["tier:free", "worker:w1"]).await, counts(7, 4, 4, 3));
    // A scope that names nothing matches nothing.
    assert_eq!(of(&[]).await, counts(0, 0, 0, 0));
    assert_eq!(of(&["model:none"]).await, counts(0, 0, 0, 0));
    // A narrower span: minute 1 and 2 only.
    let narrow = store
        .incident_impact(T0 + MIN, T0 + 3 * MIN, &ImpactScope::from_scopes(["all"]))
        .await
        .unwrap();
    assert_eq!(narrow, counts(2, 1, 2, 1));
}

fn window(start: i64, end: i64, scope: MaintenanceScope) -> NewMaintenance {
    NewMaintenance {
        start_ms: start,
        end_ms: end,
        scope,
        note: format!("upgrade at {start}"),
        created_at_ms: T0,
    }
}

#[tokio::test]
async fn maintenance_windows_are_added_listed_and_deleted_before_they_start() {
    let store = pg::fresh().await;
    for (start, end) in [(T0 + MIN, T0 + MIN), (T0 + 2 * MIN, T0 + MIN)] {
        let bad = store
            .add_maintenance(&window(start, end, MaintenanceScope::All))
            .await;
        assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
    }
    let w1 = store
        .add_maintenance(&window(
            T0 + 120 * MIN,
            T0 + 180 * MIN,
            MaintenanceScope::All,
        ))
        .await
        .unwrap();
    assert_eq!(
        w1,
        Maintenance {
            id: w1.id,
            start_ms: T0 + 120 * MIN,
            end_ms: T0 + 180 * MIN,
            scope: MaintenanceScope::All,
            note: format!("upgrade at {}", T0 + 120 * MIN),
            announced_at_ms: T0,
            created_at_ms: T0,
        }
    );
    let acme = MaintenanceScope::Tenant("acme".into());
    let w2 = store
        .add_maintenance(&window(T0 + 60 * MIN, T0 + 90 * MIN, acme.clone()))
        .await
        .unwrap();
    assert_eq!(w2.scope, acme);
    let w3 = store
        .add_maintenance(&window(
            T0 + 120 * MIN,
            T0 + 150 * MIN,
            MaintenanceScope::All,
        ))
        .await
        .unwrap();

    let ids = |list: Vec<Maintenance>| list.iter().map(|m| m.id).collect::<Vec<_>>();
    let list = |from: Option<i64>, to: Option<i64>| {
        let store = store.clone();
        async move { store.list_maintenance(from, to).await.unwrap() }
    };
    // By start, then id.
    assert_eq!(
        list(None, None).await,
        vec![w2.clone(), w1.clone(), w3.clone()]
    );
    // A window ending at `from` or starting at `to` does not overlap.
    assert_eq!(ids(list(Some(T0 + 90 * MIN), None).await), [w1.id, w3.id]);
    assert_eq!(ids(list(None, Some(T0 + 120 * MIN)).await), [w2.id]);
    assert_eq!(
        ids(list(Some(T0 + 100 * MIN), Some(T0 + 121 * MIN)).await),
        [w1.id, w3.id]
    );

    // Started (at `now` exactly) stays on record.
    let started = store.delete_maintenance(w2.id, T0 + 60 * MIN).await;
    assert!(
        matches!(started, Err(StoreError::Conflict(_))),
        "{started:?}"
    );
    store
        .delete_maintenance(w1.id, T0 + 60 * MIN)
        .await
        .unwrap();
    assert_eq!(ids(list(None, None).await), [w2.id, w3.id]);
    for id in [w1.id, w3.id + 100] {
        let gone = store.delete_maintenance(id, T0).await;
        assert!(matches!(gone, Err(StoreError::NotFound(_))), "{gone:?}");
    }
}

#[tokio::test]
async fn replicas_opening_at_once_open_one_incident_and_share_it() {
    let (a, b) = two_replicas().await;
    for round in 0..5_i64 {
        let t = T0 + round * 60 * MIN;
        // Four evaluators, two per replica, see the same alert at the same moment.
        let start = Arc::new(Barrier::new(4));
        let mut opens = JoinSet::new();
        for (i, store) in [&a, &b, &a, &b].into_iter().enumerate() {
            let (store, start) = (store.clone(), start.clone());
            let n = new_incident(t, alert("slo_burn_rate", &format!("all{i}"), "ticket", t));
            opens.spawn(async move {
                start.wait().await;
                store.open_incident(&n).await
            });
        }
        let results: Vec<_> = opens.join_all().await;
        let opened: Vec<i64> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .copied()
            .collect();
        assert_eq!(opened.len(), 1, "round {round}: {results:?}");
        let id = opened[0];
        for r in results.into_iter().filter(|r| r.is_err()) {
            let msg = conflict_message(r);
            assert!(msg.contains(&id.to_string()), "{msg}");
        }
        let open: Vec<_> = a
            .list_incidents(None, None)
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.ended_at_ms.is_none())
            .collect();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, id);

        // Every replica finds it, and alerts put through both at once all land on it, every
        // scope kept (no replica's read-modify-write overwrites another's).
        for store in [&a, &b] {
            assert_eq!(store.open_incident_now().await.unwrap().unwrap().id, id);
        }
        let start = Arc::new(Barrier::new(20));
        let mut puts = JoinSet::new();
        for i in 0..20_i64 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let start = start.clone();
            let severity = if i == 13 { "page" } else { "ticket" };
            let x = alert(
                "probe_failed",
                &format!("worker:w{i}"),
                severity,
                t + MIN + i,
            );
            spawn_put(&mut puts, store, start, x, 9_900 + i, t - i);
        }
        for r in puts.join_all().await {
            r.unwrap();
        }
        let inc = b.get_incident(id).await.unwrap().unwrap();
        assert_eq!(inc.alerts.len(), 21);
        assert_eq!(inc.scopes.len(), 21, "{:?}", inc.scopes);
        for i in 0..20 {
            assert!(
                inc.scopes.contains(&format!("worker:w{i}")),
                "{:?}",
                inc.scopes
            );
        }
        assert_eq!(inc.severity, "page");
        assert_eq!(inc.slo_bp, 9_919);
        assert_eq!(inc.started_at_ms, t - 19);

        a.close_incident(id, t + 30 * MIN, &impact(1))
            .await
            .unwrap();
        assert_eq!(b.open_incident_now().await.unwrap(), None);
    }
}

fn spawn_put(
    set: &mut JoinSet<Result<(), StoreError>>,
    store: PgStore,
    start: Arc<Barrier>,
    x: IncidentAlert,
    slo_bp: i64,
    started_at_ms: i64,
) {
    let slo_bp = u32::try_from(slo_bp).unwrap();
    set.spawn(async move {
        start.wait().await;
        let id = store.open_incident_now().await?.unwrap().id;
        store
            .put_incident_alert(id, &x, slo_bp, started_at_ms)
            .await
    });
}

#[tokio::test]
async fn replicas_deleting_one_window_at_once_delete_it_once() {
    let (a, b) = two_replicas().await;
    for round in 0..5_i64 {
        let w = a
            .add_maintenance(&window(
                T0 + (round + 1) * 60 * MIN,
                T0 + (round + 2) * 60 * MIN,
                MaintenanceScope::All,
            ))
            .await
            .unwrap();
        let start = Arc::new(Barrier::new(2));
        let mut deletes = JoinSet::new();
        for store in [&a, &b] {
            let (store, start) = (store.clone(), start.clone());
            deletes.spawn(async move {
                start.wait().await;
                store.delete_maintenance(w.id, T0).await
            });
        }
        let results = deletes.join_all().await;
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(StoreError::NotFound(_)))),
            "{results:?}"
        );
        assert!(b.list_maintenance(None, None).await.unwrap().is_empty());
    }
}
