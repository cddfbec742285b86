//! Finding the worker a broken stream goes on on: another one than those it was on, ahead of
//! fresh requests in a saturated fleet's queue, within the retry budget and `max_resumes`.
//! Whether a stream can be resumed, and the request that goes on from its text, are
//! `crate::upstream::resume`'s; the relay asks through [`Continuation`].

use std::sync::Arc;

use futures::future::BoxFuture;
use switchyard_fleet::{Worker, WorkerLease};
use switchyard_protocol::InferenceRequest;

use crate::error::GatewayError;
use crate::route::RouteCtx;
use crate::state::AppState;
use crate::upstream::relay::{Continuation, Upstream};

/// Added to a resumed stream's queue priority: above any tier's availability SLO in basis
/// points (at most 10,000).
const RESUME_PRIORITY: u32 = 10_000;

/// Workers a continuation may fail to open on, beyond the first, before the stream ends with
/// an error.
const MAX_CONTINUATION_OPENS: u32 = 1;

/// What a relay needs to resume its stream.
pub struct Resume {
    state: Arc<AppState>,
    req: InferenceRequest,
    route: RouteCtx,
    request_id: String,
    tried: Vec<Arc<Worker>>,
    left: u32,
    /// Tokens relayed when the last continuation was asked for.
    last_at: Option<u64>,
    /// Continuations that broke before relaying a token may be replaced this many more times
    /// without spending `left`: the client saw no progress from them (typically a sibling of a
    /// dying worker, which took the continuation and died too).
    unproductive_left: u32,
}

impl Resume {
    pub fn new(
        state: Arc<AppState>,
        req: InferenceRequest,
        route: RouteCtx,
        request_id: String,
        first_worker: Arc<Worker>,
    ) -> Self {
        let left = state.config.upstream.max_resumes;
        Self {
            state,
            req,
            route,
            request_id,
            tried: vec![first_worker],
            left,
            last_at: None,
            unproductive_left: 1,
        }
    }
}

impl Continuation for Resume {
    /// A future that finds another worker and opens the continuation of the stream after
    /// `text` (`tokens` of it relayed); `None` when resuming is spent or not allowed now.
    fn continuation(
        &mut self,
        text: &str,
        tokens: u64,
    ) -> Option<BoxFuture<'static, Result<(Upstream, WorkerLease), GatewayError>>> {
        let after_nothing = self.last_at == Some(tokens) && self.unproductive_left > 0;
        if (self.left == 0 && !after_nothing) || !self.state.retry_budget.try_withdraw() {
            return None;
        }
        if after_nothing {
            self.unproductive_left -= 1;
        } else {
            self.left -= 1;
        }
        self.last_at = Some(tokens);
        let req = crate::upstream::resume::continue_after(&self.req, text, tokens)?;
        let state = self.state.clone();
        // A started answer outranks every request not yet started: in a saturated fleet's
        // queue it goes first, and may wait twice as long (the client already has text and
        // is waiting for the rest; a fresh request can still go elsewhere).
        let mut route = self.route.clone();
        route.priority.slo_bp = route.priority.slo_bp.saturating_add(RESUME_PRIORITY);
        route.queue_for = route.queue_for.doubled();
        let tried = self.tried.clone();
        let request_id = self.request_id.clone();
        tracing::warn!(
            request_id,
            tokens,
            "stream broke mid-way; resuming on another worker"
        );
        Some(Box::pin(async move {
            let mut tried = tried;
            let mut opens = 0;
            loop {
                let deadline = route.queue_for.from_now();
                let lease = crate::route::retry(&state, &route, &tried, deadline).await?;
                match crate::upstream::open_stream(&state, &req, &request_id, lease.worker()).await
                {
                    Ok(upstream) => {
                        crate::metrics::retry(&req.model, crate::metrics::Retry::Resume);
                        return Ok((upstream, lease));
                    }
                    // The worker it went to failed before its first byte: often a sibling of
                    // the one that broke, on a provider going down, that still looked ready.
                    // The client is waiting mid-answer: one more worker, within the budget.
                    Err(e) if e.is_retryable() => {
                        let worker = lease.worker().clone();
                        worker.record_failure_because(
                            state.config.upstream.eject_after_failures,
                            &e.to_string(),
                        );
                        if opens >= MAX_CONTINUATION_OPENS || !state.retry_budget.try_withdraw() {
                            return Err(e);
                        }
                        tracing::warn!(request_id, worker = %worker.spec.name, error = %e,
                            "the continuation's worker failed before its first byte; trying another");
                        tried.push(worker);
                        opens += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }))
    }

    /// The worker a continuation went to, so a second resumption avoids it too.
    fn tried(&mut self, worker: &Arc<Worker>) {
        self.tried.push(worker.clone());
    }
}
