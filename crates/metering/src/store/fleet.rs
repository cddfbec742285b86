//! The fleet's shared state: registrations of self-registered workers with their leases, and
//! drains, so that every gateway replica on one store knows the same fleet (see
//! `switchyard_control::fleet_sync`, which reconciles each replica's registry from it).
//!
//! Lease times are the database's: a lease is written as "`lease_ms` from the database's now"
//! and read back as "milliseconds left by the database's now", so replicas whose clocks
//! disagree still agree on when a lease runs out. Only durations leave the store.

use async_trait::async_trait;

use super::{Change, Result};

/// A live registration, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRegistration {
    pub name: String,
    /// The worker as registered: JSON written and read by the control plane, which the store
    /// only compares (the same spec again is a renewal).
    pub spec: String,
    /// Taken from the fleet's sequence when the registration is new (or replaces a changed or
    /// expired one), kept by renewals: drains recorded before it do not apply to it.
    pub generation: i64,
    /// Milliseconds its lease has left by the database's clock (positive: it is live).
    pub lease_left_ms: i64,
}

/// What a drain applies to: one worker by name, or every worker of a provider or a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainKind {
    Worker,
    Provider,
    Region,
}

impl DrainKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainKind::Worker => "worker",
            DrainKind::Provider => "provider",
            DrainKind::Region => "region",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "worker" => Some(DrainKind::Worker),
            "provider" => Some(DrainKind::Provider),
            "region" => Some(DrainKind::Region),
            _ => None,
        }
    }
}

/// The latest drain or undrain of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainRecord {
    pub kind: DrainKind,
    pub value: String,
    pub draining: bool,
    /// Shown as the drained workers' reason.
    pub reason: String,
    /// From the same sequence as registrations' generations: the newest record matching a
    /// worker, and newer than its registration, decides whether it drains.
    pub seq: i64,
}

/// Everything a replica reconciles its registry from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetState {
    /// Live registrations only, by name.
    pub registrations: Vec<WorkerRegistration>,
    pub drains: Vec<DrainRecord>,
}

/// Registrations, their leases and drains, shared by the gateways on one store.
#[async_trait]
pub trait FleetStore: Send + Sync + 'static {
    /// Registers `name` with `spec` and a lease of `lease_ms` from the database's now. The same
    /// spec again, while its lease is live, renews it and keeps its generation; a new name, a
    /// changed spec or an expired lease takes the next generation. Returns the registration
    /// and whether it is new (took a generation).
    async fn register_worker(
        &self,
        name: &str,
        spec: &str,
        lease_ms: i64,
    ) -> Result<(WorkerRegistration, bool)>;
    /// Renews `name`'s live lease to `lease_ms` from now; `None` when it has none (never
    /// registered, removed, or expired: the agent must register again).
    async fn renew_worker(&self, name: &str, lease_ms: i64) -> Result<Option<WorkerRegistration>>;
    /// Removes `name`'s registration and the drain record naming it; returns whether a live
    /// registration was there.
    async fn remove_worker(&self, name: &str) -> Result<bool>;
    /// Records a drain (or an undrain) of a target, newer than every record and registration
    /// before it; replaces the target's earlier record. Returns its sequence number.
    async fn record_drain(
        &self,
        kind: DrainKind,
        value: &str,
        draining: bool,
        reason: &str,
    ) -> Result<i64>;
    /// Live registrations and every drain record.
    async fn fleet_state(&self) -> Result<FleetState>;
    /// Deletes registrations whose lease ran out more than `grace_ms` ago, with their worker
    /// drain records; returns how many. Housekeeping only: expired rows are never read as
    /// live, and a registration over one is new.
    async fn purge_expired_workers(&self, grace_ms: i64) -> Result<u64>;
    /// A feed of registrations added, replaced or removed and of drains, made through any
    /// process on this store (Postgres `LISTEN/NOTIFY`); `None` where there is none (SQLite:
    /// one gateway per file). Lease renewals are not in it. Ends when the receiver is dropped.
    async fn fleet_changes(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Change>>> {
        Ok(None)
    }
}
