//! Step "route": which worker gets the request.
//!
//! - [`RouteCtx`]: what routing needs to know of a request (model, tier, priority, canary arm,
//!   conversation), built once per request.
//! - [`first`]: the first worker, queueing while the fleet is saturated (see [`queue`]).
//! - [`retry`]: another worker for a retry, other providers first, queued like a first attempt.
//! - [`hedge`]: a second worker for a slow stream, only if one is free now.
//! - The naive round-robin baseline, kept for `bench/chaos`.

pub mod canary;
pub mod queue;
pub mod sticky;

use std::sync::Arc;
use std::time::Duration;

use switchyard_fleet::{Pick, Pool, Query, Worker, WorkerLease};
use switchyard_metering::directory::KeyEntry;
use switchyard_protocol::InferenceRequest;

use crate::error::GatewayError;
use crate::state::AppState;
use queue::{Deadline, Priority};

/// How long a request may queue for a saturated fleet: `soft`, and up to `hard` if it is
/// expected to be served by then (see [`queue::WaitQueue::wait`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBudget {
    pub soft: Duration,
    pub hard: Duration,
}

impl QueueBudget {
    /// The tier's TTFT SLO times the configured fractions.
    fn for_slo(slo_ttft_ms: u32, soft_fraction: f64, hard_fraction: f64) -> Self {
        let share = |fraction: f64| {
            Duration::from_millis((f64::from(slo_ttft_ms) * fraction).max(0.0) as u64)
        };
        Self {
            soft: share(soft_fraction),
            hard: share(hard_fraction.max(soft_fraction)),
        }
    }

    /// The deadlines of a wait that starts now.
    pub fn from_now(self) -> Deadline {
        let now = tokio::time::Instant::now();
        Deadline {
            soft: now + self.soft,
            hard: now + self.hard,
        }
    }

    pub fn doubled(self) -> Self {
        Self {
            soft: self.soft * 2,
            hard: self.hard * 2,
        }
    }
}

/// What routing needs to know of one request.
#[derive(Debug, Clone)]
pub struct RouteCtx {
    pub model: String,
    pub tier: String,
    pub priority: Priority,
    pub pool: Pool,
    pub conversation: Option<u64>,
    /// How long the request may queue for a saturated fleet.
    pub queue_for: QueueBudget,
}

impl RouteCtx {
    pub fn new(state: &AppState, req: &InferenceRequest, key: &KeyEntry) -> Self {
        let routing = &state.config.routing;
        let tier = key.tenant.tenant.tier.clone();
        let prompt = req.prompt_size().estimate();
        Self {
            model: req.model.clone(),
            priority: Priority::new(key.limits.slo_availability_bp, prompt),
            pool: state.canaries.arm(&req.model),
            conversation: (routing.sticky_idle_s > 0)
                .then(|| sticky::conversation_key(&key.tenant.tenant.id, req))
                .flatten(),
            queue_for: QueueBudget::for_slo(
                key.limits.slo_ttft_p95_ms,
                routing.queue_slo_fraction,
                routing.queue_max_slo_fraction,
            ),
            tier,
        }
    }

    fn query<'a>(&'a self, state: &'a AppState, tried: &'a [Arc<Worker>]) -> Query<'a> {
        let routing = &state.config.routing;
        Query {
            model: &self.model,
            tier: &self.tier,
            pool: self.pool,
            tried,
            region: routing.region.as_deref(),
            sticky: None,
            cost_slack: routing.cost_slack,
        }
    }
}

/// The first worker for a request; waits while the fleet is saturated, within `queue_for`.
pub async fn first(state: &AppState, ctx: &RouteCtx) -> Result<WorkerLease, GatewayError> {
    if !state.config.routing.adaptive() {
        return state
            .fleet
            .pick_round_robin(&ctx.model)
            .ok_or_else(|| GatewayError::NoHealthyWorker(ctx.model.clone()));
    }
    let sticky = ctx.conversation.and_then(|k| state.sticky.get(k));
    let query = Query {
        sticky: sticky.as_deref(),
        ..ctx.query(state, &[])
    };
    let began = std::time::Instant::now();
    let deadline = ctx.queue_for.from_now();
    let picked = pick_or_wait(state, ctx, query, deadline).await;
    // Observed once per request: here when it was shed from the queue (it never reaches a
    // worker), at its first attempt otherwise (see `settle`).
    if matches!(picked, Err(GatewayError::Shed(_))) {
        crate::metrics::queue_time(&ctx.model, &ctx.tier, began.elapsed());
    }
    picked
}

/// Another worker for a retry, other providers first; waits for a saturated fleet until
/// `deadline` like a first attempt does (a retry under load is still worth more than a 502).
pub async fn retry(
    state: &AppState,
    ctx: &RouteCtx,
    tried: &[Arc<Worker>],
    deadline: Deadline,
) -> Result<WorkerLease, GatewayError> {
    if !state.config.routing.adaptive() {
        return Err(GatewayError::NoHealthyWorker(ctx.model.clone()));
    }
    pick_or_wait(state, ctx, ctx.query(state, tried), deadline).await
}

/// A worker for a hedge: only one at most half busy now (a hedge is an extra: never worth a
/// wait, and never worth filling the last slots of a busy fleet).
pub fn hedge(state: &AppState, ctx: &RouteCtx, tried: &[Arc<Worker>]) -> Option<WorkerLease> {
    if !state.config.routing.adaptive() {
        return None;
    }
    match state.fleet.pick(&ctx.query(state, tried)) {
        // The lease counts itself in `outstanding`.
        Pick::Worker(lease)
            if lease.worker().outstanding() * 2 <= lease.worker().spec.max_concurrency =>
        {
            Some(lease)
        }
        _ => None,
    }
}

async fn pick_or_wait(
    state: &AppState,
    ctx: &RouteCtx,
    query: Query<'_>,
    deadline: Deadline,
) -> Result<WorkerLease, GatewayError> {
    match state.fleet.pick(&query) {
        Pick::Worker(lease) => Ok(lease),
        Pick::Unavailable if query.pool == Pool::Canary => {
            // No canary in rotation: the request is not the canary's to fail.
            let main = Query {
                pool: Pool::Main,
                ..query
            };
            Box::pin(pick_or_wait(state, ctx, main, deadline)).await
        }
        Pick::Unavailable => Err(GatewayError::NoHealthyWorker(ctx.model.clone())),
        Pick::Saturated => {
            let waited = state
                .queue
                .wait(&state.fleet, &query, ctx.priority, deadline)
                .await;
            waited.map_err(|shed| {
                tracing::warn!(model = %ctx.model, tier = %ctx.tier, reason = shed.as_str(), "request shed");
                match shed {
                    queue::Shed::Unavailable => GatewayError::NoHealthyWorker(ctx.model.clone()),
                    other => {
                        crate::metrics::shed(&ctx.tier, other.as_str());
                        GatewayError::Shed(other.as_str())
                    }
                }
            })
        }
    }
}

/// Notes which worker served this conversation, for its next turn.
pub fn served(state: &AppState, ctx: &RouteCtx, worker: &Worker) {
    if let Some(key) = ctx.conversation {
        state.sticky.remember(key, &worker.spec.name);
    }
}

/// The models `model` may fall back to for this caller: the configured chain, if the caller's
/// tier opted in.
pub fn fallbacks(state: &AppState, key: &KeyEntry, model: &str) -> Vec<String> {
    if !key.limits.fallback || !state.config.routing.adaptive() {
        return Vec::new();
    }
    state
        .config
        .routing
        .fallback
        .get(model)
        .map(|chain| {
            chain
                .iter()
                .filter(|m| state.fleet.serves(m) && crate::auth::check_model(key, m).is_ok())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `error` is one a fallback model may answer instead: no worker for the model, or a
/// saturated fleet that shed the request. Not a worker's failure (retries cover those) and
/// never a client's mistake.
pub fn falls_back(error: &GatewayError) -> bool {
    matches!(
        error,
        GatewayError::NoHealthyWorker(_) | GatewayError::Shed(_)
    )
}

/// `req` for `model` instead; the client's other fields are unchanged.
pub fn with_model(req: &InferenceRequest, model: &str) -> Option<InferenceRequest> {
    let mut body = req.body.clone();
    body.insert("model".into(), serde_json::Value::String(model.to_string()));
    InferenceRequest::from_map(req.endpoint, body).ok()
}
