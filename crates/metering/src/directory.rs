//! The in-memory view of tenants and keys that the request path reads: one atomic pointer load
//! and a hash lookup per request, no lock. Admin changes write the store, then rebuild the view
//! and swap it in, so a revoked key stops working at once. Limit states and credit balances are
//! carried over across rebuilds, so a reload neither resets nor forgets anyone's usage.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::keys::{digests_equal, hash_secret};
use crate::limiter::LimitState;
use crate::model::{ApiKey, Limits, Tenant};
use crate::money::Nanos;
use crate::store::{Store, StoreError};

pub struct TenantEntry {
    pub tenant: Tenant,
    /// The tier's limits with the tenant's overrides applied.
    pub limits: Limits,
    pub state: Arc<Mutex<LimitState>>,
    /// Prepaid credit left, in nano-dollars: top-ups minus settled costs.
    pub balance: Arc<AtomicI64>,
    /// Credit held by requests in flight.
    pub credit_reserved: Arc<AtomicI64>,
}

pub struct KeyEntry {
    pub key: ApiKey,
    pub tenant: Arc<TenantEntry>,
    /// The tenant's limits with the key's overrides applied.
    pub limits: Limits,
    pub state: Arc<Mutex<LimitState>>,
}

/// Tokens used this month per tenant and per key, from the ledger.
#[derive(Default)]
struct MonthUsage {
    by_tenant: HashMap<String, u64>,
    by_key: HashMap<String, u64>,
}

impl MonthUsage {
    fn tenant(&self, id: &str) -> u64 {
        self.by_tenant.get(id).copied().unwrap_or(0)
    }

    fn key(&self, id: &str) -> u64 {
        self.by_key.get(id).copied().unwrap_or(0)
    }
}

#[derive(Default)]
struct Snapshot {
    by_hash: HashMap<[u8; 32], Arc<KeyEntry>>,
    by_id: HashMap<String, Arc<KeyEntry>>,
    tenants: HashMap<String, Arc<TenantEntry>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown key")]
    Unknown,
    #[error("key revoked")]
    Revoked,
    #[error("key expired")]
    Expired,
}

pub struct Directory {
    store: Arc<dyn Store>,
    tiers: BTreeMap<String, Limits>,
    /// Keys that live only in memory (the dev key printed at start).
    ephemeral: Vec<ApiKey>,
    snapshot: ArcSwap<Snapshot>,
    reload: tokio::sync::Mutex<()>,
    /// The in-memory limit states count `1 / local_share` of each limit: 1 when this process
    /// is the only one counting; the live replica count when limits are shared in Redis (the
    /// states are then used only while Redis cannot be reached).
    local_share: std::sync::atomic::AtomicU32,
}

pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix ms of the first instant of the UTC month containing `ms`.
pub fn month_start_ms(ms: i64) -> i64 {
    let idx = crate::limiter::month_index(ms);
    let first = i32::try_from(idx / 12)
        .ok()
        .zip(u8::try_from(idx % 12 + 1).ok())
        .and_then(|(year, month)| {
            let month = time::Month::try_from(month).ok()?;
            time::Date::from_calendar_date(year, month, 1).ok()
        })
        .unwrap_or(time::Date::MIN);
    first.midnight().assume_utc().unix_timestamp() * 1000
}

impl Directory {
    pub async fn load(
        store: Arc<dyn Store>,
        tiers: BTreeMap<String, Limits>,
        ephemeral: Vec<ApiKey>,
    ) -> Result<Self, StoreError> {
        let dir = Self {
            store,
            tiers,
            ephemeral,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            reload: tokio::sync::Mutex::new(()),
            local_share: std::sync::atomic::AtomicU32::new(1),
        };
        dir.reload().await?;
        Ok(dir)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn tiers(&self) -> &BTreeMap<String, Limits> {
        &self.tiers
    }

    /// Rebuilds the view from the store, keeping live limit states and balances.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.reload.lock().await;
        let old = self.snapshot.load_full();
        let now = Instant::now();
        let now_ms = unix_ms();
        let month_start = month_start_ms(now_ms);
        // This month's tokens per tenant and key, read once and only if someone is new (at
        // start, everyone): quotas carry on where the ledger says they are, not from zero.
        let mut month = None;
        let share = self.local_share();
        let mut next = Snapshot::default();
        for tenant in self.store.list_tenants().await? {
            let Some(tier) = self.tiers.get(&tenant.tier) else {
                tracing::warn!(tenant = %tenant.id, tier = %tenant.tier, "tenant's tier is not configured; its keys are disabled");
                continue;
            };
            let limits = tenant.overrides.apply(tier);
            let entry = match old.tenants.get(&tenant.id) {
                Some(prev) => {
                    lock(&prev.state).reconfigure(&limits.share(share), now);
                    TenantEntry {
                        tenant,
                        limits,
                        state: prev.state.clone(),
                        balance: prev.balance.clone(),
                        credit_reserved: prev.credit_reserved.clone(),
                    }
                }
                None => {
                    let used = self
                        .month_usage(&mut month, month_start)
                        .await?
                        .tenant(&tenant.id);
                    let balance = self.store.credit_balance(&tenant.id).await?;
                    TenantEntry {
                        state: Arc::new(Mutex::new(LimitState::new(
                            &limits.share(share),
                            used,
                            now,
                            now_ms,
                        ))),
                        balance: Arc::new(AtomicI64::new(balance)),
                        credit_reserved: Arc::new(AtomicI64::new(0)),
                        tenant,
                        limits,
                    }
                }
            };
            next.tenants
                .insert(entry.tenant.id.clone(), Arc::new(entry));
        }
        let stored = self.store.list_keys(None).await?;
        for key in stored.into_iter().chain(self.ephemeral.iter().cloned()) {
            let Some(tenant) = next.tenants.get(&key.tenant_id).cloned() else {
                continue;
            };
            let limits = key.limits.apply(&tenant.limits);
            let state = match old.by_id.get(&key.id) {
                Some(prev) => {
                    lock(&prev.state).reconfigure(&limits.share(share), now);
                    prev.state.clone()
                }
                None => {
                    let used = self
                        .month_usage(&mut month, month_start)
                        .await?
                        .key(&key.id);
                    Arc::new(Mutex::new(LimitState::new(
                        &limits.share(share),
                        used,
                        now,
                        now_ms,
                    )))
                }
            };
            let entry = Arc::new(KeyEntry {
                key,
                tenant,
                limits,
                state,
            });
            next.by_hash.insert(entry.key.hash, entry.clone());
            next.by_id.insert(entry.key.id.clone(), entry);
        }
        self.snapshot.store(Arc::new(next));
        Ok(())
    }

    async fn month_usage<'a>(
        &self,
        cache: &'a mut Option<MonthUsage>,
        month_start: i64,
    ) -> Result<&'a MonthUsage, StoreError> {
        if cache.is_none() {
            let rows = self.store.tokens_by_key_since(month_start).await?;
            let mut usage = MonthUsage::default();
            for row in rows {
                let t = usage.by_tenant.entry(row.tenant_id).or_default();
                *t = t.saturating_add(row.tokens);
                let k = usage.by_key.entry(row.key_id).or_default();
                *k = k.saturating_add(row.tokens);
            }
            *cache = Some(usage);
        }
        Ok(cache.get_or_insert_with(MonthUsage::default))
    }

    fn local_share(&self) -> u32 {
        self.local_share
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1)
    }

    /// Divides the in-memory limit states by `replicas` (see `local_share`), at once for
    /// everyone known and for those loaded later.
    pub fn set_local_share(&self, replicas: u32) {
        let replicas = replicas.max(1);
        let before = self
            .local_share
            .swap(replicas, std::sync::atomic::Ordering::Relaxed);
        if before == replicas {
            return;
        }
        let now = Instant::now();
        let snapshot = self.snapshot.load();
        for t in snapshot.tenants.values() {
            lock(&t.state).reconfigure(&t.limits.share(replicas), now);
        }
        for k in snapshot.by_id.values() {
            lock(&k.state).reconfigure(&k.limits.share(replicas), now);
        }
    }

    pub fn authenticate(&self, secret: &str, now_ms: i64) -> Result<Arc<KeyEntry>, AuthError> {
        let digest = hash_secret(secret);
        let snapshot = self.snapshot.load();
        let entry = snapshot.by_hash.get(&digest).ok_or(AuthError::Unknown)?;
        if !digests_equal(&entry.key.hash, &digest) {
            return Err(AuthError::Unknown);
        }
        if entry.key.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if entry.key.expires_at.is_some_and(|t| t <= now_ms) {
            return Err(AuthError::Expired);
        }
        Ok(entry.clone())
    }

    pub fn tenant(&self, id: &str) -> Option<Arc<TenantEntry>> {
        self.snapshot.load().tenants.get(id).cloned()
    }

    /// Adds credit to the live balance (the store is written by the caller first).
    pub fn credit(&self, tenant_id: &str, amount: Nanos) {
        if let Some(t) = self.tenant(tenant_id) {
            t.balance
                .fetch_add(amount, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A poisoned limit state is still consistent (every update is a few arithmetic steps), so
/// recover it rather than fail every later request of the tenant.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_start_is_midnight_utc_on_the_first() {
        // 2026-11-28T08:00:00Z → 2026-11-01T00:00:00Z = 1793491200000.
        assert_eq!(month_start_ms(1_795_852_800_000), 1_793_491_200_000);
        assert_eq!(month_start_ms(1_793_491_200_000), 1_793_491_200_000);
        assert_eq!(month_start_ms(0), 0);
        assert_eq!(month_start_ms(i64::MIN), -62_167_219_200_000); // 0000-01-01
    }
}
