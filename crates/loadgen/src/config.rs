//! What to send, where, and how hard.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

pub use crate::input::Input;
use crate::schedule::draw_in;
pub use crate::slo::Slo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/completions`
    Completions,
}

impl Endpoint {
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
        }
    }
    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// This many requests in flight at all times.
    Closed { concurrency: u32 },
    /// This many requests started per second, on schedule.
    Open { rate: f64 },
}

/// How an open-loop run spaces its starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arrivals {
    /// Exactly `1 / rate` apart.
    #[default]
    Uniform,
    /// A Poisson process at `rate`: exponentially distributed gaps, drawn from the seed, so the
    /// same seed gives the same schedule.
    Poisson,
}

impl Arrivals {
    pub fn name(self) -> &'static str {
        match self {
            Arrivals::Uniform => "uniform",
            Arrivals::Poisson => "poisson",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The server's base URL (`http://host:8080`, with or without `/v1`) or the full
    /// endpoint URL.
    pub url: String,
    /// Sent as `Authorization: Bearer`.
    pub api_key: Option<String>,
    pub model: String,
    pub endpoint: Endpoint,
    pub load: Load,
    /// Stop after this many requests (at least one of `requests` and `duration`).
    pub requests: Option<u64>,
    /// Stop starting requests after this long.
    pub duration: Option<Duration>,
    /// What each request asks (see [`Input`]).
    pub input: Input,
    /// Requests sent before the run starts, not counted: connections opened, caches and
    /// kernels warm.
    pub warmup: u64,
    /// Latency objectives for goodput.
    pub slo: Option<Slo>,
    /// Every request's max_tokens, or with `max_tokens_min` the top of its range.
    pub max_tokens: u32,
    /// Each request's max_tokens is drawn uniformly from `max_tokens_min..=max_tokens` (from
    /// the seed and the request's number, so the same seed gives the same draws).
    pub max_tokens_min: Option<u32>,
    /// Open loop only: how starts are spaced.
    pub arrivals: Arrivals,
    /// Seeds the Poisson arrivals and the max_tokens draws.
    pub seed: u64,
    /// The run's time zero on the wall clock (the first request is due then; a time already
    /// past makes the schedule's earlier starts late). `None`: now.
    pub start_at: Option<SystemTime>,
    /// Write one JSON object per request to this file (JSON Lines, in order of completion).
    pub records: Option<PathBuf>,
    pub stream: bool,
    /// Ask the server to ignore end-of-sequence tokens (vLLM/SGLang `ignore_eos`), so every
    /// reply is `max_tokens` long.
    pub ignore_eos: bool,
    /// A request not finished within this long is an error (`timeout`).
    pub timeout: Duration,
}

impl BenchConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.requests.is_none() && self.duration.is_none() {
            return Err("give a number of requests or a duration".into());
        }
        if self.requests == Some(0) {
            return Err("the number of requests must be at least 1".into());
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err("the duration must be longer than 0".into());
        }
        if self.timeout.is_zero() {
            return Err("the timeout must be longer than 0".into());
        }
        match self.load {
            Load::Closed { concurrency: 0 } => {
                return Err("concurrency must be at least 1".into());
            }
            Load::Open { rate } if !(rate.is_finite() && rate > 0.0) => {
                return Err(format!(
                    "rate must be a number of requests/s > 0, got {rate}"
                ));
            }
            _ => {}
        }
        if self.model.trim().is_empty() {
            return Err("model must not be empty".into());
        }
        if self.max_tokens == 0 || self.max_tokens_min == Some(0) {
            return Err("max_tokens must be at least 1".into());
        }
        if let Some(lo) = self.max_tokens_min.filter(|lo| *lo > self.max_tokens) {
            return Err(format!(
                "the max_tokens range {lo}-{} is empty (low above high)",
                self.max_tokens
            ));
        }
        self.input.validate()?;
        if self.arrivals == Arrivals::Poisson && !matches!(self.load, Load::Open { .. }) {
            return Err("Poisson arrivals need an open-loop rate".into());
        }
        endpoint_url(&self.url, self.endpoint).map(|_| ())
    }

    /// The max_tokens of the request numbered `i` (from 0, in order of scheduled start).
    pub fn max_tokens_of(&self, i: u64) -> u32 {
        match self.max_tokens_min {
            Some(lo) if lo < self.max_tokens => draw_in(self.seed, i, lo, self.max_tokens),
            _ => self.max_tokens,
        }
    }

    /// The first request's body (with `max_tokens` as the body's; see
    /// [`BenchConfig::max_tokens_of`]); with a fixed prompt, every request's.
    pub fn body(&self) -> Value {
        self.body_of(0, self.max_tokens)
    }

    /// The body of request `i` (its prompt from [`Input`]), asking for `max_tokens`.
    pub fn body_of(&self, i: u64, max_tokens: u32) -> Value {
        let mut body = match self.endpoint {
            Endpoint::Chat => json!({
                "model": self.model,
                "messages": self.input.messages(self.seed, i),
                "max_tokens": max_tokens,
                "stream": self.stream,
            }),
            Endpoint::Completions => json!({
                "model": self.model,
                "prompt": self.input.prompt(self.seed, i),
                "max_tokens": max_tokens,
                "stream": self.stream,
            }),
        };
        if self.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if self.ignore_eos {
            body["ignore_eos"] = json!(true);
        }
        body
    }
}

/// The endpoint's full URL: a URL that already ends with the endpoint's path is used as is;
/// otherwise the path is appended (without doubling a trailing `/v1`).
pub fn endpoint_url(base: &str, endpoint: Endpoint) -> Result<reqwest::Url, String> {
    let trimmed = base.trim().trim_end_matches('/');
    let full = if trimmed.ends_with("/v1/chat/completions") || trimmed.ends_with("/v1/completions")
    {
        trimmed.to_string()
    } else if let Some(root) = trimmed.strip_suffix("/v1") {
        format!("{root}{}", endpoint.path())
    } else {
        format!("{trimmed}{}", endpoint.path())
    };
    let url = reqwest::Url::parse(&full).map_err(|e| format!("'{base}' is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("'{base}' is not an http(s) URL"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = |s| endpoint_url(s, Endpoint::Chat).unwrap().to_string();
        assert_eq!(u("http://h:1"), "http://h:1/v1/chat/completions");
        assert_eq!(u("http://h:1/v1/"), "http://h:1/v1/chat/completions");
        assert_eq!(
            u("http://h:1/v1/chat/completions"),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            endpoint_url("https://api.example/v1", Endpoint::Completions)
                .unwrap()
                .as_str(),
            "https://api.example/v1/completions"
        );
        assert!(endpoint_url("localhost:8080", Endpoint::Chat).is_err());
        assert!(endpoint_url("not a url", Endpoint::Chat).is_err());
    }

    #[test]
    fn bodies_ask_for_usage_when_streaming() {
        let cfg = BenchConfig {
            url: "http://h".into(),
            api_key: None,
            model: "m".into(),
            endpoint: Endpoint::Chat,
            load: Load::Closed { concurrency: 1 },
            requests: Some(1),
            duration: None,
            input: Input::Fixed("hi".into()),
            warmup: 0,
            slo: None,
            max_tokens: 8,
            stream: true,
            ignore_eos: false,
            timeout: Duration::from_secs(1),
            max_tokens_min: None,
            arrivals: Arrivals::Uniform,
            seed: 1,
            start_at: None,
            records: None,
        };
        let b = cfg.body();
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["messages"][0]["content"], "hi");
        assert!(b.get("ignore_eos").is_none());
        assert!(cfg.validate().is_ok());
        let bad = BenchConfig {
            load: Load::Open { rate: 0.0 },
            ..cfg.clone()
        };
        assert!(bad.validate().is_err());
        let bad = BenchConfig {
            requests: None,
            ..cfg.clone()
        };
        assert!(bad.validate().is_err());
        let bad = BenchConfig {
            timeout: Duration::ZERO,
            ..cfg.clone()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            "the timeout must be longer than 0"
        );
        let bad = BenchConfig {
            arrivals: Arrivals::Poisson,
            ..cfg.clone()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            "Poisson arrivals need an open-loop rate"
        );
        let bad = BenchConfig {
            max_tokens_min: Some(9),
            ..cfg.clone()
        };
        assert!(bad.validate().unwrap_err().contains("9-8 is empty"));
        // A range: every draw within it, both ends reached, the same for the same seed.
        let ranged = BenchConfig {
            max_tokens_min: Some(4),
            ..cfg.clone()
        };
        let draws: Vec<u32> = (0..1000).map(|i| ranged.max_tokens_of(i)).collect();
        assert!(draws.iter().all(|m| (4..=8).contains(m)));
        assert!(draws.contains(&4) && draws.contains(&8));
        assert_eq!(
            draws,
            (0..1000)
                .map(|i| ranged.max_tokens_of(i))
                .collect::<Vec<_>>()
        );
        let other_seed = BenchConfig { seed: 2, ..ranged };
        assert_ne!(
            draws,
            (0..1000)
                .map(|i| other_seed.max_tokens_of(i))
                .collect::<Vec<_>>()
        );
        assert_eq!(cfg.max_tokens_of(7), 8);
        let c = BenchConfig {
            endpoint: Endpoint::Completions,
            stream: false,
            ..cfg
        };
        assert_eq!(c.body()["prompt"], "hi");
        assert!(c.body().get("stream_options").is_none());
    }
}
