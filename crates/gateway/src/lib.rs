//! Switchyard's request path, as a library so that tests can run the gateway in-process.
//!
//! A request meets the modules in this order:
//! [`request_id`] → [`auth`] → parse ([`switchyard_protocol::request`]) → [`shape`] →
//! [`admit`] → [`route`] → [`upstream`] (adapter, retry, stream relay) → [`settle`].
//! Errors on any step are one type, [`error::GatewayError`], mapped to HTTP in one place.

pub mod admin;
pub mod admit;
pub mod alerting;
pub mod auth;
mod body;
pub mod content_log;
pub mod error;
pub mod fleet_api;
mod handlers;
pub mod heartbeat;
pub mod metrics;
pub mod request_id;
pub mod route;
pub mod server;
pub mod settle;
pub mod shape;
pub mod state;
pub mod status;
pub mod synthetic;
pub mod upstream;
pub mod worker_scrape;

pub use error::GatewayError;
pub use server::{start, start_with_clock, RunningGateway, Secrets, StartError};
pub use switchyard_config::Config;
