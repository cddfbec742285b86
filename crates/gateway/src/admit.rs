//! Step "admit": reserve the request's worst case (prompt estimate + max completion for each
//! choice: `n` per prompt of the batch) against the tenant's and key's limits and prepaid credit, or refuse with 429/402 and
//! the `x-ratelimit-*` figures.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use switchyard_metering::admission::{self, RateInfo, Refusal, Reservation};
use switchyard_metering::directory::KeyEntry;
use switchyard_metering::limiter::Denial;
use switchyard_metering::money::{format_usd, usage_cost, usd_to_nanos};
use switchyard_metering::shared_limits::SharedLimits;
use switchyard_protocol::InferenceRequest;

use crate::error::GatewayError;
use crate::shape::Shaped;

/// A refusal, with the rate-limit figures to show when a limit (not credit) refused.
pub struct Refused {
    pub error: GatewayError,
    pub rate: Option<RateInfo>,
}

pub async fn admit(
    shared: Option<&Arc<SharedLimits>>,
    key: &Arc<KeyEntry>,
    req: &InferenceRequest,
    shaped: &Shaped,
) -> Result<(Reservation, RateInfo), Box<Refused>> {
    let completion = u64::from(shaped.max_tokens).saturating_mul(req.choices());
    let tokens = shaped.prompt_estimate.saturating_add(completion);
    let limits = &key.limits;
    // A worst case that does not fit in i64 holds everything: no prepaid balance covers it.
    let worst_cost = usage_cost(
        shaped.prompt_estimate,
        completion,
        usd_to_nanos(limits.price_input_per_million),
        usd_to_nanos(limits.price_output_per_million),
    )
    .unwrap_or(i64::MAX);
    let outcome = match shared {
        None => admission::admit(key, tokens, worst_cost),
        Some(shared) => {
            let (outcome, decided_by) =
                admission::admit_shared(shared, key, tokens, worst_cost).await;
            crate::metrics::limits_decided(decided_by);
            outcome
        }
    };
    outcome.map_err(|refusal| {
        Box::new(match refusal {
            Refusal::LimitsUnavailable { retry_after } => Refused {
                error: GatewayError::LimitsUnavailable {
                    retry_after: secs_ceil(retry_after).max(1),
                },
                rate: None,
            },
            Refusal::InsufficientCredit { balance, needed } => Refused {
                error: GatewayError::InsufficientCredit {
                    balance: format_usd(balance.max(0)),
                    needed: format_usd(needed),
                },
                rate: None,
            },
            Refusal::Limit { denial, rate } => Refused {
                error: limit_error(&denial, tokens),
                rate: Some(rate),
            },
        })
    })
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn limit_error(denial: &Denial, tokens: u64) -> GatewayError {
    let (message, code, retry_after) = match denial {
        Denial::Requests { retry_after } => (
            format!("Rate limit reached for requests per minute. Retry in {}.", format_duration(*retry_after)),
            "rate_limit_exceeded",
            Some(secs_ceil(*retry_after)),
        ),
        Denial::Tokens { retry_after } => (
            format!(
                "Rate limit reached for tokens per minute: this request reserves {tokens} tokens. Retry in {}.",
                format_duration(*retry_after)
            ),
            "rate_limit_exceeded",
            Some(secs_ceil(*retry_after)),
        ),
        Denial::TooLarge { needed, limit } => (
            format!("Request too large: it reserves {needed} tokens, above your limit of {limit} tokens per minute. Lower max_tokens or the prompt."),
            "request_too_large_for_limit",
            None,
        ),
        Denial::Concurrency { limit } => (
            format!("Too many concurrent requests: your limit is {limit}."),
            "concurrency_limit_exceeded",
            Some(1),
        ),
        Denial::MonthlyQuota { limit } => (
            format!("Monthly token quota of {limit} tokens reached."),
            "monthly_quota_exceeded",
            None,
        ),
    };
    GatewayError::RateLimited {
        message,
        code,
        retry_after,
    }
}

/// OpenAI's duration format for reset headers: "20ms", "1.5s", "6m0s".
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        // Integer arithmetic, not `{:.3}` on a float: float formatting is the dearest step of
        // the headers every response carries.
        let (secs, frac) = (ms / 1000, ms % 1000);
        if frac == 0 {
            format!("{secs}s")
        } else {
            let frac = format!("{frac:03}");
            format!("{secs}.{}s", frac.trim_end_matches('0'))
        }
    } else {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

pub fn insert_headers(headers: &mut HeaderMap, rate: &RateInfo) {
    // Names are constants and counts go through `HeaderValue::from(u64)`: this runs on every
    // response, and parsing names or formatting numbers through `fmt` showed in profiles.
    const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
    const REMAINING_REQUESTS: HeaderName =
        HeaderName::from_static("x-ratelimit-remaining-requests");
    const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
    const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
    const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
    const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
    let duration = |d: Duration| {
        HeaderValue::from_str(&format_duration(d)).unwrap_or(HeaderValue::from_static("0s"))
    };
    headers.insert(LIMIT_REQUESTS, HeaderValue::from(rate.limit_requests));
    headers.insert(
        REMAINING_REQUESTS,
        HeaderValue::from(rate.remaining_requests),
    );
    headers.insert(RESET_REQUESTS, duration(rate.reset_requests));
    headers.insert(LIMIT_TOKENS, HeaderValue::from(rate.limit_tokens));
    headers.insert(REMAINING_TOKENS, HeaderValue::from(rate.remaining_tokens));
    headers.insert(RESET_TOKENS, duration(rate.reset_tokens));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_look_like_openai_s() {
        assert_eq!(format_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(1)), "1s");
        assert_eq!(format_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(format_duration(Duration::from_millis(1050)), "1.05s");
        assert_eq!(format_duration(Duration::from_millis(59_999)), "59.999s");
        assert_eq!(format_duration(Duration::from_millis(1_001)), "1.001s");
    }
}
