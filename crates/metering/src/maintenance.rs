//! Declared maintenance windows, which the SLA report excludes as the addendum allows
//! ("scheduled maintenance (≤ 60 min/mo with 48h notice)"; the limits are applied by the
//! report, not here: a window is recorded as declared).
//!
//! The notice is the moment the window was created, by the gateway's clock: an operator
//! cannot say when customers were told, so a window made after an outage can never be
//! backdated over it.

use serde::{Deserialize, Serialize};

/// Whom a window covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaintenanceScope {
    /// Every tenant.
    All,
    Tenant(String),
}

impl MaintenanceScope {
    /// `all` or `tenant:<id>`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "all" => Some(MaintenanceScope::All),
            s => s
                .strip_prefix("tenant:")
                .filter(|t| !t.is_empty())
                .map(|t| MaintenanceScope::Tenant(t.to_string())),
        }
    }

    pub fn covers(&self, tenant_id: &str) -> bool {
        match self {
            MaintenanceScope::All => true,
            MaintenanceScope::Tenant(t) => t == tenant_id,
        }
    }
}

impl std::fmt::Display for MaintenanceScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaintenanceScope::All => f.write_str("all"),
            MaintenanceScope::Tenant(t) => write!(f, "tenant:{t}"),
        }
    }
}

/// A window to declare: `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMaintenance {
    pub start_ms: i64,
    pub end_ms: i64,
    pub scope: MaintenanceScope,
    pub note: String,
    /// Now, by the gateway's clock: the window is announced as it is created (the report
    /// wants that 48 h before `start_ms`).
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintenance {
    pub id: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub scope: MaintenanceScope,
    pub note: String,
    /// Equal to `created_at_ms` for every window made since notices come from the gateway's
    /// clock; older rows may hold a time an operator gave, which the report ignores.
    pub announced_at_ms: i64,
    /// When the gateway recorded the window: the notice the report counts.
    pub created_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip() {
        for s in ["all", "tenant:acme"] {
            assert_eq!(
                MaintenanceScope::parse(s).map(|m| m.to_string()).as_deref(),
                Some(s)
            );
        }
        assert_eq!(MaintenanceScope::parse("tenant:"), None);
        assert_eq!(MaintenanceScope::parse("region:eu"), None);
        assert!(MaintenanceScope::All.covers("x"));
        assert!(!MaintenanceScope::Tenant("a".into()).covers("b"));
    }
}
