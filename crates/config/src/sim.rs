//! Configuration of one simulated worker (`switchyard sim`, `[[sim_workers]] sim`). Here
//! rather than in `switchyard-sim` so that parsing a config file needs no simulator; the
//! simulator re-exports these types. Deserialized from TOML/JSON by the CLI and the config,
//! so every field has a default and unknown fields are rejected (a typo in a chaos scenario should fail loudly, not silently run the happy path).

use serde::{Deserialize, Serialize};

/// How a simulated worker behaves: identity, timing model, capacity, SSE quirks and faults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Model id served (and required in requests that name a model).
    pub model: String,
    /// Fixed prefill cost per request, in milliseconds.
    pub prefill_base_ms: f64,
    /// Prefill cost per prompt token, in milliseconds.
    pub prefill_per_token_ms: f64,
    /// Inter-token latency with a single running sequence, in milliseconds.
    pub decode_ms_per_token: f64,
    /// Inter-token latency grows by this fraction per extra concurrently running sequence.
    pub decode_slowdown_per_seq: f64,
    /// KV cache size in tokens; each running request reserves (prompt + max_tokens) × n.
    pub kv_capacity_tokens: u64,
    /// Requests allowed to wait for KV space; one more is refused with 503.
    pub max_queue: usize,
    /// A request that waited this long for KV space is refused with 503.
    pub queue_timeout_ms: u64,
    /// max_tokens when the request gives none.
    pub default_max_tokens: u32,
    /// A reply ends by itself (finish_reason "stop" / TGI "eos_token") after this many tokens.
    pub natural_tokens: u32,
    /// When a streamed OpenAI-style response ends with a usage chunk.
    pub usage_in_stream: UsageInStream,
    /// Emit `: ping` SSE comments between events, as some servers do.
    pub keepalive_comments: bool,
    /// Write each SSE event in 2-3 pieces at odd byte offsets, to exercise client parsers.
    pub split_writes: bool,
    /// Seed of the worker's RNG (fault rolls, and text for requests that carry no seed).
    pub seed: u64,
    /// Initial fault injection settings; can be changed at run time.
    pub faults: FaultConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            model: "sim-small".to_owned(),
            prefill_base_ms: 20.0,
            prefill_per_token_ms: 0.2,
            decode_ms_per_token: 10.0,
            decode_slowdown_per_seq: 0.05,
            kv_capacity_tokens: 65_536,
            max_queue: 64,
            queue_timeout_ms: 30_000,
            default_max_tokens: 256,
            natural_tokens: 64,
            usage_in_stream: UsageInStream::OnRequest,
            keepalive_comments: false,
            split_writes: false,
            seed: 0,
            faults: FaultConfig::default(),
        }
    }
}

impl SimConfig {
    /// Checks values the timing model cannot work with (negative or non-finite times).
    pub fn validate(&self) -> Result<(), String> {
        if self.model.is_empty() {
            return Err("model must not be empty".to_owned());
        }
        for (name, v) in [
            ("prefill_base_ms", self.prefill_base_ms),
            ("prefill_per_token_ms", self.prefill_per_token_ms),
            ("decode_ms_per_token", self.decode_ms_per_token),
            ("decode_slowdown_per_seq", self.decode_slowdown_per_seq),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} must be a finite number >= 0, got {v}"));
            }
        }
        if self.kv_capacity_tokens == 0 {
            return Err("kv_capacity_tokens must be > 0".to_owned());
        }
        self.faults.validate()
    }
}

/// When a streamed OpenAI-style response carries a final usage chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageInStream {
    /// Only when the request sets `stream_options.include_usage` (what vLLM and OpenAI do).
    #[default]
    OnRequest,
    /// Always, even when not asked for.
    Always,
    /// Never, even when asked for (an old runtime).
    Never,
}

/// Fault injection. Probabilities are rolled independently per request, in the order
/// refuse, hang, error_500, cut_stream, stall_stream; the first that fires wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Answer 503 at once (overloaded), no timing.
    pub refuse: f64,
    /// Answer 500 after prefill.
    pub error_500: f64,
    /// Accept and never answer (until the client goes away).
    pub hang: f64,
    /// Multiplies all timings (1.0 = normal; 5.0 = five times slower).
    pub slow_factor: f64,
    /// A response is cut after `cut_after_tokens` tokens: the connection is aborted
    /// (no terminating chunk, no `[DONE]`). Non-streamed: aborted before any byte is sent.
    pub cut_stream: f64,
    /// Decode steps sent before a cut or a stall.
    pub cut_after_tokens: u32,
    /// The stream stops sending after `cut_after_tokens` tokens but keeps the connection open.
    pub stall_stream: f64,
    /// A lying (or broken) worker: every response's `usage` object (OpenAI API, streamed and
    /// not) is this JSON instead of the true counts, e.g.
    /// `{"prompt_tokens": 9223372036854775808, "completion_tokens": 1}`.
    pub reported_usage: Option<serde_json::Value>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            refuse: 0.0,
            error_500: 0.0,
            hang: 0.0,
            slow_factor: 1.0,
            cut_stream: 0.0,
            cut_after_tokens: 8,
            stall_stream: 0.0,
            reported_usage: None,
        }
    }
}

impl FaultConfig {
    /// Probabilities must be within 0..=1 and the slow factor a positive finite number.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("refuse", self.refuse),
            ("error_500", self.error_500),
            ("hang", self.hang),
            ("cut_stream", self.cut_stream),
            ("stall_stream", self.stall_stream),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("faults.{name} must be within 0.0..=1.0, got {p}"));
            }
        }
        if !self.slow_factor.is_finite() || self.slow_factor <= 0.0 {
            return Err(format!(
                "faults.slow_factor must be a finite number > 0, got {}",
                self.slow_factor
            ));
        }
        Ok(())
    }
}
