//! `[limits]`: where the request, token, concurrency, quota and credit limits are counted.
//! Without `redis_url` each gateway process counts alone (right for one replica); with it,
//! every replica reserves and settles in one Redis, so the limits hold across all of them.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `redis://host:port[/db]` (or `rediss://` for TLS). `SWITCHYARD_REDIS_URL` wins over it.
    pub redis_url: Option<String>,
    /// Prepended to every Redis key, so several deployments (or tests) can share one Redis.
    pub redis_prefix: String,
    /// What admission does while Redis cannot be reached (see [`RedisDownPolicy`]).
    pub on_redis_down: RedisDownPolicy,
    /// A Redis call slower than this counts as Redis being down for this request.
    pub redis_timeout_ms: u64,
    /// After a failed Redis call, admissions use the fallback for this long before Redis is
    /// tried again (a background check brings it back sooner once it answers).
    pub redis_retry_ms: u64,
    /// A concurrency slot (and the tokens and credit it holds) is a lease of this length,
    /// renewed while its request runs: a replica killed with `kill -9` leaks a slot for no
    /// longer than this.
    pub lease_ms: u64,
}

/// Admission while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisDownPolicy {
    /// Each replica enforces its share of every limit (the limit divided by the replicas
    /// last seen alive), so the sum stays near the limit and customers keep being served.
    Local,
    /// Refuse with 503 and `Retry-After`: limits are never exceeded, at the cost of
    /// availability while Redis is down.
    Reject,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_prefix: "switchyard:".into(),
            on_redis_down: RedisDownPolicy::Local,
            redis_timeout_ms: 250,
            redis_retry_ms: 1_000,
            lease_ms: 30_000,
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+unix://")
                || url.starts_with("unix://"))
            {
                return Err(
                    "limits.redis_url must start with redis://, rediss:// or unix://".into(),
                );
            }
        }
        if self.redis_prefix.contains(['{', '}']) {
            return Err("limits.redis_prefix must not contain '{' or '}' (they are Redis Cluster hash tags)".into());
        }
        if !(10..=10_000).contains(&self.redis_timeout_ms) {
            return Err("limits.redis_timeout_ms must be between 10 and 10000".into());
        }
        if !(100..=60_000).contains(&self.redis_retry_ms) {
            return Err("limits.redis_retry_ms must be between 100 and 60000".into());
        }
        if !(3_000..=3_600_000).contains(&self.lease_ms) {
            return Err("limits.lease_ms must be between 3000 and 3600000".into());
        }
        Ok(())
    }

    /// For logs and the start-up banner: where Redis is, never a password.
    pub fn describe(&self) -> String {
        match &self.redis_url {
            None => "in this process only (no Redis)".into(),
            Some(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                format!(
                    "shared in Redis {host} (prefix {:?}; when it is down: {})",
                    self.redis_prefix,
                    match self.on_redis_down {
                        RedisDownPolicy::Local => "each replica enforces its share",
                        RedisDownPolicy::Reject => "refuse with 503",
                    }
                )
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows_and_bad_values_are_named() {
        let c = LimitsConfig {
            redis_url: Some("redis://:hunter2@cache:6379/0".into()),
            ..LimitsConfig::default()
        };
        assert!(c.validate().is_ok());
        assert!(!c.describe().contains("hunter2"), "{}", c.describe());
        let bad = LimitsConfig {
            redis_url: Some("http://cache".into()),
            ..LimitsConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("redis_url"));
        let bad = LimitsConfig {
            lease_ms: 10,
            ..LimitsConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("lease_ms"));
    }
}
