//! The fleet: which workers exist, which of them are healthy, and which one a request goes to.
//!
//! - [`runtime`]: the inference servers we speak to and their quirks.
//! - [`worker`]: a worker's declared labels ([`WorkerSpec`]) and live state ([`Worker`]).
//! - [`registry`]: the set of workers by model: who joins, who leaves, who is drained.
//! - [`pick`]: the adaptive choice of a worker for a request.
//! - [`breaker`]: a worker's circuit breaker: ready, unhealthy, ejected, probation, draining.
//! - [`health`]: active health checks, and the passive signal from live traffic.

pub mod breaker;
pub mod health;
pub mod hop;
pub mod pick;
pub mod registry;
pub mod runtime;
pub mod signal;
pub mod ttft;
pub mod worker;

pub use breaker::{HealthView, OutlierConfig, ProbeView, UsageRejectionView, WorkerState};
pub use health::{HealthChecker, HealthConfig};
pub use hop::{HopClients, HopSettings, HopTrust, Hops, PlaintextHops};
pub use pick::{Pick, Query};
pub use registry::{DrainTarget, Fleet, FleetError, Members, WorkerLease};
pub use runtime::{PromptFormat, RuntimeKind};
pub use worker::{Pool, Worker, WorkerSource, WorkerSpec};
