//! Step "dispatch": which attempts a request makes, given its routing decisions
//! (`crate::route`). The first worker, a retry on another one when an attempt fails before the
//! first byte reached the client, a hedge when the first token is late, a resumption when a
//! stream breaks mid-way ([`resume`]), and shadow copies to a canary ([`shadow`]). Each attempt
//! itself is `crate::upstream`'s.

pub mod resume;
pub mod shadow;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use switchyard_fleet::{Worker, WorkerLease};
use switchyard_protocol::InferenceRequest;

use crate::error::GatewayError;
use crate::route::RouteCtx;
use crate::settle::Settlement;
use crate::state::AppState;
use crate::upstream::{attempt_with, Reply};

/// Sends the request to a worker and returns the first answer that succeeds.
///
/// - A worker that fails before the first byte reached the client is replaced by another, on
///   another provider when there is one, up to `max_attempts` workers in all, and only while the
///   retry budget allows (see [`crate::upstream::budget`]).
/// - With `hedge_after` set (the tenant tier's TTFT hedge), a request that has no first frame
///   by then is also sent to a second worker; whichever answers first wins and the other is
///   cancelled (its future dropped: the connection closes and the worker stops generating).
///   Only the winner's answer reaches the client and the ledger, so a hedge is billed once.
/// - `failed_before` are workers this request already failed on (an unstreamed answer that
///   broke before any of it reached its client starts over elsewhere); they are avoided.
///   `max_attempts` bounds the workers the request is sent to in all, over every start.
pub async fn forward(
    state: &AppState,
    req: &InferenceRequest,
    route: &RouteCtx,
    request_id: &str,
    settlement: &mut Settlement,
    hedge_after: Option<Duration>,
    failed_before: &[Arc<Worker>],
) -> Result<(Reply, WorkerLease), GatewayError> {
    let upstream = &state.config.upstream;
    let adaptive = state.config.routing.adaptive();
    let hedge_after = hedge_after.filter(|_| adaptive);
    let capture = settlement.logs_content();
    let (tier, tenant) = (
        settlement.tier().to_string(),
        settlement.tenant().to_string(),
    );
    let scope = crate::filter::FilterScope {
        tier: &tier,
        tenant: &tenant,
    };
    let collected = !settlement.client_streams();
    // A request starting over (see `handlers::inference`) has been counted already.
    if failed_before.is_empty() {
        state.retry_budget.deposit();
        if hedge_after.is_some() {
            state.hedge_budget.deposit();
        }
    }
    let mut tried: Vec<Arc<Worker>> = failed_before.to_vec();
    // First tokens are judged against prompts of a size (see `switchyard_fleet::ttft`).
    let prompt_tokens = req.prompt_size().estimate();
    let mut last_error = None;
    let mut running = FuturesUnordered::new();
    let mut hedge = hedge_after.map(|d| Box::pin(tokio::time::sleep(d)));

    // Attempts in flight and when they began, to judge the losers of a hedge.
    let mut began_at: Vec<(Arc<Worker>, Instant)> = Vec::new();
    let start = |lease: WorkerLease,
                 tried: &mut Vec<Arc<Worker>>,
                 began_at: &mut Vec<(Arc<Worker>, Instant)>,
                 s: &mut Settlement| {
        let worker = lease.worker().clone();
        s.attempt(&worker);
        tried.push(worker.clone());
        began_at.push((worker.clone(), Instant::now()));
        async move {
            let began = Instant::now();
            let result = attempt_with(
                state,
                req,
                request_id,
                &worker,
                capture,
                Some(scope),
                collected,
            )
            .await;
            (lease, began.elapsed(), result)
        }
    };

    let lease = if failed_before.is_empty() {
        crate::route::first(state, route).await?
    } else {
        let deadline = route.queue_for.from_now();
        crate::route::retry(state, route, &tried, deadline).await?
    };
    running.push(start(lease, &mut tried, &mut began_at, settlement));
    loop {
        let single = running.len() == 1;
        let hedge_due = async {
            match hedge.as_mut() {
                Some(timer) if single => timer.await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            done = running.next() => {
                let Some((lease, took, result)) = done else { break };
                let worker = lease.worker().clone();
                let winner_began = began_at
                    .iter()
                    .position(|(w, _)| Arc::ptr_eq(w, &worker))
                    .map(|i| began_at.swap_remove(i).1);
                match result {
                    Ok(reply) => {
                        // A whole answer at once has no first token to time: its length says
                        // nothing about the worker's TTFT, and must not eject it.
                        if reply.relay.saw_first_token() {
                            worker.record_ttft(took, prompt_tokens);
                        }
                        // An attempt still running that began before the winner has been slower
                        // than it: its elapsed time is a lower bound of its TTFT. Without this a
                        // hung worker whose requests are always hedged away is never measured,
                        // and never ejected.
                        // `began_at` now holds only the attempts still running.
                        for (loser, at) in &began_at {
                            if winner_began.is_some_and(|w| *at < w) {
                                loser.record_ttft(at.elapsed(), prompt_tokens);
                                if adaptive {
                                    state.fleet.check_ttft_outlier(loser, prompt_tokens);
                                }
                            }
                        }
                        // Its success is known at its end (the relay records it).
                        if adaptive && reply.relay.saw_first_token() {
                            state.fleet.check_ttft_outlier(&worker, prompt_tokens);
                        }
                        settlement.served_by(&worker);
                        crate::route::served(state, route, &worker);
                        // Dropping `running` cancels a hedge still in flight.
                        return Ok((reply, lease));
                    }
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(request_id, worker = %worker.spec.name, error = %e, "attempt failed");
                        // A busy worker is not a broken one: it stays in rotation.
                        if adaptive && !matches!(e, GatewayError::UpstreamOverloaded) {
                            worker.record_failure_because(upstream.eject_after_failures, &e.to_string());
                        }
                        last_error = Some(e);
                        if running.is_empty() && settlement.attempts() < upstream.max_attempts {
                            if !state.retry_budget.try_withdraw() {
                                tracing::warn!(request_id, "retry budget exhausted; not retrying");
                            } else {
                                let deadline = route.queue_for.from_now();
                                match crate::route::retry(state, route, &tried, deadline).await {
                                    Ok(next) => {
                                        crate::metrics::retry(&req.model, crate::metrics::Retry::BeforeFirstToken);
                                        running.push(start(next, &mut tried, &mut began_at, settlement));
                                    }
                                    // Nobody to retry on: the worker's error says more.
                                    Err(GatewayError::NoHealthyWorker(_)) => {}
                                    Err(shed) => last_error = Some(shed),
                                }
                            }
                        }
                    }
                    // The worker refused the request itself (a client error): no other worker
                    // would answer differently.
                    Err(e) => return Err(e),
                }
            }
            () = hedge_due => {
                hedge = None; // one hedge per request
                if settlement.attempts() < upstream.max_attempts {
                    if let Some(lease) = crate::route::hedge(state, route, &tried) {
                        // Hedges have their own, smaller budget: under load every request is
                        // slow, and hedging them all would add load exactly when there is none
                        // to spare.
                        if state.hedge_budget.try_withdraw() {
                            tracing::info!(request_id, worker = %lease.worker().spec.name, "no first token yet; hedging");
                            settlement.hedged();
                            crate::metrics::hedge(&req.model);
                            running.push(start(lease, &mut tried, &mut began_at, settlement));
                        } else {
                            tracing::info!(request_id, "no first token yet; hedge budget exhausted");
                        }
                    }
                }
            }
        }
    }
    Err(last_error.unwrap_or_else(|| GatewayError::NoHealthyWorker(req.model.clone())))
}
