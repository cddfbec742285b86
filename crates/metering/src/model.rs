//! Tenants, tiers, keys and usage records.

use serde::{Deserialize, Serialize};

use crate::money::Nanos;

/// What a tier allows and costs. Defined in config; a tenant may override any limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Models this tier may use; empty = all.
    pub models: Vec<String>,
    /// Cap on `max_tokens`; what happens above it is `cap_policy`.
    pub max_tokens: u32,
    pub max_prompt_tokens: u32,
    pub cap_policy: CapPolicy,
    pub requests_per_minute: u32,
    pub tokens_per_minute: u64,
    pub max_concurrent: u32,
    /// Tokens (prompt + completion) per calendar month; 0 = unlimited.
    pub monthly_tokens: u64,
    /// USD per 1M input / output tokens.
    pub price_input_per_million: f64,
    pub price_output_per_million: f64,
    /// The tier's SLO: availability in basis points of a percent (9990 = 99.90%) and p95 TTFT.
    pub slo_availability_bp: u32,
    pub slo_ttft_p95_ms: u32,
    /// A request with no first token after this long is also sent to a second worker, and the
    /// first to answer wins (billed once). 0 = no hedging. Should sit well under the TTFT SLO.
    pub hedge_after_ms: u32,
    /// Whether a request may be answered by the model's fallback (`[routing.fallback]`) when
    /// its own model is down or saturated, rather than refused.
    pub fallback: bool,
    /// A request with no `max_tokens` reserves this many completion tokens.
    pub default_max_tokens: u32,
    /// Prompts longer than this (estimated tokens) are outside the TTFT objectives, the
    /// addendum's "agreed burst caps": their first token is not judged (not a slow one, not in
    /// the p95), only whether they failed. One tenant's long documents, slow to prefill on any
    /// GPU, cannot then burn everyone's budget. 0 = every prompt is judged.
    pub sla_max_prompt_tokens: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            max_tokens: 4096,
            max_prompt_tokens: 32_768,
            cap_policy: CapPolicy::Clamp,
            requests_per_minute: 600,
            tokens_per_minute: 1_000_000,
            max_concurrent: 64,
            monthly_tokens: 0,
            price_input_per_million: 3.20,
            price_output_per_million: 3.20,
            slo_availability_bp: 9990,
            slo_ttft_p95_ms: 1500,
            hedge_after_ms: 0,
            fallback: false,
            default_max_tokens: 512,
            sla_max_prompt_tokens: 8_192,
        }
    }
}

impl Limits {
    /// One replica's share of the rate and concurrency limits when `replicas` count apart (a
    /// limit that is set never drops to 0). The monthly quota is not divided: each replica
    /// knows the month's usage only as the ledger had it, so it cannot split what is left.
    pub fn share(&self, replicas: u32) -> Limits {
        let n = replicas.max(1);
        let part = |v: u64| if v == 0 { 0 } else { (v / u64::from(n)).max(1) };
        Limits {
            requests_per_minute: u32::try_from(part(u64::from(self.requests_per_minute)))
                .unwrap_or(u32::MAX),
            tokens_per_minute: part(self.tokens_per_minute),
            max_concurrent: u32::try_from(part(u64::from(self.max_concurrent))).unwrap_or(u32::MAX),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapPolicy {
    /// Lower `max_tokens` to the cap and say so in a response header.
    Clamp,
    /// Refuse the request with a 400 naming the cap.
    Reject,
}

/// Per-tenant overrides of the tier's limits; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_input_per_million: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_output_per_million: Option<f64>,
}

impl LimitOverrides {
    pub fn apply(&self, tier: &Limits) -> Limits {
        let mut l = tier.clone();
        if let Some(v) = &self.models {
            l.models = v.clone();
        }
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { l.$f = v; } )* };
        }
        over!(
            max_tokens,
            max_prompt_tokens,
            requests_per_minute,
            tokens_per_minute,
            max_concurrent,
            monthly_tokens,
            price_input_per_million,
            price_output_per_million
        );
        l
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// Slug: lowercase letters, digits and dashes.
    pub id: String,
    pub tier: String,
    pub overrides: LimitOverrides,
    /// Whether requests are refused once prepaid credit is used up.
    pub prepaid: bool,
    pub created_at: i64,
    /// Whether (and how long) this tenant's prompts and completions are kept; off by default.
    #[serde(default)]
    pub content_logging: crate::content::ContentLogging,
}

/// What a key may do. Empty lists mean no restriction beyond the tenant's tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scopes {
    #[serde(default)]
    pub models: Vec<String>,
    /// Endpoint names: "chat", "completions", "models".
    #[serde(default)]
    pub endpoints: Vec<String>,
}

/// A key as stored: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// The first characters of the secret, to recognise a key in a list.
    pub prefix: String,
    #[serde(skip_serializing)]
    pub hash: [u8; 32],
    pub scopes: Scopes,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
    /// Per-key limits, tighter than the tenant's where set.
    pub limits: LimitOverrides,
}

/// How a request ended, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageStatus {
    Completed,
    Failed,
    FailedMidStream,
    ClientDisconnected,
    /// In flight when the gateway process serving it stopped (see [`crate::open`]).
    Interrupted,
}

impl UsageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageStatus::Completed => "completed",
            UsageStatus::Failed => "failed",
            UsageStatus::FailedMidStream => "failed_mid_stream",
            UsageStatus::ClientDisconnected => "client_disconnected",
            UsageStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "completed" => UsageStatus::Completed,
            "failed" => UsageStatus::Failed,
            "failed_mid_stream" => UsageStatus::FailedMidStream,
            "client_disconnected" => UsageStatus::ClientDisconnected,
            "interrupted" => UsageStatus::Interrupted,
            _ => return None,
        })
    }
}

/// Where a record's token counts came from. Workers run on strangers' machines, so their
/// counts are billed only within bounds derived from the request (see the gateway's
/// `upstream::account`); every row says which figures it was billed by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// The worker's own report, within bounds.
    #[default]
    Worker,
    /// The prompt counted by the worker's tokenizer endpoint (within bounds), the completion
    /// counted by the gateway as it relayed it.
    WorkerTokenizer,
    /// The worker reported nothing: the gateway's prompt estimate and its count of what it
    /// relayed.
    Gateway,
    /// The worker's report was out of bounds or malformed and was not billed: the gateway's own
    /// count was, and `usage_note` says what the worker claimed.
    GatewayRejected,
    /// The gateway process stopped mid-request (a crash): the prompt estimate and the tokens
    /// relayed at its last checkpoint (see [`crate::open`]).
    Checkpoint,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Worker => "worker",
            UsageSource::WorkerTokenizer => "worker_tokenizer",
            UsageSource::Gateway => "gateway",
            UsageSource::GatewayRejected => "gateway_rejected",
            UsageSource::Checkpoint => "checkpoint",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "worker" => UsageSource::Worker,
            "worker_tokenizer" => UsageSource::WorkerTokenizer,
            "gateway" => UsageSource::Gateway,
            "gateway_rejected" => UsageSource::GatewayRejected,
            "checkpoint" => UsageSource::Checkpoint,
            _ => return None,
        })
    }
}

/// One row of the ledger: one request that reached a worker. `request_id` is unique, so a
/// record written twice (a retried batch) is stored once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub request_id: String,
    /// Unix milliseconds when the request arrived.
    pub started_at_ms: i64,
    pub tenant_id: String,
    pub key_id: String,
    pub model: String,
    pub endpoint: String,
    pub stream: bool,
    pub worker: String,
    pub provider: String,
    pub region: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub usage_estimated: bool,
    /// Where the token counts came from.
    #[serde(default)]
    pub usage_source: UsageSource,
    /// Why the worker's report was not billed, when it was not (`GatewayRejected`).
    #[serde(default)]
    pub usage_note: Option<String>,
    pub ttft_ms: Option<u64>,
    /// The prompt was over the tier's `sla_max_prompt_tokens`: its first token is not judged.
    #[serde(default)]
    pub ttft_exempt: bool,
    pub total_ms: u64,
    pub status: UsageStatus,
    pub http_status: u16,
    pub finish_reason: Option<String>,
    /// What the tenant pays, at the tenant's prices.
    pub cost: Nanos,
    /// What the GPU time cost us, at the worker's price per hour.
    pub cogs: Nanos,
}

/// A record the store refused to write, kept whole (as JSON) with the store's reason, so that
/// one bad row never blocks the batch it came in, and nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub request_id: String,
    /// `usage` or `refusal`.
    pub kind: String,
    pub record: String,
    pub error: String,
    pub at_ms: i64,
}
