//! `[state]`: the state store and the ledger writer; `[dev_tenant]`: whose the dev key is.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// SQLite file with tenants, keys and the usage ledger; ":memory:" for a throwaway one.
    pub path: PathBuf,
    /// Usage records waiting to be written; past this, settling waits in background tasks.
    pub ledger_queue: usize,
    /// Records per ledger transaction.
    pub ledger_batch: usize,
    /// At shutdown, how long the ledger may take to store what is queued; what is still
    /// unwritten then is printed to stderr (one JSON line per record) and the process exits.
    pub ledger_flush_ms: u64,
    /// How often a running request's progress (its worker, the tokens relayed) is written, so
    /// that a crash bills what was relayed up to then.
    pub checkpoint_ms: u64,
    /// How often this process records that it is alive (the SLA's observed minutes); a process
    /// silent for three of these is dead, and its open requests are settled as interrupted.
    pub heartbeat_ms: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("switchyard.db"),
            ledger_queue: 65_536,
            ledger_batch: 512,
            ledger_flush_ms: 10_000,
            checkpoint_ms: 2_000,
            heartbeat_ms: 15_000,
        }
    }
}

impl StateConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.ledger_queue == 0 || self.ledger_batch == 0 {
            return Err("state.ledger_queue and state.ledger_batch must be positive".into());
        }
        if self.checkpoint_ms < 100 {
            return Err("state.checkpoint_ms must be at least 100".into());
        }
        // A minute must get a heartbeat even if one write fails.
        if !(100..=20_000).contains(&self.heartbeat_ms) {
            return Err("state.heartbeat_ms must be between 100 and 20000".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevTenantConfig {
    pub id: String,
    pub tier: String,
}

impl Default for DevTenantConfig {
    fn default() -> Self {
        Self {
            id: "dev".into(),
            tier: "pro".into(),
        }
    }
}
