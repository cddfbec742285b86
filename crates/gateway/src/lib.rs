//! Switchyard's request path. The control plane (`switchyard-control`) reads its public
//! types; nothing here knows the control plane. `switchyard-server` composes the two.
//!
//! A request meets the modules in this order:
//! [`request_id`] → [`auth`] → parse ([`switchyard_protocol::request`]) → [`shape`] →
//! [`filter`] → [`admit`] → [`route`] (which worker) → [`dispatch`] (attempts: retries, hedges, resumes,
//! shadow copies) → [`upstream`] (one attempt through its runtime's adapter, the stream relay)
//! → [`settle`].
//! Errors on any step are one type, [`error::GatewayError`], mapped to HTTP in one place.

pub mod admit;
pub mod auth;
pub mod body;
pub mod build;
pub mod content_log;
pub mod dispatch;
pub mod error;
pub mod filter;
mod handlers;
pub mod heartbeat;
pub mod metrics;
pub mod registered_models;
pub mod request_id;
pub mod route;
pub mod settle;
pub mod shape;
pub mod state;
pub mod upstream;

pub use build::{build, finish, routes, RequestPath, StartError};
pub use error::GatewayError;
pub use switchyard_config::Config;
