//! Admission: reserve against the tenant's and the key's limits (and prepaid credit) at once,
//! or refuse with the reason and when to retry. The [`Reservation`] is settled with the real
//! usage when the response ends; dropped unsettled, it gives everything back.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::directory::{lock, unix_ms, KeyEntry};
use crate::limiter::{Denial, LimitState};
use crate::money::Nanos;

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
}

pub struct Reservation {
    key: Arc<KeyEntry>,
    tokens: u64,
    credit: Nanos,
    settled: bool,
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
    let now = Instant::now();
    let now_ms = unix_ms();
    let tenant = &key.tenant;
    if tenant.tenant.prepaid {
        // Hold `credit` only if the balance covers it on top of what requests in flight hold;
        // checked arithmetic, so an absurd figure is a refusal, never a wrap.
        let balance = tenant.balance.load(Ordering::Relaxed);
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
        },
        rate,
    ))
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
        let now = Instant::now();
        let now_ms = unix_ms();
        let tenant = &self.key.tenant;
        {
            let mut t = lock(&tenant.state);
            let mut k = lock(&self.key.state);
            t.settle(self.tokens, used_tokens, now, now_ms);
            k.settle(self.tokens, used_tokens, now, now_ms);
        }
        tenant
            .credit_reserved
            .fetch_sub(self.credit, Ordering::Relaxed);
        let _ = tenant
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(cost))
            });
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // Never settled: the request did not reach a worker. Give everything back.
        self.finish(0, 0);
    }
}
