//! Pattern redaction of content logs, applied before a record is queued, so that nothing
//! matching these patterns is ever written: emails, phone numbers, payment card numbers and
//! API keys or tokens, each replaced by `[REDACTED:<kind>]`.
//!
//! Patterns, and why they look the way they do:
//! - Keys and tokens first (`sk-`/`sy-` keys, GitHub tokens, AWS access key ids, JWTs, Bearer
//!   credentials): they contain digits that the number patterns would otherwise half-match.
//! - International phones before cards (a `+` number is a phone even if it passes Luhn).
//! - Cards: 13–19 digits, contiguous or in the printed groups (4-4-4-4…, Amex 4-6-5), and only
//!   when the Luhn checksum holds, so order and tracking numbers survive (9 in 10 random
//!   numbers fail it).
//! - Phones: `+` international numbers of 8–15 digits (E.164), North American `(555) 123-4567`
//!   / `555-123-4567`, and trunk-prefixed national numbers (`020 7946 0958`, `06 12 34 56 78`).
//!   Plain numbers without separators or a prefix (`12345`, `2026`) are left alone.
//!
//! Replacements contain no digits, `@` or key prefixes, and redaction runs to a fixed point, so
//! redacting twice changes nothing.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// A pass replaces at least one match with text no pattern matches, so a fixed point comes
/// quickly; the bound only guards against a pattern bug looping forever.
const MAX_PASSES: usize = 8;

struct Rule {
    kind: &'static str,
    re: Regex,
    /// Whether a match is really of this kind (checksums, digit counts); `None`: every match.
    accept: Option<fn(&str) -> bool>,
    /// Keep the first capture group (the word `Bearer `) in front of the marker.
    keep_prefix: bool,
}

/// The compiled rules, or `None` if one failed to compile: then nothing is logged at all
/// (fail closed) rather than something unredacted.
static RULES: LazyLock<Option<Vec<Rule>>> = LazyLock::new(|| match build() {
    Ok(rules) => Some(rules),
    Err(e) => {
        tracing::error!(error = %e, "content-log redaction patterns failed to compile; content logging is disabled");
        None
    }
});

fn build() -> Result<Vec<Rule>, regex::Error> {
    let rule = |kind, pattern: &str, accept, keep_prefix| -> Result<Rule, regex::Error> {
        Ok(Rule {
            kind,
            re: Regex::new(pattern)?,
            accept,
            keep_prefix,
        })
    };
    Ok(vec![
        // JWTs: three base64url segments, the first a JSON header (`{"` is `eyJ`).
        rule(
            "token",
            r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}",
            None,
            false,
        )?,
        rule(
            "token",
            r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/-]{8,}=*",
            None,
            true,
        )?,
        // OpenAI-style and Switchyard keys; 16+ characters so `sk-learn` is not a key.
        rule("key", r"\b(?:sk|sy)-[A-Za-z0-9_-]{16,}", None, false)?,
        rule(
            "key",
            r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})",
            None,
            false,
        )?,
        rule("key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", None, false)?,
        rule(
            "email",
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            None,
            false,
        )?,
        // Before cards: a `+` number is a phone even when its digits pass Luhn.
        rule(
            "phone",
            r"\+[1-9]\d{0,3}(?:[ .-]?\(?\d{1,5}\)?){1,6}",
            Some(|m| (8..=15).contains(&digits(m))),
            false,
        )?,
        rule(
            "card",
            r"\b(?:\d{13,19}|\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{1,7}|\d{4}[ -]\d{6}[ -]\d{4,5})\b",
            Some(is_card),
            false,
        )?,
        rule(
            "phone",
            r"(?:\(\d{3}\)[ ]?|\b\d{3}[ .-])\d{3}[ .-]\d{4}\b",
            None,
            false,
        )?,
        rule(
            "phone",
            r"\b0\d{1,4}[ .-]?\d{2,4}(?:[ .-]?\d{2,4}){1,3}\b",
            Some(|m| (9..=12).contains(&digits(m))),
            false,
        )?,
    ])
}

fn digits(s: &str) -> usize {
    s.bytes().filter(u8::is_ascii_digit).count()
}

/// 13–19 digits whose Luhn checksum holds.
fn is_card(s: &str) -> bool {
    let ds: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&ds.len()) {
        return false;
    }
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2 == 1, d * 2) {
            (true, dd) if dd > 9 => dd - 9,
            (true, dd) => dd,
            (false, _) => d,
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether redaction is available (its patterns compiled).
pub fn available() -> bool {
    RULES.is_some()
}

/// `text` with every match replaced, or `None` when redaction is unavailable (the caller
/// must then store nothing).
pub fn redact(text: &str) -> Option<String> {
    let rules = RULES.as_ref()?;
    let mut current = text.to_string();
    for _ in 0..MAX_PASSES {
        let next = pass(rules, &current);
        match next {
            Cow::Borrowed(_) => return Some(current),
            Cow::Owned(s) => current = s,
        }
    }
    Some(current)
}

/// One pass of every rule; borrowed when nothing changed.
fn pass<'a>(rules: &[Rule], text: &'a str) -> Cow<'a, str> {
    let mut out: Cow<'a, str> = Cow::Borrowed(text);
    for rule in rules {
        let mut changed = false;
        let replaced = rule.re.replace_all(&out, |caps: &Captures<'_>| {
            let whole = caps.get(0).map_or("", |m| m.as_str());
            if rule.accept.is_some_and(|ok| !ok(whole)) {
                return whole.to_string();
            }
            changed = true;
            let prefix = match (rule.keep_prefix, caps.get(1)) {
                (true, Some(p)) => p.as_str(),
                _ => "",
            };
            format!("{prefix}[REDACTED:{}]", rule.kind)
        });
        if changed {
            out = Cow::Owned(replaced.into_owned());
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(s: &str) -> String {
        redact(s).expect("patterns compile")
    }

    #[test]
    fn patterns_compile() {
        assert!(available());
    }

    #[test]
    fn emails() {
        assert_eq!(
            r("mail bob.smith+x@mail.example.co.uk now"),
            "mail [REDACTED:email] now"
        );
        assert_eq!(
            r(r#"{"content":"a@b.io"}"#),
            r#"{"content":"[REDACTED:email]"}"#
        );
        for keep in ["@handle on twitter", "user@localhost", "a @ b.com", "x@y"] {
            assert_eq!(r(keep), keep);
        }
    }

    #[test]
    fn phones() {
        for (input, want) in [
            (
                "call +1 (555) 123-4567 today",
                "call [REDACTED:phone] today",
            ),
            ("+44 20 7946 0958", "[REDACTED:phone]"),
            ("+4915112345678", "[REDACTED:phone]"),
            ("(555) 123-4567", "[REDACTED:phone]"),
            ("555-123-4567", "[REDACTED:phone]"),
            ("555.123.4567", "[REDACTED:phone]"),
            ("020 7946 0958", "[REDACTED:phone]"),
            ("06 12 34 56 78", "[REDACTED:phone]"),
        ] {
            assert_eq!(r(input), want, "{input}");
        }
        for keep in [
            "12345",
            "in 2026 we sold 1500 units",
            "+3 apples",
            "555-1234",
            "version 1.2.3",
            "2026-11-28",
            "12:30:45",
            "pi is 3.14159265",
            "0.5 of 100",
        ] {
            assert_eq!(r(keep), keep, "{keep}");
        }
    }

    #[test]
    fn cards() {
        for (input, want) in [
            ("card 4111 1111 1111 1111 exp", "card [REDACTED:card] exp"),
            ("4111-1111-1111-1111", "[REDACTED:card]"),
            ("4111111111111111", "[REDACTED:card]"),
            ("amex 3782 822463 10005", "amex [REDACTED:card]"),
            ("5555555555554444.", "[REDACTED:card]."),
        ] {
            assert_eq!(r(input), want, "{input}");
        }
        // Same shapes, failing Luhn: order numbers and the like.
        for keep in [
            "order 4111 1111 1111 1112",
            "order 1234567890123",
            "tracking 9400111899223856928495",
        ] {
            assert_eq!(r(keep), keep, "{keep}");
        }
        assert!(is_card("4111111111111111"));
        assert!(!is_card("4111111111111112"));
        assert!(!is_card("0000")); // too short
    }

    #[test]
    fn keys_and_tokens() {
        for (input, want) in [
            ("key sk-proj-abcDEF1234567890xyz", "key [REDACTED:key]"),
            ("sy-0123456789abcdef0123456789abcdef", "[REDACTED:key]"),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[REDACTED:key]"),
            ("github_pat_11ABCDEFG0123456789_abcdefghij", "[REDACTED:key]"),
            ("AKIAIOSFODNN7EXAMPLE", "[REDACTED:key]"),
            (
                "Authorization: Bearer abc.def-ghi_jkl+mno/pq==",
                "Authorization: Bearer [REDACTED:token]",
            ),
            (
                "t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
                "t=[REDACTED:token]",
            ),
        ] {
            assert_eq!(r(input), want, "{input}");
        }
        for keep in [
            "pip install scikit-learn",
            "task-1234",
            "sk-short",
            "the bearer of bad news",
            "AKIA1234",
            "eyJ alone",
        ] {
            assert_eq!(r(keep), keep, "{keep}");
        }
    }

    #[test]
    fn mixed_text_keeps_the_rest() {
        let text = "Hi, I'm Ann (ann@corp.example), card 4242 4242 4242 4242, \
                    order #12345, call +33 6 12 34 56 78.";
        assert_eq!(
            r(text),
            "Hi, I'm Ann ([REDACTED:email]), card [REDACTED:card], \
             order #12345, call [REDACTED:phone]."
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_is_idempotent(s in "\\PC{0,200}") {
            let once = r(&s);
            prop_assert_eq!(r(&once), once);
        }

        #[test]
        fn idempotent_on_secret_like_text(
            s in "[0-9a-zA-Z @.+()_-]{0,120}|(sk-|eyJ|\\+1 |4111 |Bearer |a@b\\.)[0-9a-zA-Z .()+_-]{0,60}"
        ) {
            let once = r(&s);
            prop_assert_eq!(r(&once), once);
        }
    }
}
