//! `[filters]`: abuse controls on what goes to the workers and what comes back. Input patterns
//! refuse a request before anything is reserved (400 `content_filter`, never billed); output
//! patterns end a stream whose text matches, across chunk boundaries. Literals match without
//! regard to case; regexes are Rust `regex` syntax. `[filters.tiers.NAME]` adds patterns for
//! one tier, `[filters.tenants.ID]` for one tenant. The shipped list (`default_blocklist`) refuses credential-scraping prompts.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PatternLists {
    pub input_literals: Vec<String>,
    pub input_regex: Vec<String>,
    pub output_literals: Vec<String>,
    pub output_regex: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FiltersConfig {
    /// The shipped input list of credential-scraping prompts.
    pub default_blocklist: bool,
    #[serde(flatten)]
    pub all: PatternLists,
    /// How much of the completion's tail an output regex sees at once (characters): a match
    /// longer than this is not caught. Literals always fit (the window grows to the longest).
    pub output_window_chars: usize,
    /// Patterns for one tier, on top of the ones above.
    pub tiers: BTreeMap<String, PatternLists>,
    /// Patterns for one tenant (by id), on top of its tier's: a tenant whose domain has words
    /// of its own to keep out. Tenants live in the state store, so an id here that names none
    /// matches nothing.
    pub tenants: BTreeMap<String, PatternLists>,
    /// An OpenAI-compatible moderation endpoint (`https://host/v1/moderations`): every request
    /// that passed the lists is sent there first; `flagged` refuses it. The bearer key, if
    /// it needs one, is `SWITCHYARD_MODERATION_API_KEY`.
    pub moderation_url: Option<String>,
    /// Sent as `model` when set (e.g. "omni-moderation-latest").
    pub moderation_model: Option<String>,
    /// How long a moderation answer may take; past it, `moderation_on_error` decides.
    pub moderation_timeout_ms: u64,
    /// When the endpoint fails or is slow: `open` lets the request through (and counts it),
    /// `closed` refuses it with 503.
    pub moderation_on_error: ModerationPolicy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModerationPolicy {
    #[default]
    Open,
    Closed,
}

impl Default for FiltersConfig {
    fn default() -> Self {
        Self {
            default_blocklist: true,
            all: PatternLists::default(),
            output_window_chars: 256,
            tiers: BTreeMap::new(),
            tenants: BTreeMap::new(),
            moderation_url: None,
            moderation_model: None,
            moderation_timeout_ms: 2_000,
            moderation_on_error: ModerationPolicy::Open,
        }
    }
}

impl FiltersConfig {
    pub fn validate(
        &self,
        tiers: &BTreeMap<String, switchyard_metering::Limits>,
    ) -> Result<(), String> {
        if let Some(url) = &self.moderation_url {
            let parsed = url::Url::parse(url)
                .map_err(|e| format!("filters.moderation_url '{url}' is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!(
                    "filters.moderation_url '{url}' must be http or https"
                ));
            }
        }
        if !(50..=60_000).contains(&self.moderation_timeout_ms) {
            return Err("filters.moderation_timeout_ms must be between 50 and 60000".into());
        }
        if !(16..=65_536).contains(&self.output_window_chars) {
            return Err("filters.output_window_chars must be between 16 and 65536".into());
        }
        for tier in self.tiers.keys() {
            if !tiers.contains_key(tier) {
                return Err(format!(
                    "[filters.tiers.{tier}]: '{tier}' is not a defined tier"
                ));
            }
        }
        if let Some(id) = self.tenants.keys().find(|id| id.trim().is_empty()) {
            return Err(format!(
                "[filters.tenants.\"{id}\"]: a tenant id cannot be empty"
            ));
        }
        let lists = std::iter::once(("filters".to_string(), &self.all))
            .chain(
                self.tiers
                    .iter()
                    .map(|(t, l)| (format!("filters.tiers.{t}"), l)),
            )
            .chain(
                self.tenants
                    .iter()
                    .map(|(t, l)| (format!("filters.tenants.{t}"), l)),
            );
        for (section, lists) in lists {
            for (key, literals) in [
                ("input_literals", &lists.input_literals),
                ("output_literals", &lists.output_literals),
            ] {
                if literals.iter().any(|l| l.trim().is_empty()) {
                    return Err(format!("{section}.{key} holds an empty pattern"));
                }
            }
            for (key, patterns) in [
                ("input_regex", &lists.input_regex),
                ("output_regex", &lists.output_regex),
            ] {
                for p in patterns {
                    regex::Regex::new(p)
                        .map_err(|e| format!("{section}.{key}: '{p}' is not a regex: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::Config;

    const WORKER: &str = "[[workers]]\nname = \"w\"\nurl = \"http://127.0.0.1:1\"\nruntime = \"vllm\"\nmodel = \"m\"\n";

    #[test]
    fn lists_parse_per_tier_and_bad_patterns_are_named() {
        let c = Config::from_toml(&format!(
            "[filters]\ninput_literals = [\"forbidden words\"]\noutput_regex = [\"se(c)ret\"]\n\
             [filters.tiers.hobby]\ninput_regex = [\"(?i)jailbreak\"]\n{WORKER}"
        ))
        .unwrap();
        assert_eq!(c.filters.all.input_literals, ["forbidden words"]);
        assert_eq!(c.filters.tiers["hobby"].input_regex, ["(?i)jailbreak"]);
        assert!(c.filters.default_blocklist);
        for (toml, named) in [
            (
                "[filters]\ninput_regex = [\"(unclosed\"]\n",
                "filters.input_regex",
            ),
            ("[filters]\ninput_litterals = [\"x\"]\n", "input_litterals"),
            (
                "[filters.tiers.gold]\ninput_literals = [\"x\"]\n",
                "'gold' is not a defined tier",
            ),
            ("[filters]\noutput_literals = [\" \"]\n", "empty pattern"),
        ] {
            let err = Config::from_toml(&format!("{toml}{WORKER}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{toml}: {err}");
        }
    }
}
