//! The fleet's registrations, leases and drains on Postgres: the script SQLite runs
//! (`fleet/mod.rs`), two replicas (two `PgStore`s on one schema) registering the same worker at
//! once, and the change feed: registrations, replacements, removals and drains notify every
//! replica; lease renewals (heartbeats, the bulk of the writes) notify nobody.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet;
mod pg;

use std::time::Duration;

use sqlx::postgres::PgListener;
use switchyard_metering::store::postgres::PgStore;
use switchyard_metering::store::{Change, DrainKind, FleetStore};

/// How long a notification may take to arrive before the test fails.
const NOTIFIED: Duration = Duration::from_secs(5);

fn new_schema() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}

async fn store_in(schema: &str) -> PgStore {
    PgStore::connect_in_schema(&pg::url(), schema)
        .await
        .unwrap()
}

#[tokio::test]
async fn registrations_leases_and_drains() {
    let store = pg::fresh().await;
    fleet::registrations_leases_and_drains(&store).await;
}

/// Agents heartbeat through a load balancer: the same registration reaches two replicas at
/// once. Exactly one of them makes it new; both get the same generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_registering_one_worker_at_once_make_one_registration() {
    let schema = new_schema();
    let a = store_in(&schema).await;
    let b = store_in(&schema).await;
    for round in 0..20 {
        let name = format!("w{round}");
        let (x, y) = tokio::join!(
            a.register_worker(&name, "spec", fleet::MINUTE),
            b.register_worker(&name, "spec", fleet::MINUTE)
        );
        let ((x, x_new), (y, y_new)) = (x.unwrap(), y.unwrap());
        assert_eq!(x.generation, y.generation, "{name}");
        assert!(x_new != y_new, "{name}: exactly one is new");
        // And a heartbeat through either renews it.
        let renewed = b.renew_worker(&name, fleet::MINUTE).await.unwrap().unwrap();
        assert_eq!(renewed.generation, x.generation);
    }
    assert_eq!(a.fleet_state().await.unwrap().registrations.len(), 20);
}

/// The next notification on `switchyard_fleet` from `schema` (channels are database-wide:
/// other tests' schemas notify it too).
async fn next_from(listener: &mut PgListener, schema: &str) -> String {
    loop {
        let n = tokio::time::timeout(NOTIFIED, listener.recv())
            .await
            .expect("no notification in time")
            .unwrap();
        if let Some(table) = n.payload().strip_prefix(&format!("{schema}.")) {
            return table.to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_notify_every_replica_and_renewals_notify_nobody() {
    let schema = new_schema();
    let a = store_in(&schema).await;
    let b = store_in(&schema).await;
    let mut listener = PgListener::connect(&pg::url()).await.unwrap();
    listener.listen("switchyard_fleet").await.unwrap();
    let mut feed = a
        .fleet_changes()
        .await
        .unwrap()
        .expect("Postgres has a feed");

    b.register_worker("w1", "spec-a", fleet::MINUTE)
        .await
        .unwrap();
    assert_eq!(
        next_from(&mut listener, &schema).await,
        "fleet_registrations"
    );
    let change = tokio::time::timeout(NOTIFIED, feed.recv()).await.unwrap();
    assert_eq!(
        change,
        Some(Change::Changed),
        "replica a hears of b's registration"
    );

    // Heartbeats and a repeated registration renew without a word; the drain after them is
    // the next notification (Postgres delivers them in commit order).
    for _ in 0..5 {
        b.renew_worker("w1", fleet::MINUTE).await.unwrap().unwrap();
    }
    let (_, new) = a
        .register_worker("w1", "spec-a", fleet::MINUTE)
        .await
        .unwrap();
    assert!(!new);
    b.record_drain(DrainKind::Provider, "p1", true, "drained by admin")
        .await
        .unwrap();
    assert_eq!(next_from(&mut listener, &schema).await, "fleet_drains");

    // A changed registration (a new generation) and a removal notify.
    a.register_worker("w1", "spec-b", fleet::MINUTE)
        .await
        .unwrap();
    assert_eq!(
        next_from(&mut listener, &schema).await,
        "fleet_registrations"
    );
    b.remove_worker("w1").await.unwrap();
    assert_eq!(
        next_from(&mut listener, &schema).await,
        "fleet_registrations"
    );
}
