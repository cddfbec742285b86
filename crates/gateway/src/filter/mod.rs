//! Step 4b, content filters (abuse controls), after `shape` and before `admit`: a request whose
//! messages or prompt match an input pattern of its tier is refused with 400 `content_filter`
//! before anything is reserved, so it is never billed (a refusal row records it). Output
//! patterns are watched on streams by [`OutputWatch`], over a rolling window, so that a blocked
//! phrase split across chunks is still caught; a match ends the stream (see
//! `upstream::relay`). Patterns come from `[filters]` (all tiers), `[filters.tiers.NAME]`,
//! `[filters.tenants.ID]` and the shipped credential-scraping list ([`default_list`]).

pub mod default_list;
pub mod moderation;

use std::collections::HashMap;
use std::sync::Arc;

use aho_corasick::AhoCorasick;
use regex::RegexSet;
use serde_json::Value;
use switchyard_config::{FiltersConfig, PatternLists};
use switchyard_protocol::InferenceRequest;

use crate::error::GatewayError;

/// One list of literals and regexes, compiled.
#[derive(Debug)]
pub struct Matcher {
    literals: Option<AhoCorasick>,
    literal_names: Vec<String>,
    regex: RegexSet,
    regex_names: Vec<String>,
    longest_literal: usize,
}

/// Which list a pattern came from, said in the refusal (never the pattern itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    CredentialScraping,
    Configured,
    /// The tenant's own list (`[filters.tenants.ID]`).
    Tenant,
    /// The external moderation endpoint flagged it.
    Moderation,
}

impl Matcher {
    fn new(literals: &[String], regexes: &[String]) -> Result<Self, String> {
        let literal_names: Vec<String> = literals.to_vec();
        let literals_ac = if literal_names.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&literal_names)
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(Self {
            longest_literal: literal_names
                .iter()
                .map(|l| l.chars().count())
                .max()
                .unwrap_or(0),
            literals: literals_ac,
            literal_names,
            regex: RegexSet::new(regexes).map_err(|e| e.to_string())?,
            regex_names: regexes.to_vec(),
        })
    }

    fn is_empty(&self) -> bool {
        self.literals.is_none() && self.regex.is_empty()
    }

    /// The first pattern that matches `text`, if any.
    pub fn find(&self, text: &str) -> Option<&str> {
        if let Some(m) = self.literals.as_ref().and_then(|ac| ac.find(text)) {
            return Some(&self.literal_names[m.pattern().as_usize()]);
        }
        self.regex
            .matches(text)
            .iter()
            .next()
            .map(|i| self.regex_names[i].as_str())
    }
}

/// A tier's filters: the shipped list, then the configured input and output lists.
#[derive(Debug)]
struct TierFilters {
    shipped: Option<Arc<Matcher>>,
    input: Matcher,
    output: Option<Arc<Matcher>>,
}

/// A tenant's own lists, checked after its tier's (whatever tier it is on now).
#[derive(Debug)]
struct TenantFilters {
    input: Matcher,
    output: Option<Arc<Matcher>>,
}

/// Whose filters apply: the caller's tier and tenant.
#[derive(Debug, Clone, Copy)]
pub struct FilterScope<'a> {
    pub tier: &'a str,
    pub tenant: &'a str,
}

/// Every tier's and tenant's filters, compiled once at start.
#[derive(Debug)]
pub struct ContentFilters {
    tiers: HashMap<String, TierFilters>,
    tenants: HashMap<String, TenantFilters>,
    /// For a tier the config does not name (a tenant's tier added later).
    base: TierFilters,
    window_chars: usize,
    /// The external moderation hook, when configured.
    pub moderation: Option<moderation::Moderation>,
}

fn joined(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().chain(b).cloned().collect()
}

impl ContentFilters {
    pub fn from_config(config: &FiltersConfig) -> Result<Self, String> {
        let shipped = if config.default_blocklist {
            let list: Vec<String> = default_list::CREDENTIAL_SCRAPING
                .iter()
                .map(|p| p.to_string())
                .collect();
            Some(Arc::new(Matcher::new(&[], &list)?))
        } else {
            None
        };
        let build = |extra: &PatternLists| -> Result<TierFilters, String> {
            let input = Matcher::new(
                &joined(&config.all.input_literals, &extra.input_literals),
                &joined(&config.all.input_regex, &extra.input_regex),
            )?;
            let output = Matcher::new(
                &joined(&config.all.output_literals, &extra.output_literals),
                &joined(&config.all.output_regex, &extra.output_regex),
            )?;
            Ok(TierFilters {
                shipped: shipped.clone(),
                input,
                output: (!output.is_empty()).then(|| Arc::new(output)),
            })
        };
        let mut tiers = HashMap::new();
        for (tier, extra) in &config.tiers {
            tiers.insert(tier.clone(), build(extra)?);
        }
        let mut tenants = HashMap::new();
        for (tenant, lists) in &config.tenants {
            let output = Matcher::new(&lists.output_literals, &lists.output_regex)?;
            tenants.insert(
                tenant.clone(),
                TenantFilters {
                    input: Matcher::new(&lists.input_literals, &lists.input_regex)?,
                    output: (!output.is_empty()).then(|| Arc::new(output)),
                },
            );
        }
        Ok(Self {
            tiers,
            tenants,
            base: build(&PatternLists::default())?,
            window_chars: config.output_window_chars,
            moderation: moderation::Moderation::from_config(config),
        })
    }

    fn of(&self, tier: &str) -> &TierFilters {
        self.tiers.get(tier).unwrap_or(&self.base)
    }

    /// Refuses a request whose text matches one of its tier's or its tenant's input patterns.
    pub fn check_input(
        &self,
        scope: FilterScope<'_>,
        req: &InferenceRequest,
    ) -> Result<(), Refused> {
        let filters = self.of(scope.tier);
        let tenant = self.tenants.get(scope.tenant);
        let mut refused = None;
        for_each_text(&req.body, &mut |text| {
            if refused.is_some() {
                return;
            }
            if let Some(p) = filters.shipped.as_ref().and_then(|m| m.find(text)) {
                refused = Some(Refused::new(Source::CredentialScraping, p));
            } else if let Some(p) = filters.input.find(text) {
                refused = Some(Refused::new(Source::Configured, p));
            } else if let Some(p) = tenant.and_then(|t| t.input.find(text)) {
                refused = Some(Refused::new(Source::Tenant, p));
            }
        });
        refused.map_or(Ok(()), Err)
    }

    /// A watch over a stream's text for the tier's and the tenant's output patterns; `None`
    /// when there are none.
    pub fn output_watch(&self, scope: FilterScope<'_>) -> Option<OutputWatch> {
        let matchers: Vec<Arc<Matcher>> = [
            self.of(scope.tier).output.clone(),
            self.tenants
                .get(scope.tenant)
                .and_then(|t| t.output.clone()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let longest = matchers.iter().map(|m| m.longest_literal).max()?;
        Some(OutputWatch {
            matchers,
            windows: Default::default(),
            keep: self.window_chars.max(longest),
        })
    }
}

/// An input refusal: which list matched and which pattern (for the log, not the client).
#[derive(Debug, Clone)]
pub struct Refused {
    pub source: Source,
    pub pattern: String,
}

impl Refused {
    pub fn new(source: Source, pattern: &str) -> Self {
        Self {
            source,
            pattern: pattern.to_string(),
        }
    }

    pub fn error(&self) -> GatewayError {
        GatewayError::ContentFilter(match self.source {
            Source::CredentialScraping => {
                "This request was refused by the content filter: it asks for credentials or secrets.".into()
            }
            Source::Configured | Source::Tenant => {
                "This request was refused by the content filter: it matches a pattern this service does not accept.".into()
            }
            Source::Moderation => {
                "This request was refused by the content filter: the moderation service flagged it.".into()
            }
        })
    }

    pub fn list(&self) -> &'static str {
        match self.source {
            Source::CredentialScraping => "credential_scraping",
            Source::Configured => "configured",
            Source::Tenant => "tenant",
            Source::Moderation => "moderation",
        }
    }
}

/// Every text a request carries to the model, for the moderation endpoint.
pub fn texts(req: &InferenceRequest) -> Vec<String> {
    let mut out = Vec::new();
    for_each_text(&req.body, &mut |t| {
        if !t.trim().is_empty() {
            out.push(t.to_string());
        }
    });
    out
}

/// Calls `f` on every text a request carries to the model: message contents (strings and
/// text parts) and prompts.
fn for_each_text(body: &serde_json::Map<String, Value>, f: &mut dyn FnMut(&str)) {
    fn visit(v: &Value, f: &mut dyn FnMut(&str)) {
        match v {
            Value::String(s) => f(s),
            Value::Array(items) => items.iter().for_each(|i| visit(i, f)),
            Value::Object(part) => {
                if let Some(text) = part.get("text") {
                    visit(text, f);
                }
            }
            _ => {}
        }
    }
    if let Some(Value::Array(messages)) = body.get("messages") {
        for m in messages {
            if let Some(content) = m.get("content") {
                visit(content, f);
            }
        }
    }
    if let Some(prompt) = body.get("prompt") {
        visit(prompt, f);
    }
}

/// The tail of a stream's text, per choice, checked as each piece arrives: a pattern split
/// across chunks is found when its last piece comes, and choices (`n` > 1) interleaved in one
/// stream do not mask each other.
#[derive(Debug, Clone)]
pub struct OutputWatch {
    matchers: Vec<Arc<Matcher>>,
    windows: std::collections::BTreeMap<u64, String>,
    keep: usize,
}

impl OutputWatch {
    /// Adds text of choice `index`; the matching pattern, if its tail now holds one.
    pub fn push(&mut self, index: u64, text: &str) -> Option<String> {
        let window = self.windows.entry(index).or_default();
        window.push_str(text);
        let found = self
            .matchers
            .iter()
            .find_map(|m| m.find(window))
            .map(str::to_string);
        let chars = window.chars().count();
        if chars > self.keep {
            let cut = window
                .char_indices()
                .nth(chars - self.keep)
                .map_or(0, |(i, _)| i);
            window.drain(..cut);
        }
        found
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_protocol::Endpoint;

    fn filters(toml: &str) -> ContentFilters {
        let c: FiltersConfig = toml::from_str(toml).unwrap();
        ContentFilters::from_config(&c).unwrap()
    }

    /// A tenant of `tier` with no lists of its own.
    fn on(tier: &str) -> FilterScope<'_> {
        FilterScope {
            tier,
            tenant: "acme",
        }
    }

    fn chat(content: Value) -> InferenceRequest {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": content}]});
        InferenceRequest::from_map(Endpoint::Chat, body.as_object().unwrap().clone()).unwrap()
    }

    #[test]
    fn inputs_are_checked_per_tier_in_every_text_part() {
        let f = filters(
            "input_literals = [\"Forbidden Topic\"]\n[tiers.hobby]\ninput_regex = [\"(?i)free gpus\"]\n",
        );
        assert!(f
            .check_input(on("pro"), &chat(json!("tell me about rail yards")))
            .is_ok());
        let refused = f
            .check_input(on("pro"), &chat(json!("a FORBIDDEN topic, please")))
            .unwrap_err();
        assert_eq!(refused.list(), "configured");
        let parts =
            json!([{"type": "text", "text": "hi"}, {"type": "text", "text": "Free GPUs here"}]);
        assert!(f.check_input(on("hobby"), &chat(parts.clone())).is_err());
        assert!(
            f.check_input(on("pro"), &chat(parts)).is_ok(),
            "a hobby-only pattern"
        );
        let scraping = f
            .check_input(on("pro"), &chat(json!("cat ~/.aws/credentials for me")))
            .unwrap_err();
        assert_eq!(scraping.list(), "credential_scraping");
        let off = filters("default_blocklist = false\n");
        assert!(off
            .check_input(on("pro"), &chat(json!("cat ~/.aws/credentials")))
            .is_ok());
    }

    #[test]
    fn an_output_pattern_split_across_chunks_is_found_when_it_completes() {
        let f = filters("output_literals = [\"launch codes\"]\noutput_window_chars = 16\n");
        let mut watch = f.output_watch(on("pro")).unwrap();
        assert_eq!(watch.push(0, "Here are the laun"), None);
        // Another choice's text in between does not hide the phrase.
        assert_eq!(watch.push(1, "xyz"), None);
        assert_eq!(watch.push(0, "ch co"), None);
        assert_eq!(watch.push(0, "des: 1234").as_deref(), Some("launch codes"));
        // The window stays bounded however long the stream.
        let mut watch = f.output_watch(on("pro")).unwrap();
        for _ in 0..10_000 {
            assert_eq!(watch.push(0, "é lorem ipsum "), None);
        }
        assert!(watch.windows[&0].chars().count() <= 16);
        assert!(filters("").output_watch(on("pro")).is_none());
    }

    #[test]
    fn a_tenant_s_lists_add_to_its_tier_s() {
        let f = filters(
            "input_literals = [\"everyone's word\"]\n\
             [tenants.bank-1]\ninput_regex = [\"(?i)wire \\\\d+ to\"]\n\
             output_literals = [\"account number\"]\n",
        );
        let bank = FilterScope {
            tier: "pro",
            tenant: "bank-1",
        };
        let refused = f
            .check_input(bank, &chat(json!("please WIRE 500 to me")))
            .unwrap_err();
        assert_eq!(refused.list(), "tenant");
        assert!(
            f.check_input(on("pro"), &chat(json!("please wire 500 to me")))
                .is_ok(),
            "another tenant of the tier"
        );
        assert_eq!(
            f.check_input(bank, &chat(json!("everyone's word")))
                .unwrap_err()
                .list(),
            "configured",
            "the tier's lists still hold for the tenant"
        );
        let mut watch = f.output_watch(bank).unwrap();
        assert_eq!(watch.push(0, "your account num"), None);
        assert_eq!(watch.push(0, "ber is").as_deref(), Some("account number"));
        assert!(f.output_watch(on("pro")).is_none());
    }
}
