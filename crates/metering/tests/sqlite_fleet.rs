//! The fleet's registrations, leases and drains on SQLite: in memory (what the tests' gateways
//! use) and on a file (writes on the writer connection, reads on the reader pool).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fleet;

use switchyard_metering::store::sqlite::SqliteStore;

#[tokio::test]
async fn registrations_leases_and_drains_in_memory() {
    let store = SqliteStore::in_memory().await.unwrap();
    fleet::registrations_leases_and_drains(&store).await;
}

#[tokio::test]
async fn registrations_leases_and_drains_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    fleet::registrations_leases_and_drains(&store).await;
    store.close().await;
    // Reopened: the registrations and drains are the file's, not the process's.
    let store = SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let state = switchyard_metering::store::FleetStore::fleet_state(&store)
        .await
        .unwrap();
    assert_eq!(state.registrations.len(), 2);
    assert_eq!(state.drains.len(), 1);
}
