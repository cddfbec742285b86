//! `[state]`: the state store and the ledger writer; `[dev_tenant]`: whose the dev key is.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// SQLite file with tenants, keys and the usage ledger; ":memory:" for a throwaway one.
    /// The embedded default; `url` (or `SWITCHYARD_DATABASE_URL`), when set, wins.
    pub path: PathBuf,
    /// `postgres://user:password@host:port/database` (several gateway replicas share it) or
    /// `sqlite://path` (the same as `path`).
    pub url: Option<String>,
    /// Postgres only: keep the tables in this schema (created if missing) instead of `public`,
    /// e.g. to share a database with other applications. Lowercase letters, digits and `_`.
    pub schema: Option<String>,
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
    /// How often the view of tenants and keys is reloaded from the store whatever else
    /// happens: the backstop under Postgres's change notifications (which reach every replica
    /// within a second), and how a key edited in SQLite by another process is picked up.
    pub directory_refresh_ms: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("switchyard.db"),
            url: None,
            schema: None,
            ledger_queue: 65_536,
            ledger_batch: 512,
            ledger_flush_ms: 10_000,
            checkpoint_ms: 2_000,
            heartbeat_ms: 15_000,
            directory_refresh_ms: 30_000,
        }
    }
}

/// Where the state lives, from `[state] url` or `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBackend {
    SqliteFile(PathBuf),
    SqliteMemory,
    /// The URL as given (it may carry a password: show it with [`StateBackend::describe`]),
    /// and the schema to keep the tables in.
    Postgres {
        url: String,
        schema: Option<String>,
    },
}

impl StateBackend {
    /// For logs and the start-up banner: the backend and where, never a password.
    pub fn describe(&self) -> String {
        match self {
            StateBackend::SqliteFile(path) => format!("SQLite {}", path.display()),
            StateBackend::SqliteMemory => "SQLite in memory (nothing is kept)".into(),
            StateBackend::Postgres { url, schema } => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                let host = host.split('?').next().unwrap_or(host);
                let schema = schema.as_deref().unwrap_or("public");
                format!("Postgres {host}, schema {schema}")
            }
        }
    }
}

impl StateConfig {
    pub fn backend(&self) -> Result<StateBackend, String> {
        let Some(url) = &self.url else {
            if self.schema.is_some() {
                return Err("state.schema needs a postgres:// state.url".into());
            }
            return Ok(if self.path.as_os_str() == ":memory:" {
                StateBackend::SqliteMemory
            } else {
                StateBackend::SqliteFile(self.path.clone())
            });
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if let Some(schema) = &self.schema {
                let valid = !schema.is_empty()
                    && schema.len() <= 63
                    && !schema.starts_with(|c: char| c.is_ascii_digit())
                    && schema
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !valid {
                    return Err(format!(
                        "state.schema {schema:?}: 1 to 63 lowercase letters, digits and '_', not starting with a digit"
                    ));
                }
            }
            return Ok(StateBackend::Postgres {
                url: url.clone(),
                schema: self.schema.clone(),
            });
        }
        if self.schema.is_some() {
            return Err("state.schema needs a postgres:// state.url".into());
        }
        match url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Some(":memory:") => Ok(StateBackend::SqliteMemory),
            Some(path) if !path.is_empty() => Ok(StateBackend::SqliteFile(PathBuf::from(path))),
            _ => {
                Err("state.url must be postgres://user@host:port/database or sqlite://path".into())
            }
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.backend()?;
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
        if self.directory_refresh_ms < 100 {
            return Err("state.directory_refresh_ms must be at least 100".into());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(url: Option<&str>, schema: Option<&str>) -> StateConfig {
        StateConfig {
            url: url.map(str::to_string),
            schema: schema.map(str::to_string),
            ..StateConfig::default()
        }
    }

    #[test]
    fn the_url_names_the_backend_and_wins_over_the_path() {
        assert_eq!(
            StateConfig::default().backend(),
            Ok(StateBackend::SqliteFile("switchyard.db".into()))
        );
        assert_eq!(
            with(Some("sqlite://data/s.db"), None).backend(),
            Ok(StateBackend::SqliteFile("data/s.db".into()))
        );
        assert_eq!(
            with(Some("sqlite::memory:"), None).backend(),
            Ok(StateBackend::SqliteMemory)
        );
        let pg = with(Some("postgres://sy:secret@db.internal:5432/sy"), Some("gw")).backend();
        let Ok(pg) = pg else {
            panic!("postgres URL refused: {pg:?}");
        };
        assert_eq!(pg.describe(), "Postgres db.internal:5432/sy, schema gw");
        assert!(!pg.describe().contains("secret"), "never the password");
    }

    #[test]
    fn a_bad_url_or_schema_is_refused_on_load() {
        for (url, schema) in [
            (Some("mysql://x"), None),
            (Some("sqlite://"), None),
            (None, Some("gw")),
            (Some("sqlite://s.db"), Some("gw")),
            (Some("postgres://h/db"), Some("Bad-Name")),
            (Some("postgres://h/db"), Some("1st")),
        ] {
            assert!(with(url, schema).validate().is_err(), "{url:?} {schema:?}");
        }
    }
}
