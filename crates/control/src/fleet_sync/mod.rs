//! One fleet across gateway replicas: registrations with their leases, and drains, live in
//! the shared store ([`switchyard_metering::store::FleetStore`]); each gateway's registry (what
//! the request path reads, an `arc-swap` snapshot) follows it.
//!
//! - The registration API and the admin API's drains go through [`FleetSync`]: the store is
//!   written first, then this gateway's registry. A heartbeat or a drain for a worker
//!   registered through another gateway, and not yet known here, loads it from the store
//!   rather than answering 404.
//! - [`task`] reconciles the registry from the store: on the store's change feed (Postgres
//!   `LISTEN/NOTIFY`: registrations, removals, drains), when a lease held here runs out (the
//!   store may have a renewal made through another gateway: heartbeats notify nobody), on
//!   demand, and every `[state] directory_refresh_ms` as the backstop.
//! - Leases are judged by the store's clock (see `FleetStore`); only the time left crosses
//!   to this process, which counts it down on its own monotonic clock.
//! - Health checks and breakers stay per gateway: each checks every worker itself.
//! - Workers from the config file are this gateway's own and never come from the store; the
//!   drains recorded there apply to them as to any worker.
//! - When the store cannot be written, the change is made here anyway and queued
//!   ([`pending`]); it is written when the store answers again, before anything is read back
//!   from it. Meanwhile this gateway expires leases by its own copy, as a single gateway does.

mod apply;
mod claim;
mod pending;
pub mod record;
pub mod task;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use switchyard_fleet::{DrainTarget, Fleet, FleetError, Worker, WorkerSource, WorkerSpec};
use switchyard_gateway::state::AppState;
use switchyard_metering::{Store, StoreError};
use tokio::sync::Notify;

use claim::{Claim, Local};
use pending::{Op, Pending};

/// A registration taken: the worker, and whether it is new to the fleet.
pub struct Registered {
    pub worker: Arc<Worker>,
    pub new: bool,
}

pub struct FleetSync {
    gateway: Arc<AppState>,
    lease: Duration,
    /// Which workers are changing here, or changed since a reconcile read the store (see
    /// [`claim`]). Held only around in-memory registry changes, never across an await.
    local: Mutex<Local>,
    pending: Mutex<Pending>,
    /// One reconcile at a time, so that an older read is never applied after a newer one.
    reconciling: tokio::sync::Mutex<()>,
    /// Asks the task for a reconcile soon.
    kick: Notify,
    /// Whether the last store call failed: logged once per outage, not per call.
    store_down: AtomicBool,
}

impl FleetSync {
    pub fn new(gateway: Arc<AppState>) -> Arc<Self> {
        let lease = Duration::from_millis(gateway.config.fleet_settings().lease_ms);
        Arc::new(Self {
            gateway,
            lease,
            local: Mutex::default(),
            pending: Mutex::default(),
            reconciling: tokio::sync::Mutex::new(()),
            kick: Notify::new(),
            store_down: AtomicBool::new(false),
        })
    }

    fn fleet(&self) -> &Arc<Fleet> {
        &self.gateway.fleet
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.gateway.directory.store()
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A hold on the workers an operation is about to change, taken before it writes the
    /// store: no reconcile undoes the change before it is made here.
    fn claim(&self, names: &[&str]) -> Claim<'_> {
        Claim::new(&self.local, self.fleet(), names)
    }

    /// Whether the store may be written directly: not while earlier changes wait for it
    /// (they must reach it first, in order).
    fn direct(&self) -> bool {
        self.pending().is_empty()
    }

    /// A change the store did not take: in force here, written when the store is back.
    fn defer(&self, op: Op, error: Option<StoreError>) {
        if let Some(e) = error {
            self.store_failed(&e);
        }
        self.pending().push(op);
        self.kick.notify_one();
    }

    fn store_failed(&self, e: &StoreError) {
        if !self.store_down.swap(true, Ordering::Relaxed) {
            tracing::error!(error = %e, "fleet store unavailable: registrations, heartbeats and drains apply to this gateway only until it is back; leases expire by this gateway's clock meanwhile");
        }
    }

    fn store_answered(&self) {
        if self.store_down.swap(false, Ordering::Relaxed) {
            tracing::info!("fleet store available again");
        }
    }

    fn static_worker(&self, name: &str) -> Result<(), FleetError> {
        match self.fleet().worker(name) {
            Some(w) if w.source == WorkerSource::Static => {
                Err(FleetError::StaticName(name.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// A worker new to this registry: its model stays known (503, not 404, once it leaves)
    /// and its counters exist from zero.
    fn adopt(&self, worker: &Worker) {
        let s = &worker.spec;
        self.gateway.registered_models.insert(&s.model);
        switchyard_gateway::metrics::zero_counters(
            self.gateway.config.tiers.keys().map(String::as_str),
            [(s.model.as_str(), s.region.as_str(), s.provider.as_str())],
        );
    }

    /// Registers (or renews) a worker, in the store and then here.
    pub async fn register(
        &self,
        spec: WorkerSpec,
        labels: BTreeMap<String, String>,
    ) -> Result<Registered, FleetError> {
        self.static_worker(&spec.name)?;
        let stored = record::encode(&spec, &labels).map_err(FleetError::InvalidWorker)?;
        let name = spec.name.clone();
        let claim = self.claim(&[&name]);
        let written = if self.direct() {
            match self
                .store()
                .register_worker(&name, &stored, self.lease_ms())
                .await
            {
                Ok((_, new)) => {
                    self.store_answered();
                    Ok(new)
                }
                Err(e) => Err(Some(e)),
            }
        } else {
            Err(None)
        };
        let (worker, new_here) = claim.apply(|fleet| fleet.register(spec, labels, self.lease))?;
        if new_here {
            self.adopt(&worker);
        }
        let new = match written {
            Ok(new) => {
                if new && !new_here {
                    // Registered anew while this gateway still had it: drains recorded
                    // before no longer apply.
                    self.kick.notify_one();
                }
                new
            }
            Err(e) => {
                self.defer(Op::Register(name), e);
                new_here
            }
        };
        Ok(Registered { worker, new })
    }

    /// Renews a worker's lease: in the store (which may know it from another gateway), then
    /// here. `UnknownWorker` tells the agent to register again.
    pub async fn heartbeat(&self, name: &str) -> Result<Arc<Worker>, FleetError> {
        self.static_worker(name)?;
        let claim = self.claim(&[name]);
        if self.direct() {
            match self.store().renew_worker(name, self.lease_ms()).await {
                Ok(Some(reg)) => {
                    self.store_answered();
                    match record::decode(&reg.spec) {
                        Ok((spec, labels)) => {
                            let lease = Duration::from_millis(
                                u64::try_from(reg.lease_left_ms).unwrap_or(0),
                            );
                            let (worker, new) =
                                claim.apply(|fleet| fleet.register(spec, labels, lease))?;
                            if new {
                                // Registered through another gateway: its drains apply here too.
                                self.adopt(&worker);
                                self.kick.notify_one();
                            }
                            return Ok(worker);
                        }
                        Err(e) => {
                            // Written by a newer gateway, say: renewed there, this gateway's
                            // copy renewed here, and nothing written back over it.
                            tracing::warn!(worker = name, error = %e, "cannot read the stored registration; renewing this gateway's copy");
                            return claim.apply(|fleet| fleet.heartbeat(name, self.lease));
                        }
                    }
                }
                Ok(None) => {
                    // Its lease ran out, or it was removed through another gateway.
                    self.store_answered();
                    claim.apply(|fleet| fleet.remove(name));
                    return Err(FleetError::UnknownWorker(name.to_string()));
                }
                Err(e) => self.store_failed(&e),
            }
        }
        let worker = claim.apply(|fleet| fleet.heartbeat(name, self.lease))?;
        self.defer(Op::Register(name.to_string()), None);
        Ok(worker)
    }

    /// Takes a worker out of the fleet, in the store and then here. Returns what it was still
    /// serving here.
    pub async fn remove(&self, name: &str) -> Result<u32, FleetError> {
        self.static_worker(name)?;
        let claim = self.claim(&[name]);
        let stored = if self.direct() {
            match self.store().remove_worker(name).await {
                Ok(live) => {
                    self.store_answered();
                    Ok(live)
                }
                Err(e) => Err(Some(e)),
            }
        } else {
            Err(None)
        };
        let gone = claim.apply(|fleet| fleet.remove(name));
        let in_store = match stored {
            Ok(live) => live,
            Err(e) => {
                self.defer(Op::Remove(name.to_string()), e);
                false
            }
        };
        match gone {
            Some(w) => Ok(w.outstanding()),
            None if in_store => Ok(0),
            None => Err(FleetError::UnknownWorker(name.to_string())),
        }
    }

    /// Drains (or undrains) what `target` names, in the store and then here, where `matched`
    /// are the workers it names here. Returns how many of them changed here.
    pub async fn drain(
        &self,
        target: &DrainTarget,
        draining: bool,
        why: &str,
        matched: &[&str],
    ) -> usize {
        let (kind, value) = record::kind_of(target);
        let claim = self.claim(matched);
        let error = if self.direct() {
            match self.store().record_drain(kind, value, draining, why).await {
                Ok(_) => {
                    self.store_answered();
                    None
                }
                Err(e) => Some(Some(e)),
            }
        } else {
            Some(None)
        };
        let changed = claim.apply(|fleet| fleet.drain(target, draining, why));
        if let Some(e) = error {
            let op = Op::Drain {
                kind,
                value: value.to_string(),
                draining,
                reason: why.to_string(),
            };
            self.defer(op, e);
        }
        changed
    }

    /// The worker called `name`: this gateway's, or else the store's (registered through
    /// another gateway, not reconciled here yet), which it then adopts.
    /// Whether changes go straight to the store (nothing waits to be written): when they do
    /// not, this replica's view may be behind another's, and who owns a worker cannot be
    /// shown.
    pub fn in_step_with_store(&self) -> bool {
        self.direct()
    }

    pub async fn known(&self, name: &str) -> Option<Arc<Worker>> {
        if let Some(w) = self.fleet().worker(name) {
            return Some(w);
        }
        if let Err(e) = self.reconcile().await {
            tracing::warn!(worker = name, error = %e, "cannot look the worker up in the fleet store");
        }
        self.fleet().worker(name)
    }

    /// Writes what waits for the store, then brings the registry in line with it.
    pub async fn reconcile(&self) -> Result<(), StoreError> {
        let _one = self.reconciling.lock().await;
        let result = self.reconcile_now().await;
        match &result {
            Ok(()) => self.store_answered(),
            Err(e) => self.store_failed(e),
        }
        result
    }

    async fn reconcile_now(&self) -> Result<(), StoreError> {
        self.flush().await?;
        let since = self.local().changes();
        let state = self.store().fleet_state().await?;
        let added = {
            let mut local = self.local();
            let added = apply::apply(self.fleet(), &state, |name| local.newer_here(name, since));
            local.covered(since);
            added
        };
        for worker in &added {
            tracing::info!(worker = %worker.spec.name, model = %worker.spec.model, "worker registered through another gateway");
            self.adopt(worker);
        }
        Ok(())
    }

    /// Writes the queued changes in order; stops at the first the store cannot take now. One
    /// it refuses for itself (not for being down) is dropped, or it would hold up the rest
    /// for ever: the worker's next heartbeat finds no registration and its agent registers
    /// again.
    async fn flush(&self) -> Result<(), StoreError> {
        let queued = self.pending().len();
        if queued == 0 {
            return Ok(());
        }
        loop {
            // The queue's lock is not held across the write: handlers queue meanwhile.
            let next = self.pending().front().cloned();
            let Some(op) = next else { break };
            match self.write(&op).await {
                Ok(()) => {}
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, change = ?op, "the fleet store refused a change made while it was unavailable; dropped");
                }
            }
            self.pending().pop_front();
        }
        tracing::info!(
            changes = queued,
            "fleet changes made while the store was unavailable are written"
        );
        Ok(())
    }

    async fn write(&self, op: &Op) -> Result<(), StoreError> {
        let store = self.store();
        match op {
            Op::Register(name) => {
                // As this gateway has it now; gone here (its lease ran out) means nothing to write.
                let Some(w) = self.fleet().worker(name) else {
                    return Ok(());
                };
                let Some(left) = w.lease_left_ms() else {
                    return Ok(());
                };
                let stored = record::encode(&w.spec, &w.labels).map_err(StoreError::Invalid)?;
                let left = i64::try_from(left).unwrap_or(i64::MAX);
                store.register_worker(name, &stored, left).await?;
            }
            Op::Remove(name) => {
                store.remove_worker(name).await?;
            }
            Op::Drain {
                kind,
                value,
                draining,
                reason,
            } => {
                store.record_drain(*kind, value, *draining, reason).await?;
            }
        }
        Ok(())
    }

    /// Deletes registrations whose lease ran out more than a lease ago (housekeeping).
    async fn purge(&self) {
        if !self.direct() {
            return;
        }
        if let Err(e) = self.store().purge_expired_workers(self.lease_ms()).await {
            tracing::debug!(error = %e, "purging expired registrations failed; next time");
        }
    }
}
