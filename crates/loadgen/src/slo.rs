//! Goodput: the requests that met latency objectives (`ttft=1.5s,tpot=50ms,ttlt=8s`), as a
//! customer with an SLA counts them. A failed request never meets them.

use std::time::Duration;

use crate::request::Outcome;

/// Latency objectives; an absent one always holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slo {
    pub ttft: Option<Duration>,
    /// Time per output token after the first: (TTLT − TTFT) / (completion tokens − 1).
    pub tpot: Option<Duration>,
    pub ttlt: Option<Duration>,
}

impl Slo {
    /// `ttft=1.5s,tpot=50ms,ttlt=8s` (any of them, in any order; units ms, s or m).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut slo = Slo::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("'{part}': expected NAME=DURATION, like ttft=1.5s"))?;
            let d = duration(value.trim()).map_err(|e| format!("'{part}': {e}"))?;
            match name.trim() {
                "ttft" => slo.ttft = Some(d),
                "tpot" => slo.tpot = Some(d),
                "ttlt" => slo.ttlt = Some(d),
                other => return Err(format!("'{other}': the objectives are ttft, tpot and ttlt")),
            }
        }
        if slo == Slo::default() {
            return Err("no objective given (ttft=…, tpot=…, ttlt=…)".into());
        }
        Ok(slo)
    }

    /// Whether a request met every objective.
    pub fn met(&self, o: &Outcome) -> bool {
        if o.error.is_some() {
            return false;
        }
        let within = |limit: Option<Duration>, took: Option<Duration>| match (limit, took) {
            (Some(limit), Some(took)) => took <= limit,
            (Some(_), None) => false,
            (None, _) => true,
        };
        // One token or none: no time per output token to judge.
        let tpot_ok = self.tpot.is_none() || tpot(o).is_none_or(|t| Some(t) <= self.tpot);
        within(self.ttft, o.ttft) && within(self.ttlt, o.ttlt) && tpot_ok
    }

    /// As given, for the report: `ttft=1.5s,tpot=50ms`.
    pub fn describe(&self) -> String {
        [
            ("ttft", self.ttft),
            ("tpot", self.tpot),
            ("ttlt", self.ttlt),
        ]
        .iter()
        .filter_map(|(n, d)| d.map(|d| format!("{n}={}ms", d.as_secs_f64() * 1000.0)))
        .collect::<Vec<_>>()
        .join(",")
    }
}

/// A successful request's time per output token after the first, when it has two or more.
pub(crate) fn tpot(o: &Outcome) -> Option<Duration> {
    let tokens = o.completion_tokens.unwrap_or(o.text_events);
    let (first, last) = (o.ttft?, o.ttlt?);
    (tokens > 1).then(|| last.saturating_sub(first) / u32::try_from(tokens - 1).unwrap_or(u32::MAX))
}

fn duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => return Err(format!("'{s}' needs a unit: ms, s or m")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("'{s}': the unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("'{s}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ttft_ms: u64, ttlt_ms: u64, tokens: u64) -> Outcome {
        Outcome {
            ttft: Some(Duration::from_millis(ttft_ms)),
            ttlt: Some(Duration::from_millis(ttlt_ms)),
            completion_tokens: Some(tokens),
            status: Some(200),
            ..Outcome::default()
        }
    }

    #[test]
    fn objectives_parse_and_judge_each_request() {
        let slo = Slo::parse("ttft=1.5s, tpot=50ms").unwrap();
        assert_eq!(slo.ttft, Some(Duration::from_millis(1500)));
        assert_eq!(slo.describe(), "ttft=1500ms,tpot=50ms");
        // 11 tokens over 500 ms after the first: 50 ms each.
        assert!(slo.met(&outcome(1000, 1500, 11)));
        assert!(!slo.met(&outcome(1000, 1510, 11)), "tpot just over");
        assert!(!slo.met(&outcome(1600, 1700, 2)), "ttft over");
        assert!(
            slo.met(&outcome(100, 100, 1)),
            "one token: no tpot to judge"
        );
        let failed = Outcome {
            error: Some("http_503".into()),
            ..outcome(10, 20, 2)
        };
        assert!(!slo.met(&failed));
        for bad in ["", "ttft", "ttft=1.5", "itl=5ms", "ttft=fast"] {
            assert!(Slo::parse(bad).is_err(), "{bad}");
        }
    }
}
