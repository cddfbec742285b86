//! The SLA ledger's arithmetic, without I/O: what the addendum promises, computed from the
//! per-minute SLI rollups ([`switchyard_metering::sli`]) in integers only.
//!
//! - [`availability`]: the addendum's 1-minute uptime, the error budget and what is left of it.
//! - [`credit`]: 5% of the monthly fee per 0.1% below the SLO, capped at 25%; the latency credit.
//! - [`percentile`]: p95s from the rollups' latency histograms.
//! - [`exclusions`]: which declared maintenance minutes the addendum lets us exclude.
//! - [`objectives`]: the 5xx and throttling objectives beside availability.
//! - [`report`]: one tenant's month, put together.
//! - [`burn`]: error-budget burn rates and the multi-window page/ticket decision.
//!
//! Units: availability targets are basis points of a percent (9990 = 99.90%), measured
//! availability is parts per million (999_004 = 99.9004%), credits are basis points of the fee,
//! money is nano-dollars. Nothing here touches floating point.

pub mod availability;
pub mod burn;
pub mod credit;
pub mod exclusions;
pub mod objectives;
pub mod percentile;
pub mod report;

pub use credit::PartialStep;
pub use report::{
    tenant_report, unobserved_minutes, Outside, Period, Settings, TenantSla, TenantTerms,
};
