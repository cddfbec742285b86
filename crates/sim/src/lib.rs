//! # switchyard-sim: a simulated LLM inference worker
//!
//! An HTTP server that speaks the OpenAI-compatible API as vLLM/SGLang serve it
//! (`/v1/chat/completions`, `/v1/completions`, `/v1/models`, `/health`) and Hugging Face
//! TGI's native API (`/generate`, `/generate_stream`, `/`, `/info`), with a timing model,
//! a KV-cache capacity model and fault injection. The gateway's tests, benchmarks, chaos
//! runs and no-config default fleet run against it.
//!
//! It is honest about being a simulation: the default model id is `sim-small`,
//! `/v1/models` says `owned_by: "switchyard-sim (simulated worker)"`, responses carry
//! `system_fingerprint: "switchyard-sim"` and every response has the header
//! `x-switchyard-sim: 1`.
//!
//! ## Timing model
//! All durations are multiplied by the fault `slow_factor` in force when the request
//! arrived.
//! * **Admission.** A request reserves `(prompt_tokens + max_tokens) × n` KV tokens before
//!   prefill and holds them until it ends (completed, failed, or abandoned by its client:
//!   the reservation is a Drop guard). A request that does not fit waits in a FIFO queue
//!   (no overtaking); when `max_queue` requests already wait, or it waited
//!   `queue_timeout_ms`, it gets a 503. A request larger than the whole cache gets a 400
//!   like vLLM's "maximum context length" error.
//! * **TTFT** = queue wait + `prefill_base_ms` + `prefill_per_token_ms × prompt_tokens`.
//! * **Each later token** comes `decode_ms_per_token × (1 + decode_slowdown_per_seq ×
//!   (running_sequences − 1))` after the previous one, where `running_sequences` (the sum
//!   of `n` over requests holding KV space) is read when that token is scheduled.
//!   Deadlines are chained from the previous deadline, so pacing does not drift.
//! * A non-streamed response is sent when the last token would have been streamed.
//!
//! ## Text model
//! Prompt tokens are estimated as `ceil(chars / 4)`; chat adds 3 per message (sum over
//! messages of `ceil(content chars / 4) + 3`); a completion prompt given as token ids
//! counts its ids. Completion tokens are words with a leading space (" sim", " token",
//! " alpha", ...): one token per word, drawn deterministically from the request's
//! `seed` (else from the worker's seeded RNG) and the choice index. A reply ends with
//! "length" at max tokens, "stop" (TGI: "eos_token") after `natural_tokens`, or "stop"
//! (TGI: "stop_sequence") at a stop string; OpenAI replies are cut before the stop
//! string, TGI replies keep it, as the real servers do.
//!
//! ## Faults ([`FaultConfig`])
//! Decided once per request at arrival: `refuse` (503 at once), `hang` (never answer),
//! `error_500` (500 after prefill), `cut_stream` (after `cut_after_tokens` decode steps
//! the connection is aborted: no terminating chunk, no `[DONE]`; a non-streamed
//! response is aborted before any byte), `stall_stream` (after `cut_after_tokens` steps
//! nothing more is sent but the connection stays open). [`SimHandle::kill`] makes the
//! whole worker die at once. Faults can be changed at run time with
//! [`SimHandle::set_faults`] or `PUT /sim/faults`.
//!
//! ## Control endpoints
//! `GET /sim/stats` ([`SimStats`]), `GET`/`PUT /sim/faults` ([`FaultConfig`] JSON; missing
//! fields take their defaults), `GET /sim/last_request` (`{"path", "headers", "body"}`
//! of the last generation request, body verbatim). `GET /metrics` answers like vLLM's own, with
//! `vllm:gpu_cache_usage_perc`, `vllm:num_requests_running` and `vllm:num_requests_waiting`
//! from the simulator's KV cache and queue.
//!
//! ## Stats
//! Every generation request ends exactly once as `completed` or `failed` (rejections,
//! faults, client disconnects). `completion_tokens_generated` counts each token when
//! its event is handed to the connection, so it includes tokens of streams cut or
//! cancelled mid-way.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod control;
mod engine;
mod error;
mod faults;
mod kv;
mod metrics;
mod openai;
mod server;
mod sse;
mod state;
mod stats;
mod text;
mod tgi;
mod timing;
mod workers;

pub use config::{FaultConfig, SimConfig, UsageInStream};
pub use server::{spawn, spawn_on, SimHandle};
pub use stats::SimStats;
pub use workers::{start_sim_workers, SimStartError};
