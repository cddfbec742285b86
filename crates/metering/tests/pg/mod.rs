//! A fresh Postgres store per test: its own schema on the machine's server
//! (`SWITCHYARD_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//! The tests need the server running (`scripts/test` checks it and starts it if it is not); they
//! fail, not skip, without it. `scripts/test` drops the schemas of earlier runs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use switchyard_metering::store::postgres::PgStore;

pub const URL_ENV: &str = "SWITCHYARD_TEST_POSTGRES_URL";
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var(URL_ENV).unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// A store in a schema of its own, `test_<random>`.
pub async fn fresh() -> PgStore {
    let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
    PgStore::connect_in_schema(&url(), &schema)
        .await
        .unwrap_or_else(|e| panic!("Postgres at {} ({URL_ENV}): {e}", url()))
}
