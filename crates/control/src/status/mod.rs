//! The status pages, served by the gateway itself:
//!
//! - `GET /status` and `GET /status.json`, public (no authentication): current status per
//!   model and region, and SLI history over 24 h / 7 d / 30 d, every tenant summed
//!   ([`data`]), cached for a few seconds ([`cache`]), drawn as inline SVG ([`charts`],
//!   [`page`]).
//! - `GET /admin/status`, on the admin port, for the operator: tenants' usage and error budgets this month
//!   ([`admin_view`]), behind the admin token ([`admin_auth`]).

pub mod admin_auth;
pub mod admin_view;
pub mod cache;
pub mod charts;
pub mod data;
mod html;
pub mod page;

use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Router};

use crate::state::ControlState;

/// The public status routes, to be merged into the gateway's router before its state is set.
/// Each call has its own cache (one per gateway).
pub fn router() -> Router<Arc<ControlState>> {
    Router::new()
        .route("/status", get(page::page))
        .route("/status.json", get(page::json))
        .layer(Extension(Arc::new(cache::StatusCache::default())))
}

/// The operator's view, served on the admin port.
pub fn admin_router() -> Router<Arc<ControlState>> {
    Router::new().route("/admin/status", get(admin_view::view))
}
