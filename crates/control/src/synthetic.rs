//! Synthetic probes: every `interval_ms` the gateway sends each worker in rotation a known,
//! short, streamed prompt through the same adapter live traffic uses, and checks the answer
//! against the SLO's limits (TTFT and TTLT). A health endpoint says the process is up; a probe
//! says it answers a prompt in time — the source document's "page yourself before the
//! customer does".
//!
//! A failed probe counts against the worker like a failed request (it can eject it); a passed
//! probe refreshes its TTFT EWMA (so routing has a current figure for idle workers) and counts
//! toward probation. Probes are not billed and never reach the ledger.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_fleet::{ProbeView, Worker, WorkerState};
use switchyard_protocol::{Endpoint, InferenceRequest};

use crate::state::ControlState;
use switchyard_gateway::upstream::consume::consume;

/// Runs the probes until the task is aborted.
pub fn spawn(state: Arc<ControlState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = state.config.probes.clone();
        if config.interval_ms == 0 {
            return;
        }
        let mut ticker = tokio::time::interval(Duration::from_millis(config.interval_ms));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // the first tick is immediate; workers were just health-checked
        loop {
            ticker.tick().await;
            let workers: Vec<Arc<Worker>> = state
                .fleet
                .workers()
                .into_iter()
                .filter(|w| matches!(w.state(), WorkerState::Ready | WorkerState::Probation))
                .collect();
            futures::future::join_all(workers.iter().map(|w| probe(&state, w))).await;
        }
    })
}

/// Probes one worker and records the verdict.
pub async fn probe(state: &ControlState, worker: &Worker) -> ProbeView {
    let config = &state.config.probes;
    let view = match run(state, worker).await {
        Ok((ttft, ttlt)) => {
            let (ttft_ms, ttlt_ms) = (ms(ttft), ms(ttlt));
            let error = if ttft > Duration::from_millis(config.ttft_limit_ms) {
                Some(format!(
                    "TTFT {ttft_ms:.0} ms over the {} ms limit",
                    config.ttft_limit_ms
                ))
            } else if ttlt > Duration::from_millis(config.ttlt_limit_ms) {
                Some(format!(
                    "TTLT {ttlt_ms:.0} ms over the {} ms limit",
                    config.ttlt_limit_ms
                ))
            } else {
                None
            };
            // The probe prompt is a few tokens: the smallest size class.
            worker.record_ttft(ttft, 0);
            ProbeView {
                at_unix_ms: switchyard_metering::directory::unix_ms(),
                passed: error.is_none(),
                ttft_ms: Some(ttft_ms),
                ttlt_ms: Some(ttlt_ms),
                error,
            }
        }
        Err(e) => ProbeView {
            at_unix_ms: switchyard_metering::directory::unix_ms(),
            passed: false,
            ttft_ms: None,
            ttlt_ms: None,
            error: Some(e),
        },
    };
    match &view.error {
        None => worker.record_success(),
        Some(why) => {
            tracing::warn!(worker = %worker.spec.name, error = %why, "synthetic probe failed");
            worker.record_failure_because(
                state.config.upstream.eject_after_failures,
                &format!("synthetic probe: {why}"),
            );
        }
    }
    worker.set_probe(view.clone());
    view
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Sends the probe prompt; returns (TTFT, TTLT) of a complete answer.
async fn run(state: &ControlState, worker: &Worker) -> Result<(Duration, Duration), String> {
    let config = &state.config.probes;
    let body = json!({
        "model": worker.spec.model,
        "messages": [{"role": "user", "content": config.prompt}],
        "max_tokens": config.max_tokens,
        "temperature": 0,
        "stream": true,
    });
    let req = InferenceRequest::parse(Endpoint::Chat, body.to_string().as_bytes())
        .map_err(|e| format!("probe request: {e}"))?;
    let id = uuid::Uuid::new_v4().to_string();
    let began = Instant::now();
    // Twice the limit: a probe that takes longer has failed either way, and must not pile up.
    let limit = Duration::from_millis(config.ttlt_limit_ms.saturating_mul(2));
    let answer = async {
        let reply = switchyard_gateway::upstream::attempt(state, &req, &id, worker)
            .await
            .map_err(|e| e.to_string())?;
        let ttft = consume(reply, began)
            .await?
            .ok_or_else(|| "the worker did not stream".to_string())?;
        Ok((ttft, began.elapsed()))
    };
    tokio::time::timeout(limit, answer)
        .await
        .map_err(|_| format!("no complete answer within {} ms", limit.as_millis()))?
}
