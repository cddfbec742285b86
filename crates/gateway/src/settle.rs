//! The last step of the request path: one record per request that reached the routing step,
//! written exactly once whichever way the request ended. A `Settlement` that is dropped without
//! being finished (the client disconnected and the handler was cancelled) records itself as a
//! disconnect in `Drop`, so no path can skip it.

use std::time::Instant;

use switchyard_fleet::Worker;
use switchyard_protocol::{Endpoint, InferenceRequest, Usage};

use crate::error::GatewayError;
use crate::upstream::account::StreamAccount;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// The request was refused (client error, no worker, all attempts failed).
    Failed,
    /// The stream had started and the worker broke or stalled.
    FailedMidStream,
    ClientDisconnected,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::FailedMidStream => "failed_mid_stream",
            Outcome::ClientDisconnected => "client_disconnected",
        }
    }
}

#[derive(Debug)]
pub struct Settlement {
    request_id: String,
    key_name: String,
    endpoint: Endpoint,
    model: String,
    stream: bool,
    started: Instant,
    ttft_ms: Option<f64>,
    worker: Option<String>,
    provider: Option<String>,
    attempts: u32,
    settled: bool,
}

impl Settlement {
    pub fn start(request_id: &str, key_name: &str, req: &InferenceRequest) -> Self {
        Self {
            request_id: request_id.to_string(),
            key_name: key_name.to_string(),
            endpoint: req.endpoint,
            model: req.model.clone(),
            stream: req.stream,
            started: Instant::now(),
            ttft_ms: None,
            worker: None,
            provider: None,
            attempts: 0,
            settled: false,
        }
    }

    pub fn attempt(&mut self, worker: &Worker) {
        self.attempts += 1;
        self.worker = Some(worker.spec.name.clone());
        self.provider = Some(worker.spec.provider.clone());
    }

    /// When the first frame of a stream was ready for the client.
    pub fn first_token_at(&mut self, at: Instant) {
        if self.ttft_ms.is_none() {
            self.ttft_ms = Some(at.saturating_duration_since(self.started).as_secs_f64() * 1e3);
        }
    }

    pub fn completed(mut self, usage: Usage, estimated: bool, status: u16) {
        self.first_token_at(Instant::now());
        self.record(
            Outcome::Completed,
            status,
            Some(usage),
            estimated,
            None,
            None,
        );
    }

    pub fn failed(mut self, error: &GatewayError) {
        self.record(
            Outcome::Failed,
            error.status().as_u16(),
            None,
            false,
            None,
            Some(error.to_string()),
        );
    }

    pub fn stream_ended(&mut self, account: &StreamAccount, outcome: Outcome) {
        let (usage, estimated) = account.usage();
        self.record(
            outcome,
            200,
            Some(usage),
            estimated,
            account.finish_reason.clone(),
            None,
        );
    }

    fn record(
        &mut self,
        outcome: Outcome,
        status: u16,
        usage: Option<Usage>,
        usage_estimated: bool,
        finish_reason: Option<String>,
        error: Option<String>,
    ) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let usage = usage.unwrap_or_default();
        tracing::info!(
            target: "switchyard::settle",
            request_id = %self.request_id,
            key = %self.key_name,
            endpoint = self.endpoint.path(),
            model = %self.model,
            stream = self.stream,
            worker = self.worker.as_deref().unwrap_or("-"),
            provider = self.provider.as_deref().unwrap_or("-"),
            attempts = self.attempts,
            outcome = outcome.as_str(),
            status,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            usage_estimated,
            finish_reason = finish_reason.as_deref().unwrap_or("-"),
            ttft_ms = self.ttft_ms.unwrap_or(-1.0),
            total_ms = self.started.elapsed().as_secs_f64() * 1e3,
            error = error.as_deref().unwrap_or(""),
            "request settled"
        );
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        // Reached only when the handler was cancelled: the client went away before an answer.
        self.record(Outcome::ClientDisconnected, 499, None, false, None, None);
    }
}
