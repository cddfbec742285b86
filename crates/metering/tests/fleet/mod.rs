//! What every store must do with the fleet's registrations, leases and drains
//! ([`FleetStore`]): one script, run on SQLite (`sqlite_fleet.rs`) and on Postgres
//! (`pg_fleet.rs`). Leases that must have run out are written already expired (a lease of 0 or
//! less) rather than waited for.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use switchyard_metering::store::{DrainKind, FleetStore};

pub const MINUTE: i64 = 60_000;

/// A lease written with `lease_ms` a moment ago has about that long left.
#[track_caller]
pub fn assert_lease(left: i64, lease_ms: i64) {
    assert!(
        (lease_ms - 5_000..=lease_ms).contains(&left),
        "{left} ms left of a {lease_ms} ms lease"
    );
}

pub async fn registrations_leases_and_drains(s: &dyn FleetStore) {
    let empty = s.fleet_state().await.unwrap();
    assert!(empty.registrations.is_empty() && empty.drains.is_empty());

    // New, renewed by the same spec, replaced by a changed one.
    let (first, new) = s.register_worker("w1", "spec-a", MINUTE).await.unwrap();
    assert!(new);
    assert_eq!((first.name.as_str(), first.spec.as_str()), ("w1", "spec-a"));
    assert_lease(first.lease_left_ms, MINUTE);
    let (again, new) = s.register_worker("w1", "spec-a", 2 * MINUTE).await.unwrap();
    assert!(!new, "the same spec on a live lease is a renewal");
    assert_eq!(again.generation, first.generation);
    assert_lease(again.lease_left_ms, 2 * MINUTE);
    let (changed, new) = s.register_worker("w1", "spec-b", MINUTE).await.unwrap();
    assert!(new, "a changed spec is a new registration");
    assert!(changed.generation > first.generation);
    assert_eq!(changed.spec, "spec-b");

    // Heartbeats renew a live lease only.
    let renewed = s.renew_worker("w1", 3 * MINUTE).await.unwrap().unwrap();
    assert_eq!(renewed.generation, changed.generation);
    assert_eq!(renewed.spec, "spec-b");
    assert_lease(renewed.lease_left_ms, 3 * MINUTE);
    assert_eq!(s.renew_worker("nobody", MINUTE).await.unwrap(), None);

    // Drains: each later than everything before it; a target's new record replaces its old.
    let d1 = s
        .record_drain(DrainKind::Provider, "p1", true, "drained by admin")
        .await
        .unwrap();
    assert!(d1 > changed.generation);
    let d2 = s
        .record_drain(DrainKind::Worker, "w1", true, "its agent is shutting down")
        .await
        .unwrap();
    let d3 = s
        .record_drain(DrainKind::Provider, "p1", false, "undrained by admin")
        .await
        .unwrap();
    assert!(d1 < d2 && d2 < d3);
    let state = s.fleet_state().await.unwrap();
    assert_eq!(state.registrations.len(), 1);
    assert_eq!(state.registrations[0].name, "w1");
    assert_eq!(state.registrations[0].generation, changed.generation);
    assert_lease(state.registrations[0].lease_left_ms, 3 * MINUTE);
    let drains: Vec<_> = state
        .drains
        .iter()
        .map(|d| {
            (
                d.kind,
                d.value.as_str(),
                d.draining,
                d.reason.as_str(),
                d.seq,
            )
        })
        .collect();
    assert_eq!(
        drains,
        [
            (
                DrainKind::Worker,
                "w1",
                true,
                "its agent is shutting down",
                d2
            ),
            (DrainKind::Provider, "p1", false, "undrained by admin", d3),
        ],
        "by sequence, one record per target"
    );

    // A lease that ran out: not live, not renewable; registering again is new.
    let (expired, _) = s.register_worker("w2", "spec-a", 0).await.unwrap();
    let names = |st: &switchyard_metering::store::FleetState| {
        st.registrations
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&s.fleet_state().await.unwrap()), ["w1"]);
    assert_eq!(s.renew_worker("w2", MINUTE).await.unwrap(), None);
    let (back, new) = s.register_worker("w2", "spec-a", MINUTE).await.unwrap();
    assert!(new, "a registration over an expired lease is new");
    assert!(back.generation > expired.generation);
    assert_eq!(names(&s.fleet_state().await.unwrap()), ["w1", "w2"]);

    // Removal takes the worker's own drain record with it; a second removal finds nothing.
    assert!(s.remove_worker("w1").await.unwrap());
    assert!(!s.remove_worker("w1").await.unwrap());
    let state = s.fleet_state().await.unwrap();
    assert_eq!(names(&state), ["w2"]);
    assert_eq!(state.drains.len(), 1);
    assert_eq!(state.drains[0].kind, DrainKind::Provider);
    // Removing an expired registration deletes it but finds no live one.
    s.register_worker("w3", "spec-a", 0).await.unwrap();
    assert!(!s.remove_worker("w3").await.unwrap());

    // Housekeeping drops registrations expired longer than the grace, with their drains.
    s.register_worker("old", "spec-a", -10 * MINUTE)
        .await
        .unwrap();
    s.record_drain(DrainKind::Worker, "old", true, "x")
        .await
        .unwrap();
    s.register_worker("recent", "spec-a", -1_000).await.unwrap();
    assert_eq!(s.purge_expired_workers(MINUTE).await.unwrap(), 1);
    let state = s.fleet_state().await.unwrap();
    assert!(
        state.drains.iter().all(|d| d.value != "old"),
        "{:?}",
        state.drains
    );
    let (recent, new) = s.register_worker("recent", "spec-a", MINUTE).await.unwrap();
    assert!(new, "still there (expired): registering again is new");
    assert_lease(recent.lease_left_ms, MINUTE);
    assert_eq!(s.purge_expired_workers(0).await.unwrap(), 0);
    assert_eq!(names(&s.fleet_state().await.unwrap()), ["recent", "w2"]);
}
