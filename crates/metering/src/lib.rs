//! Metering: who may call (tenants, tiers, keys), how much (limits, reserve-then-settle), and
//! what it cost (the usage ledger an operator invoices from).
//!
//! - [`model`]: tenants, tiers, keys and usage records as stored.
//! - [`money`]: integer nano-dollars; prices and costs never touch floating point.
//! - [`store`]: the [`Store`] trait and its SQLite implementation.
//! - [`sli`]: per-minute SLI rollups the SLA report is computed from; [`maintenance`]: the
//!   windows it excludes; [`incident`]: incidents opened by the gateway's alerts.

pub mod admission;
pub mod clock;
pub mod content;
pub mod directory;
pub mod incident;
pub mod keys;
pub mod ledger;
pub mod limiter;
pub mod maintenance;
pub mod model;
pub mod money;
pub mod open;
pub mod shared_limits;
pub mod sli;
pub mod store;

pub use model::*;
pub use store::{
    Change, ContentStore, IncidentStore, LedgerStore, SliStore, Store, StoreError, TenantStore,
};
