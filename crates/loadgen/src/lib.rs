//! # switchyard-loadgen: a load generator for OpenAI-compatible endpoints
//!
//! Sends chat or text completions to any OpenAI-compatible endpoint (the gateway, a single
//! worker, someone else's API) and measures each request:
//!
//! - **TTFT**: from the request's start to the first event carrying generated text (a frame
//!   with only the assistant role does not count);
//! - **inter-token latency**: the gaps between successive text events;
//! - **TPOT**: time per output token after the first, (TTLT − TTFT) / (completion tokens − 1);
//! - **TTLT**: to the end of the response (after `data: [DONE]`);
//! - **tokens**: from the response's `usage` (streams ask for it with `include_usage`); a
//!   stream without usage counts one completion token per text event, and says so;
//! - **errors**, by kind: `http_<status>`; `connect` (the server was not reached), `timeout`,
//!   `transport` (no response); on a stream, `stream_cut` (the connection broke),
//!   `stream_incomplete` (it ended without `data: [DONE]`), `stream_error` (an error event),
//!   `bad_event` (not JSON), `not_a_stream` (a whole response instead); on a whole response,
//!   `body_cut`, `bad_json`, `response_error` (an `error` object with status 200).
//!
//! Two ways to apply load: **closed loop** (`concurrency` requests in flight, each starting
//! when another ends) and **open loop** (`rate` requests per second on a fixed schedule,
//! whatever the server does). In open loop a request's latencies are measured from its
//! scheduled start, so a server that falls behind is charged for the wait (no coordinated
//! omission). Open-loop starts are evenly spaced or, with [`Arrivals::Poisson`], a Poisson
//! process drawn from a seed (the same seed gives the same [`Schedule`]); each request's
//! `max_tokens` can be drawn from a range, from the same seed. With [`BenchConfig::records`]
//! every request is also written as one [`RequestRecord`] (JSON Lines). Percentiles come from
//! HDR histograms at microsecond resolution with 3 significant digits. Prompts are one fixed
//! text, drawn lengths, or conversations from a dataset file ([`Input`]); a warm-up sends
//! requests that are not counted; with latency objectives ([`Slo`]) the report gives the
//! goodput, the requests that met them. [`run`] returns a [`BenchReport`], which serializes to the JSON that
//! `switchyard bench --json` prints and `switchyard plan` reads.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod input;
mod record;
mod report;
mod request;
mod run;
mod schedule;
mod slo;

pub use config::{endpoint_url, Arrivals, BenchConfig, Endpoint, Input, Load, Slo};
pub use input::load_dataset;
pub use record::RequestRecord;
pub use report::{
    BenchReport, Counts, Goodput, Latencies, LatencySummary, LoadReport, TargetReport, Throughput,
    Tokens, SCHEMA,
};
pub use request::{measure, Outcome};
pub use run::{run, LoadgenError, Progress};
pub use schedule::Schedule;
