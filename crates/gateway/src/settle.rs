//! Step "settle": one usage record per request that reached a worker, written exactly once
//! whichever way the request ended, and the reservation settled with the real usage.
//!
//! A `Settlement` dropped without being finished (the client went away and the handler was
//! cancelled) settles itself in `Drop` as a disconnect, so no path can skip it. Settling only
//! computes and enqueues: the ledger writes in the background.

use std::sync::Arc;
use std::time::Instant;

use switchyard_fleet::Worker;
use switchyard_metering::admission::Reservation;
use switchyard_metering::directory::{unix_ms, KeyEntry};
use switchyard_metering::ledger::Ledger;
use switchyard_metering::money::{usage_cost, usd_to_nanos, worker_cost};
use switchyard_metering::open::{Checkpoint, OpenRequest};
use switchyard_metering::sli::{Refusal, SliCounts};
use switchyard_metering::{UsageRecord, UsageStatus};
use switchyard_protocol::{Endpoint, InferenceRequest};

use crate::content_log::{self, Completion, Draft};
use crate::error::GatewayError;
use crate::upstream::account::{Metered, StreamAccount};

pub use switchyard_metering::UsageStatus as Outcome;

pub struct Settlement {
    request_id: String,
    key: Arc<KeyEntry>,
    endpoint: Endpoint,
    model: String,
    stream: bool,
    prompt_estimate: u64,
    started: Instant,
    started_at_ms: i64,
    ttft_ms: Option<f64>,
    worker: Option<Arc<Worker>>,
    attempts: u32,
    hedged: bool,
    /// Why a failed request failed, for the error metrics.
    error_origin: Option<crate::error::Origin>,
    arm: switchyard_fleet::Pool,
    reservation: Option<Reservation>,
    ledger: Ledger,
    /// Failures in a row that eject a worker: a worker whose usage is refused answers for it.
    eject_after: u32,
    /// Refused for the fleet's lack of capacity (the SLA's throttling).
    shed: bool,
    /// The prompt and, later, the completion, for a tenant who opted in to content logging;
    /// `None` (nothing captured) for everyone else.
    content: Option<Box<Draft>>,
    /// Keeps the ledger's shutdown waiting until this request is recorded.
    _open: switchyard_metering::ledger::Open,
}

impl Settlement {
    pub fn start(
        request_id: &str,
        key: Arc<KeyEntry>,
        req: &InferenceRequest,
        reservation: Reservation,
        ledger: Ledger,
        eject_after: u32,
    ) -> Self {
        crate::metrics::request_started();
        // Checked once here: for tenants with logging off nothing else is captured.
        let content = Draft::start(key.tenant.tenant.content_logging.ttl_ms(), req);
        let prompt_estimate = req.prompt_size().estimate();
        let started_at_ms = unix_ms();
        // Open until its usage row is written: a crash in between leaves a trace to settle.
        ledger.opened(OpenRequest {
            request_id: request_id.to_string(),
            instance: String::new(),
            started_at_ms,
            tenant_id: key.tenant.tenant.id.clone(),
            key_id: key.key.id.clone(),
            model: req.model.clone(),
            endpoint: req.endpoint.path().to_string(),
            stream: req.stream,
            prompt_estimate,
            price_in_nanos: usd_to_nanos(key.limits.price_input_per_million),
            price_out_nanos: usd_to_nanos(key.limits.price_output_per_million),
        });
        Self {
            request_id: request_id.to_string(),
            key,
            endpoint: req.endpoint,
            model: req.model.clone(),
            stream: req.stream,
            prompt_estimate,
            started: Instant::now(),
            started_at_ms,
            ttft_ms: None,
            worker: None,
            attempts: 0,
            hedged: false,
            error_origin: None,
            arm: switchyard_fleet::Pool::Main,
            reservation: Some(reservation),
            content,
            _open: ledger.open(),
            ledger,
            eject_after,
            shed: false,
        }
    }

    /// Workers this request has been sent to so far, hedges and starts-over included: what
    /// `[upstream] max_attempts` bounds.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn attempt(&mut self, worker: &Arc<Worker>) {
        self.attempts += 1;
        if self.attempts == 1 {
            let tier = &self.key.tenant.tenant.tier;
            crate::metrics::queue_time(&self.model, tier, self.started.elapsed());
        }
        self.worker = Some(worker.clone());
    }

    /// What this request has consumed so far (the worker serving it, the completion tokens
    /// relayed): what a crash from now on would bill it for.
    pub fn checkpoint(&self, relayed_tokens: u64) {
        let Some(worker) = &self.worker else {
            return;
        };
        let spec = &worker.spec;
        self.ledger.checkpoint(Checkpoint {
            request_id: self.request_id.clone(),
            worker: spec.name.clone(),
            provider: spec.provider.clone(),
            region: spec.region.clone(),
            worker_price_nanos: usd_to_nanos(spec.price_per_hour),
            worker_slots: spec.max_concurrency,
            relayed_tokens,
            ttft_ms: self.ttft_ms.map(|t| t as u64),
            at_ms: unix_ms(),
        });
    }

    /// The worker whose answer the client gets (with hedging, not always the last one tried).
    pub fn served_by(&mut self, worker: &Arc<Worker>) {
        self.worker = Some(worker.clone());
    }

    /// Whether this request's content is logged: streams then capture their deltas.
    /// Whether the client asked for a stream (workers are always asked for one).
    pub fn client_streams(&self) -> bool {
        self.stream
    }

    /// The caller's tier, whose output filters watch the stream.
    pub fn tier(&self) -> &str {
        &self.key.tenant.tenant.tier
    }

    /// The caller's tenant, whose own output filters watch it too.
    pub fn tenant(&self) -> &str {
        &self.key.tenant.tenant.id
    }

    pub fn logs_content(&self) -> bool {
        self.content.is_some()
    }

    pub fn hedged(&mut self) {
        self.hedged = true;
    }

    /// The canary split's arm this request took (logged for the A/B comparison).
    pub fn arm(&mut self, pool: switchyard_fleet::Pool) {
        self.arm = pool;
    }

    /// Whether the prompt was over the tier's cap for the TTFT objectives (see
    /// `Limits::sla_max_prompt_tokens`).
    fn ttft_exempt(&self) -> bool {
        let cap = self.key.limits.sla_max_prompt_tokens;
        cap > 0 && self.prompt_estimate > u64::from(cap)
    }

    /// An unstreamed answer broke before any of it reached the client and starts over on
    /// another worker: the first token that counts will be the new one's.
    pub fn started_over(&mut self) {
        self.ttft_ms = None;
    }

    /// When the first frame of a stream was ready for the client.
    pub fn first_token_at(&mut self, at: Instant) {
        if self.ttft_ms.is_none() {
            self.ttft_ms = Some(at.saturating_duration_since(self.started).as_secs_f64() * 1e3);
        }
    }

    pub fn failed(mut self, error: &GatewayError) {
        self.error_origin = Some(error.origin());
        self.shed = matches!(error, GatewayError::Shed(_));
        let status = error.status().as_u16();
        let nothing = Metered {
            estimated: false,
            ..Metered::prompt_only(0)
        };
        self.record(
            Outcome::Failed,
            status,
            nothing,
            None,
            Some(error.to_string()),
        );
    }

    /// The relay's stream ended (a collected unstreamed answer's too): billed by what was
    /// relayed, whichever way it ended.
    pub fn stream_ended(&mut self, account: &StreamAccount, outcome: Outcome, http_status: u16) {
        if let (Some(draft), Some(text)) = (&mut self.content, &account.completion) {
            draft.completion = Completion::Streamed(text.clone());
        }
        self.record(
            outcome,
            http_status,
            account.usage(),
            account.finish_reason.clone(),
            None,
        );
    }

    fn record(
        &mut self,
        status: UsageStatus,
        http_status: u16,
        metered: Metered,
        finish_reason: Option<String>,
        error: Option<String>,
    ) {
        let Some(reservation) = self.reservation.take() else {
            return; // already settled
        };
        let usage = metered.usage;
        crate::metrics::request_finished(&self.metrics_view(status, http_status, &usage));
        let total_ms = self.started.elapsed().as_millis() as u64;
        let Some(worker) = &self.worker else {
            // Never reached a worker: nothing to bill; dropping the reservation refunds it.
            tracing::info!(target: "switchyard::settle", request_id = %self.request_id, status = status.as_str(), http_status, error = error.as_deref().unwrap_or(""), "request refused before any worker");
            // Still an SLI: a 503 with no healthy worker is downtime for this tenant.
            let refusal = Refusal {
                request_id: self.request_id.clone(),
                at_ms: self.started_at_ms,
                tenant_id: self.key.tenant.tenant.id.clone(),
                model: self.model.clone(),
                http_status,
                throttled: self.shed,
            };
            let tier = &self.key.tenant.tenant.tier;
            crate::metrics::sli(tier, &self.model, &SliCounts::of_refusal(&refusal));
            self.ledger.refused(refusal);
            return;
        };
        if let Some(claim) = &metered.rejected {
            // Billing by the gateway's own count is done; the worker answers for the claim.
            tracing::warn!(target: "switchyard::settle", request_id = %self.request_id, worker = %worker.spec.name, claim = %claim, "worker's usage refused; billed by the gateway's count");
            worker.usage_rejected(self.eject_after, claim);
        }
        let limits = &self.key.limits;
        // Bounded counts at validated prices always fit (see `money`); the fallback is for a
        // store of prices this build did not validate, and bills nothing rather than wrap.
        let cost = usage_cost(
            usage.prompt_tokens,
            usage.completion_tokens,
            usd_to_nanos(limits.price_input_per_million),
            usd_to_nanos(limits.price_output_per_million),
        )
        .unwrap_or_else(|| {
            tracing::error!(request_id = %self.request_id, ?usage, "cost does not fit in i64; billed 0");
            0
        });
        let spec = &worker.spec;
        let cogs = worker_cost(
            total_ms,
            usd_to_nanos(spec.price_per_hour),
            spec.max_concurrency,
        )
        .unwrap_or(i64::MAX);
        reservation.settle(usage.total_tokens, cost);
        let record = UsageRecord {
            request_id: self.request_id.clone(),
            started_at_ms: self.started_at_ms,
            tenant_id: self.key.tenant.tenant.id.clone(),
            key_id: self.key.key.id.clone(),
            model: self.model.clone(),
            endpoint: self.endpoint.path().to_string(),
            stream: self.stream,
            worker: spec.name.clone(),
            provider: spec.provider.clone(),
            region: spec.region.clone(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            usage_estimated: metered.estimated,
            usage_source: metered.source,
            usage_note: metered.rejected.clone(),
            ttft_ms: self.ttft_ms.map(|t| t as u64),
            ttft_exempt: self.ttft_exempt(),
            total_ms,
            status,
            http_status,
            finish_reason,
            cost,
            cogs,
        };
        tracing::info!(
            target: "switchyard::settle",
            request_id = %record.request_id,
            tenant = %record.tenant_id,
            key = %record.key_id,
            model = %record.model,
            stream = record.stream,
            worker = %record.worker,
            attempts = self.attempts,
            hedged = self.hedged,
            arm = self.arm.as_str(),
            status = status.as_str(),
            http_status,
            prompt_tokens = record.prompt_tokens,
            completion_tokens = record.completion_tokens,
            usage_estimated = record.usage_estimated,
            usage_source = record.usage_source.as_str(),
            ttft_ms = record.ttft_ms.unwrap_or(0),
            total_ms,
            error = error.as_deref().unwrap_or(""),
            "request settled"
        );
        if let Some(draft) = self.content.take() {
            let meta = content_log::Meta {
                request_id: record.request_id.clone(),
                tenant_id: record.tenant_id.clone(),
                model: record.model.clone(),
                endpoint: self.endpoint.path(),
                stream: record.stream,
                status: status.as_str(),
                created_at_ms: record.started_at_ms,
            };
            content_log::submit(&self.ledger, draft, meta);
        }
        crate::metrics::sli(
            &self.key.tenant.tenant.tier,
            &self.model,
            &SliCounts::of_record(&record),
        );
        self.ledger.record(record);
    }
}

impl Settlement {
    /// What the metrics need of this request's end (see [`crate::metrics::request_finished`]).
    fn metrics_view(
        &self,
        outcome: UsageStatus,
        http_status: u16,
        usage: &switchyard_protocol::Usage,
    ) -> crate::metrics::Finished<'_> {
        crate::metrics::Finished {
            route: self.endpoint.path(),
            model: &self.model,
            tier: &self.key.tenant.tenant.tier,
            worker: self
                .worker
                .as_deref()
                .map(|w| (w.spec.region.as_str(), w.spec.provider.as_str())),
            http_status,
            outcome,
            error: self.error_origin,
            ttft: self
                .ttft_ms
                .map(|ms| std::time::Duration::from_secs_f64(ms / 1e3)),
            total: self.started.elapsed(),
            arm: self.arm.as_str(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        // Reached unfinished only when the handler was cancelled: the client went away while
        // a non-streamed answer was being generated. The worker processed the prompt; what it
        // generated before the cancellation never reached us, so only the prompt is billed.
        let prompt = Metered::prompt_only(self.prompt_estimate);
        self.record(Outcome::ClientDisconnected, 499, prompt, None, None);
    }
}
