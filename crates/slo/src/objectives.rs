//! The source document's error-rate objectives, beside each tier's availability target:
//! "5xx ≤ 0.2%; 429 ≤ 1% (excluding customer bursts beyond quota)".
//!
//! The gateway answers 429 only for a tenant's own limits, which the addendum excludes; the
//! throttling it does for the fleet's lack of capacity is a shed (503 `overloaded_shed`). So
//! the second objective is measured on sheds: requests within their tenant's limits turned away
//! for capacity. Both are taken over the requests the availability SLI counts (the tenant's
//! own-limit 429s left out).

/// The most 5xx responses: 0.2%, in parts per million.
pub const MAX_5XX_PPM: u64 = 2_000;
/// The most requests shed for capacity: 1%, in parts per million.
pub const MAX_THROTTLED_PPM: u64 = 10_000;

/// The same as targets in basis points, as burn rates take them (99.80% and 99.00% good).
pub const FIVE_XX_TARGET_BP: u32 = 9_980;
pub const THROTTLED_TARGET_BP: u32 = 9_900;
