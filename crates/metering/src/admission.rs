//! Admission: reserve against the tenant's and the key's limits (and prepaid credit) at once,
//! or refuse with the reason and when to retry. The [`Reservation`] is settled with the real
//! usage when the response ends; dropped unsettled, it gives everything back.
//!
//! Limits are counted in this process ([`admit`]) or, with several replicas, in Redis
//! ([`admit_shared`], which falls back to this process's share of the limits, or refuses, when
//! Redis cannot be reached).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::directory::{lock, unix_ms, KeyEntry};
use crate::limiter::{month_index, Denial, LimitState};
use crate::money::Nanos;
use crate::shared_limits::{AdmitArgs, Answer, DownPolicy, SettleArgs, SharedLimits};

/// The figures of the `x-ratelimit-*` headers, after this request's reservation.
#[derive(Debug, Clone, PartialEq)]
pub struct RateInfo {
    pub limit_requests: u64,
    pub remaining_requests: u64,
    pub reset_requests: Duration,
    pub limit_tokens: u64,
    pub remaining_tokens: u64,
    pub reset_tokens: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Limit {
        denial: Denial,
        rate: RateInfo,
    },
    /// Prepaid credit cannot cover the request's worst case.
    InsufficientCredit {
        balance: Nanos,
        needed: Nanos,
    },
    /// The shared limits cannot be reached and the policy is to refuse.
    LimitsUnavailable {
        retry_after: Duration,
    },
}

/// Where an admission was decided, for the gateway's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// This process alone (no shared limits configured).
    Process,
    /// Redis, for every replica.
    Shared,
    /// This process's share of the limits, because Redis could not be reached.
    LocalFallback,
    /// Refused because Redis could not be reached.
    Unavailable,
}

pub struct Reservation {
    key: Arc<KeyEntry>,
    tokens: u64,
    credit: Nanos,
    settled: bool,
    shared: Option<SharedLease>,
}

/// A reservation held in Redis: its lease, renewed while the request runs.
struct SharedLease {
    limits: Arc<SharedLimits>,
    member: String,
    month: u32,
    /// Whether the key's own limits are counted in Redis (see `shared_limits::key_binds`).
    key_counted: bool,
    renewer: tokio::task::AbortHandle,
}

fn rate_info(tenant: &mut LimitState, key: &mut LimitState, now: Instant) -> RateInfo {
    let pick = |t: f64, k: f64| t.min(k).max(0.0) as u64;
    RateInfo {
        limit_requests: pick(tenant.requests.capacity(), key.requests.capacity()),
        remaining_requests: pick(tenant.requests.remaining(now), key.requests.remaining(now)),
        reset_requests: tenant
            .requests
            .reset_after(now)
            .max(key.requests.reset_after(now)),
        limit_tokens: pick(tenant.tokens.capacity(), key.tokens.capacity()),
        remaining_tokens: pick(tenant.tokens.remaining(now), key.tokens.remaining(now)),
        reset_tokens: tenant
            .tokens
            .reset_after(now)
            .max(key.tokens.reset_after(now)),
    }
}

/// Current figures without reserving, for responses refused before admission.
pub fn peek(key: &KeyEntry) -> RateInfo {
    let now = Instant::now();
    let mut tenant = lock(&key.tenant.state);
    let mut k = lock(&key.state);
    rate_info(&mut tenant, &mut k, now)
}

/// Reserves `tokens` (prompt estimate + maximum completion) and `credit` (their worst-case
/// cost) for one request.
pub fn admit(
    key: &Arc<KeyEntry>,
    tokens: u64,
    credit: Nanos,
) -> Result<(Reservation, RateInfo), Refusal> {
    admit_local(key, tokens, credit, 1)
}

/// [`admit`] against `1 / share` of the prepaid balance (the limit states are divided by the
/// directory: see `Directory::set_local_share`).
fn admit_local(
    key: &Arc<KeyEntry>,
    tokens: u64,
    credit: Nanos,
    share: u32,
) -> Result<(Reservation, RateInfo), Refusal> {
    let now = Instant::now();
    let now_ms = unix_ms();
    let tenant = &key.tenant;
    if tenant.tenant.prepaid {
        // Hold `credit` only if the balance covers it on top of what requests in flight hold;
        // checked arithmetic, so an absurd figure is a refusal, never a wrap.
        let balance = tenant.balance.load(Ordering::Relaxed) / i64::from(share.max(1));
        let held =
            tenant
                .credit_reserved
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                    let left = i128::from(balance) - i128::from(held);
                    if left < i128::from(credit.max(1)) {
                        return None;
                    }
                    held.checked_add(credit)
                });
        if let Err(held) = held {
            return Err(Refusal::InsufficientCredit {
                balance: balance.saturating_sub(held),
                needed: credit,
            });
        }
    }
    let refund_credit = || {
        if tenant.tenant.prepaid {
            tenant.credit_reserved.fetch_sub(credit, Ordering::Relaxed);
        }
    };
    // Always tenant first, then key: one lock order, no deadlock.
    let mut t = lock(&tenant.state);
    let mut k = lock(&key.state);
    let denial = t
        .check(tokens, now, now_ms)
        .err()
        .or_else(|| k.check(tokens, now, now_ms).err());
    if let Some(denial) = denial {
        let rate = rate_info(&mut t, &mut k, now);
        drop((t, k));
        refund_credit();
        return Err(Refusal::Limit { denial, rate });
    }
    t.reserve(tokens);
    k.reserve(tokens);
    let rate = rate_info(&mut t, &mut k, now);
    Ok((
        Reservation {
            key: key.clone(),
            tokens,
            credit: if tenant.tenant.prepaid { credit } else { 0 },
            settled: false,
            shared: None,
        },
        rate,
    ))
}

/// Reserves in Redis for every replica at once; see [`crate::shared_limits`] for the model.
/// When Redis cannot be reached, the policy decides: this process's share, or a refusal.
pub async fn admit_shared(
    shared: &Arc<SharedLimits>,
    key: &Arc<KeyEntry>,
    tokens: u64,
    credit: Nanos,
) -> (Result<(Reservation, RateInfo), Refusal>, DecidedBy) {
    if shared.health().should_try() {
        match admit_in_redis(shared, key, tokens, credit).await {
            Ok(outcome) => return (outcome, DecidedBy::Shared),
            // An answer Redis should not give is a bug to log, not an unreachable Redis.
            Err(e @ crate::shared_limits::SharedLimitsError::Answer(_)) => {
                tracing::error!(target: "switchyard::limits", error = %e, "unexpected admission answer; this request falls back");
            }
            Err(e) => shared.health().failed(&e),
        }
    }
    match shared.settings().policy {
        DownPolicy::Local => (
            admit_local(key, tokens, credit, shared.replicas()),
            DecidedBy::LocalFallback,
        ),
        DownPolicy::Reject => (
            Err(Refusal::LimitsUnavailable {
                retry_after: shared.settings().retry,
            }),
            DecidedBy::Unavailable,
        ),
    }
}

async fn admit_in_redis(
    shared: &Arc<SharedLimits>,
    key: &Arc<KeyEntry>,
    tokens: u64,
    credit: Nanos,
) -> Result<Result<(Reservation, RateInfo), Refusal>, crate::shared_limits::SharedLimitsError> {
    let now_ms = unix_ms();
    let month = month_index(now_ms);
    let tenant = &key.tenant;
    let prepaid = tenant.tenant.prepaid;
    let credit = if prepaid { credit } else { 0 };
    // Decided once per reservation: settlement and renewal touch the same subjects.
    let key_counted = crate::shared_limits::key_binds(&tenant.limits, &key.limits);
    let keys = shared.keys(&tenant.tenant.id, &key.key.id, key_counted);
    let member = shared.lease_member(tokens, credit);
    // The ledger's figures are floors for Redis's: a Redis that lost its data starts again
    // from them rather than from zero.
    let tenant_month_seed = lock(&tenant.state).month_used_in(month);
    let key_month_seed = lock(&key.state).month_used_in(month);
    let done = shared.settled_mark(&tenant.tenant.id, &member);
    let answer = shared
        .admit(&AdmitArgs {
            keys: &keys,
            done: &done,
            member: &member,
            tokens,
            credit,
            month,
            tenant_limits: &tenant.limits,
            tenant_month_seed,
            key_limits: &key.limits,
            key_month_seed,
            prepaid,
            balance_seed: tenant.balance.load(Ordering::Relaxed),
        })
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            {
                // Perhaps sent, but no answer (a timeout, a connection lost mid-call): Redis
                // may have admitted it. The fallback decides this request; what Redis may hold
                // for it is given back rather than left to its lease. While Redis is down, only
                // the one request per `redis_retry_ms` that tries it gets here.
                spawn_settle(
                    shared.clone(),
                    SettleArgs {
                        keys,
                        done,
                        member,
                        reserved: tokens,
                        used: 0,
                        credit,
                        cost: 0,
                        month,
                        tenant_limits: tenant.limits.clone(),
                        key_limits: key.limits.clone(),
                        prepaid,
                        cancel: true,
                    },
                );
            }
            return Err(e);
        }
    };
    // A key not counted in Redis has no levels of its own: its tenant's decide, and say so.
    let key_limits = if key_counted {
        &key.limits
    } else {
        &tenant.limits
    };
    let rate = shared_rate_info(&tenant.limits, key_limits, &answer);
    let denial = match answer.code {
        0 => None,
        1 => Some(Denial::Requests {
            retry_after: ms(answer.a),
        }),
        2 => Some(Denial::Tokens {
            retry_after: ms(answer.a),
        }),
        3 => Some(Denial::TooLarge {
            needed: u64::try_from(answer.a).unwrap_or(tokens),
            limit: u64::try_from(answer.b).unwrap_or(0),
        }),
        4 => Some(Denial::Concurrency {
            limit: u32::try_from(answer.a).unwrap_or(0),
        }),
        5 => Some(Denial::MonthlyQuota {
            limit: u64::try_from(answer.a).unwrap_or(0),
        }),
        6 => {
            return Ok(Err(Refusal::InsufficientCredit {
                balance: answer.a,
                needed: credit,
            }))
        }
        other => {
            return Err(crate::shared_limits::SharedLimitsError::Answer(format!(
                "admission code {other}"
            )))
        }
    };
    if let Some(denial) = denial {
        return Ok(Err(Refusal::Limit { denial, rate }));
    }
    let renewer = spawn_renewer(shared.clone(), keys, member.clone());
    Ok(Ok((
        Reservation {
            key: key.clone(),
            tokens,
            credit,
            settled: false,
            shared: Some(SharedLease {
                limits: shared.clone(),
                member,
                month,
                key_counted,
                renewer,
            }),
        },
        rate,
    )))
}

fn ms(n: i64) -> Duration {
    Duration::from_millis(u64::try_from(n).unwrap_or(0))
}

/// The `x-ratelimit-*` figures from the levels Redis answered (in thousandths).
fn shared_rate_info(
    tenant: &crate::model::Limits,
    key: &crate::model::Limits,
    answer: &Answer,
) -> RateInfo {
    let level = |i: usize| (answer.levels[i].max(0) as f64) / 1000.0;
    // Time until a bucket of `cap` per minute at `level` is full again.
    let reset = |cap: f64, level: f64| {
        if cap <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(((cap - level) * 60.0 / cap).clamp(0.0, 60.0))
        }
    };
    let (t_rpm, k_rpm) = (
        f64::from(tenant.requests_per_minute),
        f64::from(key.requests_per_minute),
    );
    let (t_tpm, k_tpm) = (
        tenant.tokens_per_minute as f64,
        key.tokens_per_minute as f64,
    );
    RateInfo {
        limit_requests: t_rpm.min(k_rpm) as u64,
        remaining_requests: level(0).min(level(2)) as u64,
        reset_requests: reset(t_rpm, level(0)).max(reset(k_rpm, level(2))),
        limit_tokens: t_tpm.min(k_tpm) as u64,
        remaining_tokens: level(1).min(level(3)) as u64,
        reset_tokens: reset(t_tpm, level(1)).max(reset(k_tpm, level(3))),
    }
}

/// Renews the lease every third of its length while the request runs; aborted at settlement.
fn spawn_renewer(
    shared: Arc<SharedLimits>,
    keys: crate::shared_limits::SubjectKeys,
    member: String,
) -> tokio::task::AbortHandle {
    let every = shared.settings().lease / 3;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match shared.renew(&keys, &member).await {
                Ok(n) if n == keys.leases() => {}
                Ok(_) => {
                    // Expired before we could renew it (Redis was unreachable for a whole
                    // lease): the slot was given back; the request runs on uncounted.
                    tracing::warn!(target: "switchyard::limits", lease = %member, "a running request's concurrency lease expired before it was renewed");
                    return;
                }
                Err(e) => shared.health().failed(&e),
            }
        }
    })
    .abort_handle()
}

impl Reservation {
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Charges what was used and returns the rest of the reservation.
    pub fn settle(mut self, used_tokens: u64, cost: Nanos) {
        self.finish(used_tokens, cost);
    }

    fn finish(&mut self, used_tokens: u64, cost: Nanos) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let tenant = &self.key.tenant;
        if let Some(lease) = self.shared.take() {
            lease.renewer.abort();
            settle_in_redis(
                lease,
                &self.key,
                self.tokens,
                used_tokens,
                self.credit,
                cost,
            );
        } else {
            let now = Instant::now();
            let now_ms = unix_ms();
            let mut t = lock(&tenant.state);
            let mut k = lock(&self.key.state);
            t.settle(self.tokens, used_tokens, now, now_ms);
            k.settle(self.tokens, used_tokens, now, now_ms);
            drop((t, k));
            tenant
                .credit_reserved
                .fetch_sub(self.credit, Ordering::Relaxed);
        }
        // This process's view of the balance follows its own spending either way: it seeds
        // Redis, and it is what the local fallback divides.
        let _ = tenant
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(cost))
            });
    }
}

/// Settles a shared reservation off the request path, retrying while Redis is unreachable for
/// up to about one lease: past that the lease has expired and given the slot back anyway, and
/// the ledger still has the usage (the month and balance floors catch up from it).
fn settle_in_redis(
    lease: SharedLease,
    key: &Arc<KeyEntry>,
    reserved: u64,
    used: u64,
    credit: Nanos,
    cost: Nanos,
) {
    let args = SettleArgs {
        keys: lease
            .limits
            .keys(&key.tenant.tenant.id, &key.key.id, lease.key_counted),
        done: lease
            .limits
            .settled_mark(&key.tenant.tenant.id, &lease.member),
        member: lease.member,
        reserved,
        used,
        credit,
        cost,
        month: lease.month,
        tenant_limits: key.tenant.limits.clone(),
        key_limits: key.limits.clone(),
        prepaid: key.tenant.tenant.prepaid,
        cancel: false,
    };
    spawn_settle(lease.limits, args);
}

/// Runs a settlement (or a cancellation) in the background, retrying with backoff while Redis
/// is unreachable, for up to a lease.
fn spawn_settle(shared: Arc<SharedLimits>, args: SettleArgs) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut wait = Duration::from_millis(100);
        let give_up = tokio::time::Instant::now() + shared.settings().lease;
        loop {
            match shared.settle(&args).await {
                Ok(()) => return,
                Err(e) if tokio::time::Instant::now() + wait < give_up => {
                    shared.health().failed(&e);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::error!(target: "switchyard::limits", error = %e, lease = %args.member, "could not settle a reservation in Redis; its lease expires instead");
                    return;
                }
            }
        }
    });
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Never settled: the request did not reach a worker. Give everything back.
        self.finish(0, 0);
    }
}
