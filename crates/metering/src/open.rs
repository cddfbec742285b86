//! Crash accounting: requests in flight, as the ledger knows them.
//!
//! A usage row is written when a request ends. A process killed mid-request would otherwise
//! leave no row at all for it, nor for anything still queued in the ledger's writer. So:
//!
//! - at admission the request is *opened* ([`OpenRequest`]): written by the same batch writer
//!   as usage rows, and skipped when its usage row is in the same batch (a short request costs
//!   no extra write);
//! - while it runs, the relay sends [`Checkpoint`]s (the worker serving it and the tokens
//!   relayed so far), coalesced per batch;
//! - its usage row deletes it, in the same transaction;
//! - a row left open by a gateway process that is dead (no sign of life for a lease) was in
//!   flight at a crash: [`interrupted`] turns it into a usage row with status `interrupted`,
//!   billed for what the gateway knew at the last checkpoint (the prompt estimate, once a
//!   worker had it, and the tokens relayed), and counted as a 5xx for the SLA.

use serde::{Deserialize, Serialize};

use crate::model::{UsageRecord, UsageSource, UsageStatus};
use crate::money::{usage_cost, worker_cost, Nanos};

/// A request admitted and not yet settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRequest {
    pub request_id: String,
    /// The gateway process that admitted it (filled in by the ledger).
    pub instance: String,
    pub started_at_ms: i64,
    pub tenant_id: String,
    pub key_id: String,
    pub model: String,
    pub endpoint: String,
    pub stream: bool,
    pub prompt_estimate: u64,
    /// The tenant's prices at admission, nano-dollars per 1M tokens.
    pub price_in_nanos: Nanos,
    pub price_out_nanos: Nanos,
}

/// What a running request has consumed so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub request_id: String,
    pub worker: String,
    pub provider: String,
    pub region: String,
    /// The worker's price, nano-dollars per hour, and its concurrent sequences.
    pub worker_price_nanos: Nanos,
    pub worker_slots: u32,
    /// Completion tokens relayed so far (bounded by `max_tokens` per choice).
    pub relayed_tokens: u64,
    pub ttft_ms: Option<u64>,
    pub at_ms: i64,
}

/// An open request as stored, with its last checkpoint (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRow {
    pub open: OpenRequest,
    pub checkpoint: Option<Checkpoint>,
}

/// The usage row of a request left open by a dead gateway process. Without a checkpoint no
/// worker had the request (it was queued, or being routed): nothing is billed. With one, the
/// prompt estimate and the tokens relayed by then are, at the prices it was admitted at.
pub fn interrupted(row: &OpenRow) -> UsageRecord {
    let o = &row.open;
    let (worker, provider, region, prompt, completion, ttft_ms, until_ms, cogs) =
        match &row.checkpoint {
            Some(c) => (
                c.worker.clone(),
                c.provider.clone(),
                c.region.clone(),
                o.prompt_estimate,
                c.relayed_tokens,
                c.ttft_ms,
                c.at_ms,
                worker_cost(
                    u64::try_from(c.at_ms.saturating_sub(o.started_at_ms)).unwrap_or(0),
                    c.worker_price_nanos,
                    c.worker_slots,
                )
                .unwrap_or(0),
            ),
            None => (
                String::new(),
                String::new(),
                String::new(),
                0,
                0,
                None,
                o.started_at_ms,
                0,
            ),
        };
    UsageRecord {
        request_id: o.request_id.clone(),
        started_at_ms: o.started_at_ms,
        tenant_id: o.tenant_id.clone(),
        key_id: o.key_id.clone(),
        model: o.model.clone(),
        endpoint: o.endpoint.clone(),
        stream: o.stream,
        worker,
        provider,
        region,
        prompt_tokens: prompt,
        completion_tokens: completion,
        usage_estimated: true,
        usage_source: UsageSource::Checkpoint,
        usage_note: Some(
            "the gateway process serving it stopped; billed at its last checkpoint".into(),
        ),
        ttft_ms,
        ttft_exempt: false,
        total_ms: u64::try_from(until_ms.saturating_sub(o.started_at_ms)).unwrap_or(0),
        status: UsageStatus::Interrupted,
        // The client got no status: its connection went with the process.
        http_status: 0,
        finish_reason: None,
        cost: usage_cost(prompt, completion, o.price_in_nanos, o.price_out_nanos).unwrap_or(0),
        cogs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> OpenRequest {
        OpenRequest {
            request_id: "r".into(),
            instance: "i".into(),
            started_at_ms: 1_000,
            tenant_id: "t".into(),
            key_id: "k".into(),
            model: "m".into(),
            endpoint: "/v1/chat/completions".into(),
            stream: true,
            prompt_estimate: 100,
            price_in_nanos: 1_000_000_000,
            price_out_nanos: 2_000_000_000,
        }
    }

    #[test]
    fn a_request_with_a_checkpoint_is_billed_for_it() {
        let row = OpenRow {
            open: open(),
            checkpoint: Some(Checkpoint {
                request_id: "r".into(),
                worker: "w".into(),
                provider: "p".into(),
                region: "eu".into(),
                worker_price_nanos: 3_600_000_000,
                worker_slots: 1,
                relayed_tokens: 30,
                ttft_ms: Some(40),
                at_ms: 3_000,
            }),
        };
        let r = interrupted(&row);
        assert_eq!((r.status, r.http_status), (UsageStatus::Interrupted, 0));
        assert_eq!((r.prompt_tokens, r.completion_tokens), (100, 30));
        // 100 at $1/1M + 30 at $2/1M = 160,000 nano-dollars.
        assert_eq!(r.cost, 160_000);
        // 2 s of a $3.60/h worker = $0.002.
        assert_eq!(r.cogs, 2_000_000);
        assert_eq!((r.worker.as_str(), r.total_ms), ("w", 2_000));
        assert_eq!(r.usage_source, UsageSource::Checkpoint);
    }

    #[test]
    fn a_request_no_worker_had_bills_nothing() {
        let r = interrupted(&OpenRow {
            open: open(),
            checkpoint: None,
        });
        assert_eq!((r.prompt_tokens, r.completion_tokens, r.cost), (0, 0, 0));
        assert_eq!(r.status, UsageStatus::Interrupted);
    }
}
