//! Conversions between columns and Rust values, shared by every table, as the SQLite store
//! does them: counts are `BIGINT`s that must not be negative, JSON documents are `TEXT`.

use crate::store::{Result, StoreError};

/// A `BIGINT` read back as a count; negative means the row was written by something else.
pub(crate) fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Database(format!("{what} is negative ({v})")))
}

/// A count to store; one beyond `i64::MAX` is refused rather than wrapped.
pub(crate) fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{what} = {v} does not fit in i64")))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T, what: &str) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("{what}: {e}")))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Database(format!("stored {what}: {e}")))
}
