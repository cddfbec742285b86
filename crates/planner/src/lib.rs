//! # switchyard-planner: capacity planning and unit economics
//!
//! The source document's formulas as pure functions over presets, for `switchyard plan` and
//! `switchyard providers`:
//!
//! - [`presets`]: model architectures (7–70B), quantization formats, GPUs.
//! - [`memory`]: VRAM ≈ weights + KV cache; whether a model fits and how many sequences.
//! - [`capacity`]: GPUs ≈ QPS × (prompt + completion tokens) / (tokens/s per GPU × batch
//!   efficiency) × headroom.
//! - [`cost`]: cost per 1M tokens = $/h ÷ (tokens/s × utilisation × 3600) × 1e6 + overheads,
//!   and the margin of each tier.
//! - [`mix`]: the observed token mix and request rate of a set of ledger rows.
//! - [`providers`]: the provider rubric (uptime, GPU fit, network, price stability, support),
//!   scored from measurements where there are some and from the operator's entries where not.
//!
//! Memory is integer bytes (exact: the KV-cache example is a product of integers). Planning
//! figures (throughput, cost per 1M tokens, GPU counts before rounding) are `f64`: they are
//! estimates from measured rates, not billing; the ledger's integer nano-dollars stay in
//! `switchyard-metering`.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod capacity;
pub mod cost;
pub mod error;
pub mod memory;
pub mod mix;
pub mod presets;
pub mod providers;
pub mod units;

pub use error::PlanError;
