//! Limits shared by every gateway replica, counted in Redis.
//!
//! Each admission is one Lua script (one round trip): the tenant's and the key's buckets
//! (requests and tokens per minute), their concurrency leases, the monthly quota and prepaid
//! credit are checked and taken together, or not at all. Settlement is a second script, off
//! the request path. Time is Redis's clock, so replicas' clocks may disagree.
//!
//! - **Concurrency slots are leases** (a sorted set per subject, scored by expiry). A running
//!   request renews its lease every third of [`SharedLimitsSettings::lease`]; a replica that
//!   dies stops renewing, and its slots, reserved tokens and held credit come back when the
//!   lease runs out.
//! - **Redis is evidence of admission, not the bill.** The ledger (the store) is the record;
//!   Redis's month figures and balances are floored/seeded from it, so a Redis that lost its
//!   data starts again from the ledger.
//! - **When Redis cannot be reached**, admission follows [`DownPolicy`]: each replica enforces
//!   its share of the limits in memory, or refuses with 503. After a failure Redis is skipped
//!   for `retry` (no request waits on a dead connection), and the replica heartbeat brings it
//!   back as soon as it answers.
//!
//! Every key of one tenant carries the tenant's hash tag (`{t:<id>}`), so one script touches
//! one Redis Cluster slot.

mod connection;
mod health;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::Script;

use connection::Connection;
pub use health::Health;

use crate::model::Limits;

/// Every script starts with the shared helpers (time, buckets, leases).
const COMMON: &str = include_str!("common.lua");

/// How long a cancelled admission stays cancelled (see `settle`).
const CANCEL_MARK_MS: u64 = 60 * 60 * 1000;

/// What admission does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownPolicy {
    /// Each replica enforces `1 / replicas` of every rate and concurrency limit, and of the
    /// prepaid balance it last knew.
    Local,
    /// 503 with `Retry-After`.
    Reject,
}

#[derive(Debug, Clone)]
pub struct SharedLimitsSettings {
    pub url: String,
    pub prefix: String,
    pub policy: DownPolicy,
    pub timeout: Duration,
    pub retry: Duration,
    pub lease: Duration,
    /// This process's name in the replica count.
    pub instance: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SharedLimitsError {
    #[error("invalid Redis URL: {0}")]
    Url(String),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected answer from Redis: {0}")]
    Answer(String),
}

struct Scripts {
    admit: Script,
    settle: Script,
    renew: Script,
    credit: Script,
    replicas: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_common = |body: &str| Script::new(&format!("{COMMON}\n{body}"));
        Self {
            admit: with_common(include_str!("admit.lua")),
            settle: with_common(include_str!("settle.lua")),
            renew: with_common(include_str!("renew.lua")),
            credit: with_common(include_str!("credit.lua")),
            replicas: with_common(include_str!("replicas.lua")),
        }
    }
}

pub struct SharedLimits {
    /// Admissions only: what a request waits for is never queued behind settlements.
    conn: Connection,
    /// Settlements, lease renewals, top-ups and the heartbeat.
    background: Connection,
    scripts: Scripts,
    settings: SharedLimitsSettings,
    health: Health,
    /// Replicas alive at the last heartbeat (at least 1): the local fallback's divisor.
    replicas: AtomicU32,
    next_lease: AtomicU64,
}

/// The Redis keys of one tenant and one of its keys.
pub struct SubjectKeys {
    tenant_state: String,
    tenant_leases: String,
    key_state: String,
    key_leases: String,
    /// Whether the key's own limits are checked at admission (see [`key_binds`]); when they
    /// are not, the tenant's decide alone and a script does half the work. Its month's usage
    /// is kept either way (at settlement, off the request path), ready for a quota set later.
    key_counted: bool,
}

impl SubjectKeys {
    /// How many lease sets a request holds a lease in (1 or 2).
    pub fn leases(&self) -> i64 {
        1 + i64::from(self.key_counted)
    }
}

/// Whether a key's limits can refuse what its tenant's would admit. A key's traffic is part of
/// its tenant's, so a key whose every limit is at least its tenant's is never the one to
/// refuse: its buckets are always at least as full, its leases and month at most as many.
/// Such a key (the usual case: no per-key overrides) is not counted in Redis at all.
pub fn key_binds(tenant: &Limits, key: &Limits) -> bool {
    let monthly_tighter = key.monthly_tokens != 0
        && (tenant.monthly_tokens == 0 || key.monthly_tokens < tenant.monthly_tokens);
    key.requests_per_minute < tenant.requests_per_minute
        || key.tokens_per_minute < tenant.tokens_per_minute
        || key.max_concurrent < tenant.max_concurrent
        || monthly_tighter
}

/// What one admission script answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    pub code: i64,
    pub a: i64,
    pub b: i64,
    /// Bucket levels after the admission, in thousandths: tenant requests, tenant tokens, key
    /// requests, key tokens.
    pub levels: [i64; 4],
}

/// The numbers an admission or settlement sends with each subject's limits.
fn limit_args(l: &Limits) -> [u64; 4] {
    [
        u64::from(l.requests_per_minute),
        l.tokens_per_minute,
        u64::from(l.max_concurrent),
        l.monthly_tokens,
    ]
}

/// One admission's inputs.
pub struct AdmitArgs<'a> {
    pub keys: &'a SubjectKeys,
    /// The lease's "settled" mark: set first by a cancellation that overtook its admission.
    pub done: &'a str,
    pub member: &'a str,
    pub tokens: u64,
    pub credit: i64,
    pub month: u32,
    pub tenant_limits: &'a Limits,
    pub tenant_month_seed: u64,
    pub key_limits: &'a Limits,
    pub key_month_seed: u64,
    pub prepaid: bool,
    pub balance_seed: i64,
}

/// One settlement's inputs.
pub struct SettleArgs {
    pub keys: SubjectKeys,
    /// Marks the lease settled, so that a retry after a timeout cannot charge twice.
    pub done: String,
    pub member: String,
    pub reserved: u64,
    pub used: u64,
    pub credit: i64,
    pub cost: i64,
    pub month: u32,
    pub tenant_limits: Limits,
    pub key_limits: Limits,
    pub prepaid: bool,
    /// Undo an admission whose answer was lost, where it ran (see `settle.lua`).
    pub cancel: bool,
}

impl SharedLimits {
    /// Connects lazily: a replica starts (and serves, by its policy) while Redis is down.
    pub fn new(settings: SharedLimitsSettings) -> Result<Arc<Self>, SharedLimitsError> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| SharedLimitsError::Url(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            // No response timeout of its own: `Connection::run` times each call, and retires
            // the connection when one runs out.
            .set_response_timeout(None)
            // Reconnection is retried by the heartbeat, not inside a request.
            .set_number_of_retries(1);
        let conn = Connection::new(client.clone(), config.clone(), settings.timeout)?;
        let background = Connection::new(client, config, settings.timeout)?;
        Ok(Arc::new(Self {
            conn,
            background,
            scripts: Scripts::new(),
            health: Health::new(settings.retry),
            settings,
            replicas: AtomicU32::new(1),
            next_lease: AtomicU64::new(0),
        }))
    }

    pub fn settings(&self) -> &SharedLimitsSettings {
        &self.settings
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Replicas alive at the last heartbeat, at least 1.
    pub fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Relaxed).max(1)
    }

    /// The keys of `tenant_id` and its key `key_id`, counted at admission or not.
    pub fn keys(&self, tenant_id: &str, key_id: &str, key_counted: bool) -> SubjectKeys {
        let p = &self.settings.prefix;
        SubjectKeys {
            tenant_state: format!("{p}{{t:{tenant_id}}}:t"),
            tenant_leases: format!("{p}{{t:{tenant_id}}}:tl"),
            key_state: format!("{p}{{t:{tenant_id}}}:k:{key_id}"),
            key_leases: format!("{p}{{t:{tenant_id}}}:kl:{key_id}"),
            key_counted,
        }
    }

    /// The key marking `member`'s lease settled (in the tenant's slot).
    pub fn settled_mark(&self, tenant_id: &str, member: &str) -> String {
        format!("{}{{t:{tenant_id}}}:done:{member}", self.settings.prefix)
    }

    /// A lease name unique across replicas, carrying what the lease holds, so an expiry can
    /// release it without another lookup.
    pub fn lease_member(&self, tokens: u64, credit: i64) -> String {
        let n = self.next_lease.fetch_add(1, Ordering::Relaxed);
        format!("{}:{n}|{tokens}|{}", self.settings.instance, credit.max(0))
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.settings.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs the admission script. An error means Redis could not decide (not a refusal).
    pub async fn admit(&self, a: &AdmitArgs<'_>) -> Result<Answer, SharedLimitsError> {
        let mut inv = self.scripts.admit.prepare_invoke();
        inv.key(&a.keys.tenant_state)
            .key(&a.keys.tenant_leases)
            .key(a.done);
        if a.keys.key_counted {
            inv.key(&a.keys.key_state).key(&a.keys.key_leases);
        }
        inv.arg(a.member)
            .arg(a.tokens)
            .arg(a.credit.max(0))
            .arg(self.lease_ms())
            .arg(a.month);
        for v in limit_args(a.tenant_limits) {
            inv.arg(v);
        }
        inv.arg(a.tenant_month_seed);
        for v in limit_args(a.key_limits) {
            inv.arg(v);
        }
        inv.arg(a.key_month_seed)
            .arg(u8::from(a.prepaid))
            .arg(a.balance_seed);
        let answer: Vec<i64> = self
            .conn
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        match answer[..] {
            [code, a, b, l0, l1, l2, l3] => Ok(Answer {
                code,
                a,
                b,
                levels: [l0, l1, l2, l3],
            }),
            _ => Err(SharedLimitsError::Answer(format!("{answer:?}"))),
        }
    }

    pub async fn settle(&self, s: &SettleArgs) -> Result<(), SharedLimitsError> {
        let mut inv = self.scripts.settle.prepare_invoke();
        inv.key(&s.keys.tenant_state)
            .key(&s.keys.tenant_leases)
            .key(&s.done);
        // A cancellation never touches a key it did not count; a settlement keeps the key's
        // month either way (4 keys), and releases its lease when it holds one (5).
        if !s.cancel || s.keys.key_counted {
            inv.key(&s.keys.key_state);
        }
        if s.keys.key_counted {
            inv.key(&s.keys.key_leases);
        }
        inv.arg(&s.member)
            .arg(s.reserved)
            .arg(s.used)
            .arg(s.credit.max(0))
            .arg(s.cost.max(0))
            .arg(s.month);
        for v in limit_args(&s.tenant_limits) {
            inv.arg(v);
        }
        for v in limit_args(&s.key_limits) {
            inv.arg(v);
        }
        // A settlement's mark only has to outlive its retries (about a lease). A cancellation's
        // must outlive the admission it stops, which may still sit in a retired socket's send
        // buffer: the kernel retransmits for up to about 15 minutes. Cancellations are rare.
        let mark_ms = if s.cancel {
            CANCEL_MARK_MS.max(self.lease_ms().saturating_mul(2))
        } else {
            self.lease_ms().saturating_mul(2)
        };
        inv.arg(u8::from(s.prepaid))
            .arg(mark_ms)
            .arg(u8::from(s.cancel));
        let _: i64 = self
            .background
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(())
    }

    /// Extends a running request's leases; returns how many (0 to [`SubjectKeys::leases`])
    /// were still held.
    pub async fn renew(&self, keys: &SubjectKeys, member: &str) -> Result<i64, SharedLimitsError> {
        let mut inv = self.scripts.renew.prepare_invoke();
        inv.key(&keys.tenant_leases);
        if keys.key_counted {
            inv.key(&keys.key_leases);
        }
        inv.arg(member).arg(self.lease_ms());
        self.background
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
    }

    /// Adds a top-up (or a correction) already written to the store to the shared balance,
    /// once per `once` (the same id on every retry of one top-up).
    pub async fn credit(
        &self,
        tenant_id: &str,
        amount: i64,
        once: &str,
    ) -> Result<(), SharedLimitsError> {
        let mut inv = self.scripts.credit.prepare_invoke();
        inv.key(self.keys(tenant_id, "", false).tenant_state)
            .key(format!(
                "{}{{t:{tenant_id}}}:credit:{once}",
                self.settings.prefix
            ))
            .arg(amount)
            .arg(86_400_000u64);
        let _: i64 = self
            .background
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(())
    }

    /// This replica's sign of life; updates the replica count. Also how a Redis marked down is
    /// found to be back.
    pub async fn beat(&self) -> Result<u32, SharedLimitsError> {
        let mut inv = self.scripts.replicas.prepare_invoke();
        inv.key(format!("{}replicas", self.settings.prefix))
            .arg(&self.settings.instance)
            .arg(self.lease_ms());
        let n: u32 = self
            .background
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        self.replicas.store(n.max(1), Ordering::Relaxed);
        Ok(n)
    }

    /// A beat; while Redis is marked down, also a `PING` on the admission connection, which
    /// the beat does not use: Redis counts as back only once admissions can reach it, so the
    /// first ones after an outage do not meet a connection still broken by it.
    async fn beat_both(&self) -> Result<u32, SharedLimitsError> {
        let n = self.beat().await?;
        if !self.health.is_up() {
            self.conn
                .run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
                .await?;
        }
        Ok(n)
    }

    /// Redis has not answered since this replica started, so it has not counted the
    /// replicas: the store's record of live gateway processes stands in, so the local
    /// fallback enforces this replica's share rather than the whole limit.
    async fn count_replicas_from_store(&self, directory: &crate::directory::Directory) {
        let now = crate::directory::unix_ms();
        match directory.store().live_instances(now).await {
            Ok(n) if n > 1 => {
                if self.replicas.swap(n, Ordering::Relaxed) != n {
                    tracing::warn!(target: "switchyard::limits", replicas = n, "Redis has not answered since start: the local fallback divides the limits by the live gateways the store knows");
                }
                directory.set_local_share(n);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(target: "switchyard::limits", error = %e, "cannot count the live gateways in the store either")
            }
        }
    }

    /// Beats every third of a lease (every `retry` while Redis is down), and marks Redis up or
    /// down by the result; the replica count divides `directory`'s in-memory limits, ready for
    /// the local fallback. Runs until the process ends.
    pub fn spawn_heartbeat(
        self: &Arc<Self>,
        directory: Arc<crate::directory::Directory>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            // Wakes every `retry`; beats when a beat is due, or at once when a request found
            // Redis down (so its return is noticed within `retry`, not a third of a lease).
            let due_every = me.settings.lease / 3;
            let mut last_beat: Option<tokio::time::Instant> = None;
            loop {
                let due = last_beat.is_none_or(|at| at.elapsed() >= due_every);
                if due || !me.health.is_up() {
                    match me.beat_both().await {
                        Ok(n) => {
                            me.health.succeeded(n);
                            directory.set_local_share(n);
                            last_beat = Some(tokio::time::Instant::now());
                        }
                        Err(e) => {
                            me.health.failed(&e);
                            if last_beat.is_none() {
                                me.count_replicas_from_store(&directory).await;
                            }
                        }
                    }
                }
                tokio::time::sleep(me.settings.retry.min(due_every)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::key_binds;
    use crate::model::Limits;

    fn lim(rpm: u32, tpm: u64, conc: u32, monthly: u64) -> Limits {
        Limits {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            max_concurrent: conc,
            monthly_tokens: monthly,
            ..Limits::default()
        }
    }

    #[test]
    fn a_key_is_counted_only_when_one_of_its_limits_is_tighter() {
        let tier = lim(60, 10_000, 8, 1_000_000);
        assert!(!key_binds(&tier, &tier), "no overrides: the tenant decides");
        assert!(!key_binds(&tier, &lim(120, 20_000, 16, 0)), "looser in all");
        assert!(key_binds(&tier, &lim(59, 10_000, 8, 1_000_000)));
        assert!(key_binds(&tier, &lim(60, 9_999, 8, 1_000_000)));
        assert!(key_binds(&tier, &lim(60, 10_000, 7, 1_000_000)));
        assert!(key_binds(&tier, &lim(60, 10_000, 8, 999_999)));
        // A monthly quota of 0 is none: a key with one binds a tenant without.
        let unmetered = lim(60, 10_000, 8, 0);
        assert!(key_binds(&unmetered, &lim(60, 10_000, 8, 5)));
        assert!(!key_binds(&unmetered, &unmetered));
        // A disabled key (0 per minute) binds.
        assert!(key_binds(&tier, &lim(0, 10_000, 8, 1_000_000)));
    }
}
